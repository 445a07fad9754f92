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
  else:  # GAN Lab's [0,1]² toys
    # Three D steps a round at twice G's rate, R1 with gamma 1 and the ring8 rate schedule;
    # 4D noise gives the ring and the Gaussians their spread (docs/performance.md has the
    # trials and the JS / floor of every seed). The line's spread across it (sigma 0.01) is
    # finer than gamma 1 lets D resolve; its 0.05 beat 0.1 on seeds 5-9 as well as on 0-4.
    c.model.noise_dim = 4
    c.train.steps = 7000
    c.train.n_d = 3
    c.loss.r1_gamma = 0.05 if name == 'line' else 1.0
    if name == 'disjoint':
      # Clusters 0.025 wide and far apart: random Fourier features let D see their edges and the
      # bridges between them, with the lighter R1 of 0.1 (mean JS on seeds 0-9 0.0434 -> 0.0158;
      # frequencies of std 8 beat 3, 5 and 12 on seeds 0-4 and held on 5-9).
      c.model.update(d_fourier=32, d_fourier_scale=8.0)
      c.loss.r1_gamma = 0.1
    c.loss.r1_every = 4
    c.optim.update(g_lr=1.5e-3, d_lr=3e-3, schedule='cosine')
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
