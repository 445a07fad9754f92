"""Defaults shared by the GAN configs; each config file overrides what it needs."""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = dict(name='ring8', path='', data_dir='', batch_size=256)
  # name: mlp | dcgan. noise: uniform | gaussian. upsample (dcgan): col2im | subpixel | transpose.
  # col2im is the fast one; transpose (lax.conv_transpose, what nn.ConvTranspose runs) is kept as
  # the reference and is much slower on CPU inside the training scan (docs/performance.md).
  c.model = dict(name='mlp', hidden=128, depth=3, activation='relu', spectral_norm=False,
                 features=64, upsample='col2im', noise_dim=2, noise='gaussian', dtype='float32',
                 num_classes=0, conditioning='projection', embed_dim=32)
  # num_classes > 0 trains a class-conditional GAN (dcgan on a labelled image dataset):
  # conditioning: projection | acgan (gan/conditional.py); embed_dim: G's label embedding size.
  # dtype is the computation dtype (float32 | bfloat16 | auto = bfloat16 on GPU/TPU, float32 on
  # CPU); parameters and optimiser states stay float32 either way.
  # name: minimax | ns | lsgan | hinge | wgan; gp_weight (WGAN-GP) and r1_gamma (R1) add penalties.
  # aux_weight: ACGAN's class cross-entropy weight in both D and G losses.
  # r1_every > 1 is lazy R1 (Karras et al. 2020): the penalty only every r1_every-th round,
  # weighted r1_every times, which keeps its effect and saves most of its double backprop.
  c.loss = dict(name='ns', gp_weight=0.0, r1_gamma=0.0, r1_every=1, aux_weight=1.0)
  # One round = n_d discriminator steps then n_g generator steps; `steps` counts rounds.
  # lr_decay: constant | linear | cosine (to 0 over the run, for both players).
  c.train = dict(steps=2000, n_d=1, n_g=1, optimizer='adam', g_lr=1e-3, d_lr=1e-3, b1=0.5,
                 b2=0.999, lr_decay='constant', ema_decay=0.999, rounds_per_call=100)
  # metrics (image GANs, gan/evaluation.py): any of fid, kid, is, pr, cas, computed every
  # fid_every rounds and at the end from num_samples EMA samples; `--config.eval.metrics=fid,pr`.
  # Digits use the digits CNN; TFDS datasets the FID InceptionV3 from inception_weights
  # (pytorch-fid's .pth). reference_stats: a statistics .npz to use instead of the cached ones.
  c.eval = dict(num_samples=2500, plots=True, grid_size=64, metrics=(), fid_every=1000,
                inception_weights='', reference_stats='')
  # How the train state (parameters, optimiser states, EMA) lies on the devices' `data` axis:
  # params: replicated (a full copy per device) | fsdp (each array of at least min_size elements
  # split along its largest dimension divisible by the device count; for models too large to
  # replicate). Batches are sharded along `data` either way; results match to float rounding.
  c.sharding = dict(params='replicated', min_size=2**14)
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
