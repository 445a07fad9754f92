"""DCGAN on scikit-learn's bundled 8×8 digits (offline): the embedded default of launch.gan.

  python -m launch.gan --config=gan/configs/dcgan_digits.py --workdir=runs/digits
  python -m launch.gan --config=gan/configs/dcgan_digits.py:quick --workdir=/tmp/digits-quick
"""
from gan.configs.base import base_config, parse_arg


def get_config(arg=None):
  _, quick = parse_arg(arg, '')
  c = base_config()
  c.data.name = 'digits'
  c.data.batch_size = 64
  c.model.update(name='dcgan', features=64, noise_dim=64, noise='gaussian')
  c.loss.name = 'ns'
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.5)
  c.train.update(steps=5000, ema_decay=0.999, rounds_per_call=50)
  c.eval.grid_size = 100
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  if quick:
    c.model.features = 16
    c.train.update(steps=40, rounds_per_call=10)
    c.train.log_every = c.train.eval_every = 20
    c.train.checkpoint_every = 20
    c.eval.grid_size = 16
  return c
