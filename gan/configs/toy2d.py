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
  # GAN Lab's uniform noise on [-1, 1]²: sharper modes than Gaussian noise on ring8.
  # Each choice below is measured in docs/performance.md ("The toy mode-collapse benchmarks").
  c.model.noise = 'uniform'
  if name == 'ring8':
    # R1 (Mescheder et al. 2018) keeps every mode on every seed; lazily it costs little.
    c.train.steps = 7000
    c.loss.r1_gamma = 0.1
    c.loss.r1_every = 4
    # A 3x higher learning rate, decayed to 0, makes the modes sharper in the same rounds.
    c.optim.update(g_lr=3e-3, d_lr=3e-3, schedule='cosine')
  elif name == 'grid25':
    # 25 modes need more: R1 keeps every mode covered and a deeper MLP makes them sharp;
    # Adam b1=0, b2=0.99 keeps all 25 at this rate; smaller batches and lazier R1 buy the
    # extra rounds in the same time.
    c.train.steps = 11000
    c.data.batch_size = 128
    c.model.depth = 4
    c.loss.r1_gamma = 0.1
    c.loss.r1_every = 16
    c.optim.update(g_lr=3e-3, d_lr=3e-3, schedule='cosine', b1=0.0, b2=0.99)
  else:  # GAN Lab's [0,1]² toys and the user's points
    # Three D steps a round at twice G's rate, lazy R1 with gamma 1 and the ring8 rate
    # schedule; 4D noise gives the ring and the Gaussians their spread (docs/performance.md has
    # the trials and the JS / floor of every seed).
    c.model.noise_dim = 4
    c.train.steps = 7000
    c.train.n_d = 3
    c.loss.r1_gamma = 1.0
    c.loss.r1_every = 4
    c.optim.update(g_lr=1.5e-3, d_lr=3e-3, schedule='cosine')
    if name != 'points':
      # D sees random Fourier features of its input (std 8, for data in the unit square; a
      # user's points may have any scale), which resolve the shapes' edges.
      c.model.update(d_fourier=32, d_fourier_scale=8.0)
    if name == 'disjoint':
      # Clusters 0.025 wide and far apart keep the 3 x 128 MLPs at batch 256, with the lighter
      # R1 of 0.1 (the small model below ended at 2.2-2.5x the JS floor on seed 0) and the
      # rounds the faster features saved; sigma 8 beat 3, 5 and 12 on seeds 0-4.
      c.train.steps = 8000
      c.loss.r1_gamma = 0.1
    elif name in ('line', 'gaussians', 'ring'):
      # The lab's default: MLPs of 2 x 64 at batch 64 train 1,000 rounds/s live on 2 cores;
      # in 40,000 rounds, with a longer EMA of G, they end at a lower mean JS than 3 x 128.
      c.model.update(depth=2, hidden=64)
      if name == 'ring':
        c.model.d_fourier_scale = 5.0  # 8 left seed 3 at 2.3x the floor; 5 keeps 0-9 in 1.5x
      c.data.batch_size = 64
      c.train.steps = 40000
      c.train.ema_decay = 0.9999
  # 6 evaluations (the last at the end), on multiples of log_every, none just before the end.
  c.train.eval_every = -(-c.train.steps // 6 // c.train.log_every) * c.train.log_every
  c.train.checkpoint_every = c.train.steps // 2
  if quick:
    c.train.steps = 200
    c.train.rounds_per_call = 50
    c.train.log_every = 50
    c.train.eval_every = 100
    c.train.checkpoint_every = 100
    c.eval.num_samples = 500
  return c
