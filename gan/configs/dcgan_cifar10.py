"""DCGAN on TFDS CIFAR-10 (32×32×3), hinge loss with a spectrally normalised D;
prepare once: `pip install "advcnn[prepare]" && tfds build cifar10 --file_format=array_record`.

  python -m launch.gan --config=gan/configs/dcgan_cifar10.py --workdir=runs/cifar10
"""
from gan.configs.base import base_config, parse_arg


def get_config(arg=None):
  _, quick = parse_arg(arg, '')
  c = base_config()
  c.data.update(name='cifar10', batch_size=64)
  c.model.update(name='dcgan', features=64, noise_dim=128, noise='gaussian', dtype='auto', spectral_norm=True)
  c.loss.name = 'hinge'
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.5, b2=0.999)
  c.train.update(steps=50000, ema_decay=0.9999, rounds_per_call=100)
  c.train.log_every = 100
  c.train.eval_every = 5000
  c.train.checkpoint_every = 5000
  if quick:
    c.data.batch_size = 16
    c.model.features = 8
    c.train.update(steps=4, rounds_per_call=2)
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 2
    c.eval.grid_size = 16
  return c
