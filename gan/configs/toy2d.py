"""2D toy GANs: GAN Lab's distributions and the ring8/grid25 mode-collapse benchmarks.

ARG = distribution[,quick]: line | gaussians | ring | disjoint | ring8 | grid25 | points.

  python -m launch.gan --config=gan/configs/toy2d.py:ring8 --workdir=runs/ring8
  python -m launch.gan --config=gan/configs/toy2d.py:points --config.data.path=my_points.csv \
      --workdir=runs/mine
"""
from gan.configs.base import base_config, parse_arg


def get_config(arg=None):
  name, quick = parse_arg(arg, 'ring8')
  c = base_config()
  c.data.name = name
  if name == 'ring8':
    # R1 (Mescheder et al. 2018) keeps every mode on every seed (without it one seed in ten
    # drops a mode); applied lazily (every 4th round) it costs little.
    c.train.steps = 7000
    c.loss.r1_gamma = 0.1
    c.loss.r1_every = 4
  elif name == 'grid25':
    # 25 modes need more: R1 keeps every mode covered (without it 11-13 of 25 survive), a
    # deeper MLP and a longer run make the modes sharp.
    c.train.steps = 12000
    c.model.depth = 4
    c.loss.r1_gamma = 0.1
    c.loss.r1_every = 4
  else:  # GAN Lab's [0,1]² toys
    c.train.steps = 4000
    c.model.noise = 'uniform'
  # 6 evaluations (the last at the end), on multiples of log_every, none just before the end.
  c.eval_every = -(-c.train.steps // 6 // c.log_every) * c.log_every
  c.checkpoint_every = c.train.steps // 2
  if quick:
    c.train.steps = 200
    c.train.rounds_per_call = 50
    c.log_every = 50
    c.eval_every = 100
    c.checkpoint_every = 100
    c.eval.num_samples = 500
  return c
