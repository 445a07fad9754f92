"""SNGAN ResNet on a folder of one's own images: flat, or one sub-folder per class for the
conditional variant. ARG = SIZE[,cond][,quick]: SIZE in 32, 48, 64 (default), 128 is the side
the images are resized and centre-cropped to; `cond` trains class-conditionally (conditional
BatchNorm, projection D; model.num_classes must equal the number of sub-folders). Small folders
want DiffAugment or ADA (--config.augment.name=diffaug|ada).

  python -m launch.gan --config=gan/configs/sngan_folder.py:64 --config.data.path=DIR \\
      --workdir=runs/mine
  python -m launch.gan --config=gan/configs/sngan_folder.py:32,cond --config.data.path=DIR \\
      --config.model.num_classes=5 --config.augment.name=diffaug --workdir=runs/mine_cond
"""
from common.errors import UserError
from gan.configs.base import base_config


def get_config(arg=None):
  words = [w for w in (arg or '').split(',') if w]
  sizes = [w for w in words if w.isdigit()]
  unknown = [w for w in words if not w.isdigit() and w not in ('cond', 'quick')]
  if unknown or len(sizes) > 1:
    raise UserError(f'sngan_folder takes SIZE[,cond][,quick], got {arg!r}')
  c = base_config()
  c.data.update(name='folder', image_size=int(sizes[0]) if sizes else 64, batch_size=64)
  c.model.update(name='sngan', features=64, noise_dim=128, noise='gaussian', dtype='auto',
                 spectral_norm=True, num_classes=0, conditioning='projection')
  if 'cond' in words:
    c.model.num_classes = 2  # set to the number of class sub-folders
  c.loss.name = 'hinge'
  c.optim.update(g_lr=2e-4, d_lr=2e-4, b1=0.0, b2=0.9, schedule='linear')
  c.train.update(steps=50000, n_d=5, n_g=1, ema_decay=0.9999, rounds_per_call=50,
                 log_every=100, eval_every=5000, checkpoint_every=5000)
  if 'quick' in words:
    c.data.batch_size = 4
    c.model.features = 2
    c.train.update(steps=4, n_d=2, rounds_per_call=2, log_every=2, eval_every=4,
                   checkpoint_every=2)
    c.eval.grid_size = 8
  return c
