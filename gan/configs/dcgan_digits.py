"""GAN on scikit-learn's bundled 8×8 digits (offline): the embedded default of launch.gan.

An MLP pair on the 64 pixels (3 hidden layers of 256, leaky ReLU; G ends in tanh) with lazy
R1 (gamma 1, every 4th round) on D, Adam 1e-3 decayed linearly over 8,000 rounds: at 8×8 the
DCGAN nets are one layer deep and blend digits, the deeper MLPs do not (docs/gan_default.md).
The run reports FID_digits, KID and precision/recall next to their real-vs-real floor. The
`quick` variant keeps the small DCGAN test settings (the file's name and its tests predate
the switch).

  python -m launch.gan --config=gan/configs/dcgan_digits.py --workdir=runs/digits
  python -m launch.gan --config=gan/configs/dcgan_digits.py:quick --workdir=/tmp/digits-quick
"""
from gan.configs.base import base_config, parse_arg


def get_config(arg=None):
  _, quick = parse_arg(arg, '')
  c = base_config()
  c.data.name = 'digits'
  c.model.update(name='dcgan', noise_dim=64, noise='gaussian')
  c.loss.name = 'ns'
  c.optim.b1 = 0.5
  c.train.ema_decay = 0.999
  if quick:
    c.data.batch_size = 64
    c.model.features = 16
    c.optim.update(g_lr=2e-4, d_lr=2e-4)
    c.train.update(steps=40, rounds_per_call=10, log_every=20, eval_every=20,
                   checkpoint_every=20)
    c.eval.grid_size = 16
    return c
  c.data.batch_size = 128
  c.model.update(name='mlp', hidden=256, depth=3, activation='leaky_relu')
  c.loss.update(r1_gamma=1.0, r1_every=4)
  c.optim.update(g_lr=1e-3, d_lr=1e-3, schedule='linear')
  c.train.update(steps=8000, rounds_per_call=50, log_every=100, eval_every=2000,
                 checkpoint_every=4000)
  c.eval.update(grid_size=100, metrics=('fid', 'kid', 'pr'), fid_every=8000)
  return c
