"""Class-conditional DCGAN on scikit-learn's 8×8 digits (offline), with a projection
discriminator (ARG `acgan` swaps in ACGAN's auxiliary classifier). Reports FID_digits, KID,
precision/recall and the classification accuracy scores (gan/evaluation.py); the conditional
sample grid (one row per digit) is images/samples.png.

  python -m launch.gan --config=gan/configs/cgan_digits.py --workdir=runs/cgan_digits
  python -m launch.gan --config=gan/configs/cgan_digits.py:acgan --workdir=runs/acgan_digits
  python -m launch.evaluate --workdir=runs/cgan_digits --metrics=fid,kid,pr,cas
"""
from gan.configs.base import base_config, parse_arg


def get_config(arg=None):
  conditioning, quick = parse_arg(arg, 'projection')
  c = base_config()
  c.data.name = 'digits'
  c.data.batch_size = 64
  c.model.update(name='dcgan', features=64, noise_dim=64, noise='gaussian', num_classes=10,
                 conditioning=conditioning, embed_dim=32)
  c.loss.name = 'ns'
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.5)
  c.train.update(steps=5000, ema_decay=0.999, rounds_per_call=50)
  c.eval.update(grid_size=100, num_samples=2500, metrics=('fid', 'kid', 'pr', 'cas'),
                fid_every=1000)
  c.train.log_every = 100
  c.train.eval_every = 1000
  c.train.checkpoint_every = 1000
  if quick:
    c.model.update(features=16, embed_dim=8)
    c.train.update(steps=40, rounds_per_call=10)
    c.train.log_every = c.train.eval_every = c.train.checkpoint_every = 20
    c.eval.update(grid_size=30, num_samples=200, fid_every=20)
  return c
