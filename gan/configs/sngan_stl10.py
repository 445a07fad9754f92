"""SNGAN ResNet on TFDS STL-10 resized to 48x48 (Miyato et al. 2018's setting) or 64x64:
ARG = 48|64[,cond][,quick]. Unconditional runs train on the 100,000 unlabelled images,
conditional ones (`cond`) on the 5,000 labelled train images. Prepare once:
`pip install "advcnn[prepare]" && tfds build stl10 --file_format=array_record`.

  python -m launch.gan --config=gan/configs/sngan_stl10.py:48 --workdir=runs/sngan_stl10
  python -m launch.gan --config=gan/configs/sngan_stl10.py:64,cond --workdir=runs/stl10_cond
"""
from common.errors import UserError
from gan.configs import sngan_cifar10


def get_config(arg=None):
  words = [w for w in (arg or '48').split(',') if w]
  size = next((int(w) for w in words if w in ('48', '64')), 48)
  if any(w not in ('48', '64', 'cond', 'quick') for w in words):
    raise UserError(f'sngan_stl10 takes 48|64[,cond][,quick], got {arg!r}')
  variant = 'cond' if 'cond' in words else 'uncond'
  c = sngan_cifar10.get_config(variant + (',quick' if 'quick' in words else ''))
  c.data.update(name='stl10', image_size=size)
  return c
