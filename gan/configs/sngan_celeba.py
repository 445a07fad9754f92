"""SNGAN ResNet on TFDS CelebA, centre-cropped and resized to 64x64 (Mimicry's SNGAN-64
setting: hinge loss, 5 D steps per G step, Adam(2e-4, 0, 0.9), batch 64); `quick` shrinks it.
Prepare once: `pip install "advcnn[prepare]" && tfds build celeb_a --file_format=array_record`.

  python -m launch.gan --config=gan/configs/sngan_celeba.py --workdir=runs/sngan_celeba
"""
from gan.configs import sngan_cifar10
from gan.configs.base import parse_arg


def get_config(arg=None):
  _, quick = parse_arg(arg, '')
  c = sngan_cifar10.get_config('quick' if quick else None)
  c.data.update(name='celeb_a', image_size=64)
  c.train.steps = 100000 if not quick else c.train.steps
  return c
