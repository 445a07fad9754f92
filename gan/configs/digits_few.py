"""A GAN on 10% of scikit-learn's digits (180 images, offline): the data-efficient GAN
ablation. ARG = none | diffaug | ada [,quick] picks the augmentation of what D sees; FID_digits
is measured at the end against the whole dataset, next to its real-vs-real floor.

The models are the default digits GAN's MLP pair (3 hidden layers of 256, lazy R1); the 8x8
DCGAN, one layer deep at this size, did not overfit 180 images within the run, so augmentation
only slowed it (README). ADA moves p towards a mean
sign of D on reals of 0.2: with R1, this D's sign sits near ADA's usual target of 0.6 from the
start, so at 0.6 p hardly moves (0.04 after 3,000 rounds). ADA uses the geometric ops only: the
colour ops invert or shift the ink of grey digits.

  python -m launch.gan --config=gan/configs/digits_few.py:diffaug --workdir=runs/few_diffaug
  python -m launch.sweep --config=gan/configs/digits_few.py --workdir=runs/digits_few \\
      --sweep="augment.name=none,diffaug,ada seed=0:5" --metrics=fid_digits,floor_fid_digits
"""
from common.errors import unknown_name
from gan.augment import AUGMENTS
from gan.configs.base import base_config, parse_arg


def get_config(arg=None):
  name, quick = parse_arg(arg, 'none')
  if name not in AUGMENTS:
    raise unknown_name('digits_few augmentation', name, AUGMENTS)
  c = base_config()
  c.data.update(name='digits', subset=180, batch_size=64)
  c.model.update(name='mlp', hidden=256, depth=3, activation='leaky_relu', noise_dim=64,
                 noise='gaussian')
  c.augment.update(name=name, ada_target=0.2, ada_kimg=20.0)
  if name == 'ada':
    c.augment.policy = 'geometric'
  c.loss.update(name='ns', r1_gamma=1.0, r1_every=4)
  c.optim.update(g_lr=1e-3, d_lr=1e-3, b1=0.5, schedule='linear')
  c.train.update(steps=3000, ema_decay=0.999, rounds_per_call=100, log_every=100,
                 eval_every=3000, checkpoint_every=3000)
  c.eval.update(grid_size=100, num_samples=2000, metrics=('fid',), fid_every=3000)
  if quick:
    c.model.hidden = 16
    c.train.update(steps=20, rounds_per_call=10, log_every=10, eval_every=20,
                   checkpoint_every=20)
    c.eval.update(grid_size=16, num_samples=200, fid_every=20)
  return c
