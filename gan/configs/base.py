"""Defaults shared by the GAN configs; each config file overrides what it needs."""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = dict(name='ring8', path='', data_dir='', batch_size=256)
  # name: mlp | dcgan. noise: uniform | gaussian. upsample (dcgan): col2im | subpixel | transpose.
  c.model = dict(name='mlp', hidden=128, depth=3, activation='relu', spectral_norm=False,
                 features=64, upsample='col2im', noise_dim=2, noise='gaussian', dtype='float32')
  # dtype is the computation dtype (float32 | bfloat16 | auto = bfloat16 on GPU/TPU, float32 on
  # CPU); parameters and optimiser states stay float32 either way.
  # name: minimax | ns | lsgan | hinge | wgan; gp_weight (WGAN-GP) and r1_gamma (R1) add penalties.
  c.loss = dict(name='ns', gp_weight=0.0, r1_gamma=0.0)
  # One round = n_d discriminator steps then n_g generator steps; `steps` counts rounds.
  c.train = dict(steps=2000, n_d=1, n_g=1, optimizer='adam', g_lr=1e-3, d_lr=1e-3, b1=0.5,
                 b2=0.999, ema_decay=0.999, rounds_per_call=100)
  c.eval = dict(num_samples=2500, plots=True, grid_size=64)
  c.log_every = 100
  c.eval_every = 500
  c.checkpoint_every = 1000
  c.keep_checkpoints = 3
  return c


def parse_arg(arg, known_first):
  """'name[,quick]' -> (name, quick); the first word defaults to known_first[0]."""
  words = [w for w in (arg or '').split(',') if w]
  quick = 'quick' in words
  words = [w for w in words if w != 'quick']
  return (words[0] if words else known_first), quick
