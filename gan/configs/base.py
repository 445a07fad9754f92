"""Defaults shared by the GAN configs; each config file overrides what it needs.

`HELP` gives every key's meaning (shown by `python -m launch.gan --help`); the `optim` and
`train` cadence keys are the same words the transfer configs use.
"""
import ml_collections

HELP = {
    'seed': 'root of every random stream (init, noise, data order, evaluation)',
    'data.name': '2D: line | gaussians | ring | disjoint | ring8 | grid25 | points; '
                 'images: digits | folder | mnist | fashion_mnist | cifar10 | celeb_a | stl10 '
                 '(TFDS, prepared once)',
    'data.path': 'points: a points file (.csv, .npy or whitespace .txt; x y per row); folder: a '
                 'folder of images, flat or one sub-folder per class',
    'data.split': 'TFDS split to train on (empty: train; stl10: unlabelled, or train when '
                  'conditional)',
    'data.image_size': 'images: side they are resized and centre-cropped to (0: the dataset\'s '
                       'own; folder, celeb_a: required)',
    'data.data_dir': 'TFDS data directory (default: TFDS\'s own, ~/tensorflow_datasets)',
    'data.subset': 'images: train on this many (a fixed random choice, the same in every run; '
                   '0: all); metrics still compare with the whole split',
    'data.batch_size': 'global batch of real and of generated samples (divisible by devices)',
    'model.name': 'mlp (2D points, or images as flat pixels with a tanh output) | dcgan (images) '
                  '| sngan (ResNet GAN, 32/48/64/128 px images)',
    'model.hidden': 'mlp: neurons per hidden layer',
    'model.depth': 'mlp: hidden layers of G and D (0-5)',
    'model.activation': 'mlp: relu | leaky_relu | tanh | sigmoid',
    'model.spectral_norm': 'spectral normalisation of D\'s layers',
    'model.d_fourier': 'mlp on points: random Fourier features of D\'s input (sin, cos of 2 pi x B, '
                       'scaled by 1 / (2 pi |b|)) next to x; 0: off',
    'model.d_fourier_scale': 'with model.d_fourier: standard deviation of the frequencies B (per '
                             'unit of the data)',
    'model.features': 'dcgan: channels of the widest layer; sngan: the width unit (64: the '
                      'published widths)',
    'model.attention': 'sngan: feature-map side of a SAGAN self-attention block in G and D '
                       '(0: none)',
    'model.upsample': 'dcgan G: col2im (fast) | subpixel | transpose (lax.conv_transpose, '
                      'the reference)',
    'model.noise_dim': 'noise dimensions (GAN Lab: 1 or 2; the toys train with 4; the pictures\' '
                       'manifold is the grid of the first two, the rest at 0)',
    'model.noise': 'noise distribution: uniform on [-1, 1] | gaussian',
    'model.dtype': 'computation dtype: float32 | bfloat16 | auto (bfloat16 on GPU/TPU); '
                   'parameters and optimiser states stay float32',
    'model.num_classes': '> 0: class-conditional GAN on a labelled image dataset',
    'model.conditioning': 'conditional D: projection | acgan (auxiliary classifier)',
    'model.embed_dim': 'conditional G: size of the label embedding',
    'loss.name': 'minimax | ns (non-saturating) | lsgan | hinge | wgan',
    'loss.gp_weight': 'WGAN-GP gradient penalty weight (0: off)',
    'loss.r1_gamma': 'R1 penalty on D\'s gradient at real data (0: off)',
    'loss.r1_every': 'lazy R1: apply it every k-th round, weighted k times',
    'loss.aux_weight': 'ACGAN: class cross-entropy weight in both losses',
    'optim.name': 'adam | adamw | sgd (for G and D, unless g_name/d_name name another)',
    'optim.g_name': 'the generator\'s optimiser when not optim.name (empty: optim.name)',
    'optim.d_name': 'the discriminator\'s optimiser when not optim.name (empty: optim.name)',
    'optim.g_lr': 'generator learning rate',
    'optim.d_lr': 'discriminator learning rate',
    'optim.b1': 'adam/adamw first-moment decay',
    'optim.b2': 'adam/adamw second-moment decay',
    'optim.momentum': 'sgd momentum (0: none)',
    'optim.weight_decay': 'weight decay (adam, sgd: L2 in the gradient; adamw: decoupled)',
    'optim.schedule': 'learning-rate schedule over the run: constant | linear | cosine (to 0)',
    'optim.warmup_steps': 'linear warm-up from 0 over this many updates',
    'augment.name': 'augmentation of what D sees (images): none | diffaug (DiffAugment) | ada '
                    '(adaptive discriminator augmentation)',
    'augment.policy': 'ops in order; diffaug: color, translation, cutout; ada: geometric, color or '
                      'single ops (xflip, rotate90, xint, scale, rotate, aniso, xfrac, brightness, '
                      'contrast, lumaflip, hue, saturation); empty: all of them',
    'augment.p': 'ada: initial probability of each op',
    'augment.ada_target': 'ada: target of the mean sign of D on reals (0: p stays augment.p)',
    'augment.ada_kimg': 'ada: thousands of real images over which p can move from 0 to 1',
    'train.steps': 'rounds to train; one round = n_d D steps then n_g G steps',
    'train.n_d': 'discriminator steps per round (0 freezes D)',
    'train.n_g': 'generator steps per round (0 freezes G)',
    'train.edits': 'mid-run changes, [round, key, value] each, in round order (what the lab '
                   'records; gan/edits.py lists the keys that may change)',
    'train.ema_decay': 'EMA of G\'s weights, used for samples and metrics (0: off)',
    'train.rounds_per_call': 'rounds fused into one jitted call (lax.scan)',
    'train.log_every': 'rounds between metrics.jsonl rows',
    'train.eval_every': 'rounds between pictures and 2D metrics (0: at the end only)',
    'train.checkpoint_every': 'rounds between checkpoints (0: at the end only)',
    'train.keep_checkpoints': 'checkpoints kept (the newest)',
    'guard.max_abs_loss': 'stop as diverged when a loss exceeds this magnitude (0: off)',
    'guard.js_patience': '2D: stop as diverged after this many evaluations in a row with JS '
                         'at its ln 2 maximum (0: off)',
    'eval.num_samples': 'samples for each evaluation',
    'eval.plots': '2D: GAN Lab pictures at each evaluation',
    'eval.grid_size': 'images: samples in the grid PNG',
    'eval.metrics': 'images: any of fid, kid, is, pr, dc (density/coverage), cas (e.g. fid,pr)',
    'eval.fid_every': 'rounds between eval.metrics evaluations (and at the end)',
    'eval.inception_weights': 'pytorch-fid\'s InceptionV3 .pth, for metrics on TFDS images',
    'eval.reference_stats': 'statistics .npz to compare against instead of the cached ones',
    'sharding.params': 'replicated | fsdp (parameters and optimiser states split over devices)',
    'sharding.min_size': 'fsdp: arrays smaller than this stay replicated',
}


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.data = dict(name='ring8', path='', data_dir='', split='', image_size=0, subset=0,
                batch_size=256)
  c.model = dict(name='mlp', hidden=128, depth=3, activation='relu', spectral_norm=False,
                 d_fourier=0, d_fourier_scale=8.0, features=64, attention=0, upsample='col2im',
                 noise_dim=2, noise='gaussian', dtype='float32', num_classes=0,
                 conditioning='projection', embed_dim=32)
  # r1_every > 1 is lazy R1 (Karras et al. 2020): it keeps the penalty's effect and saves most
  # of its double backprop.
  c.loss = dict(name='ns', gp_weight=0.0, r1_gamma=0.0, r1_every=1, aux_weight=1.0)
  c.augment = dict(name='none', policy='', p=0.0, ada_target=0.6, ada_kimg=500.0)
  c.optim = dict(name='adam', g_name='', d_name='', g_lr=1e-3, d_lr=1e-3, b1=0.5, b2=0.999,
                 momentum=0.0, weight_decay=0.0, schedule='constant', warmup_steps=0)
  c.train = dict(steps=2000, n_d=1, n_g=1, ema_decay=0.999, rounds_per_call=100, log_every=100,
                 eval_every=500, checkpoint_every=1000, keep_checkpoints=3, edits=[])
  c.guard = dict(max_abs_loss=1e5, js_patience=3)
  # Digits use the digits CNN for metrics; TFDS datasets the FID InceptionV3.
  c.eval = dict(num_samples=2500, plots=True, grid_size=64, metrics=(), fid_every=1000,
                inception_weights='', reference_stats='')
  # Batches are sharded along the devices' `data` axis either way; results match to float
  # rounding.
  c.sharding = dict(params='replicated', min_size=2**14)
  return c


def parse_arg(arg, known_first):
  """'name[,quick]' -> (name, quick); the first word defaults to known_first[0]."""
  words = [w for w in (arg or '').split(',') if w]
  quick = 'quick' in words
  words = [w for w in words if w != 'quick']
  return (words[0] if words else known_first), quick
