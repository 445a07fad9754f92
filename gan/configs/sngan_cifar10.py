"""SNGAN ResNet on TFDS CIFAR-10 (32x32x3), the standard setting (Miyato et al. 2018, as in
Mimicry): hinge loss, 5 D steps per G step, Adam(2e-4, 0, 0.9), batch 64, learning rates decaying
linearly to 0. ARG `cond` trains the class-conditional variant (conditional BatchNorm in G,
projection D); `sagan` adds self-attention at 16x16; `quick` shrinks everything for tests.
Prepare once: `pip install "advcnn[prepare]" && tfds build cifar10 --file_format=array_record`.

  python -m launch.gan --config=gan/configs/sngan_cifar10.py --workdir=runs/sngan_cifar10
  python -m launch.gan --config=gan/configs/sngan_cifar10.py:cond --workdir=runs/sngan_cifar10_cond
  python -m launch.evaluate --workdir=runs/sngan_cifar10 --protocol=standard \\
      --inception_weights=pt_inception-2015-12-05-6726825d.pth
"""
from common.errors import unknown_name
from gan.configs.base import base_config, parse_arg

VARIANTS = ('uncond', 'cond', 'sagan')


def get_config(arg=None):
  variant, quick = parse_arg(arg, 'uncond')
  if variant not in VARIANTS:
    raise unknown_name('sngan_cifar10 variant', variant, VARIANTS)
  c = base_config()
  c.data.update(name='cifar10', batch_size=64)
  c.model.update(name='sngan', features=64, noise_dim=128, noise='gaussian', dtype='auto',
                 spectral_norm=True, attention=16 if variant == 'sagan' else 0,
                 num_classes=10 if variant == 'cond' else 0, conditioning='projection')
  c.loss.name = 'hinge'
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.0, b2=0.9, schedule='linear')
  c.train.update(steps=50000, n_d=5, n_g=1, ema_decay=0.9999, rounds_per_call=50)
  c.train.update(log_every=100, eval_every=5000, checkpoint_every=5000)
  c.eval.update(num_samples=10000, fid_every=10000)
  if quick:
    c.data.batch_size = 8
    c.model.features = 4
    c.train.update(steps=4, n_d=2, rounds_per_call=2, log_every=2, eval_every=2,
                   checkpoint_every=2)
    c.eval.update(grid_size=16, num_samples=64)
  return c
