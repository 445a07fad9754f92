"""Defaults shared by the transfer configs; each config file overrides what it needs."""
import ml_collections


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  # scratch | feature_extraction | fine_tune | partial | two_phase (see transfer/freeze.py).
  c.mode = 'fine_tune'
  # name: digits | folder | a TFDS name (transfer/data.py). Train records are resize_size
  # squares cropped on device when augment (random resized crop of at least crop_scale of the
  # area, random flip), else image_size centre crops like the test ones.
  # train_per_class > 0 keeps that many labelled examples per class (few-label transfer);
  # test_fraction holds out part of each class when there is no test split (digits, folder).
  c.data = dict(name='digits', path='', test_path='', data_dir='', train_split='', test_split='',
                classes='5-9', image_size=224, resize_size=256, augment=True, crop_scale=0.08,
                train_per_class=0,
                test_fraction=0.2, test_limit=0, batch_size=32, eval_batch_size=64)
  # weights: '' (random init), a converted directory (python -m launch.convert) or an original
  # .pth/.safetensors/.h5 file, or 'pretrain' (the ResNet this project trains on digits 0-4).
  # include_top keeps the weights' classifier, whose class count must match the data.
  c.model = dict(arch='resnet50', style='torchvision', weights='', include_top=False)
  # rules: ((regex, label), ...) replacing the mode's rules in every phase; labels are frozen,
  # trainable, head, backbone, stage1..stage4, stem. trainable_stages: for mode partial.
  # layer_decay < 1: each backbone part gets backbone_lr_mult * layer_decay ** distance.
  c.freeze = dict(rules=(), trainable_stages=1, backbone_lr_mult=0.1, layer_decay=1.0,
                  bn_train=False)
  # lr: phases that train the backbone; head_lr: head-only phases. name: adamw | sgd.
  c.optim = dict(name='adamw', lr=1e-3, head_lr=1e-2, weight_decay=1e-4,
                 decay_norm_and_bias=False, momentum=0.9, b1=0.9, b2=0.999, schedule='cosine',
                 warmup_steps=0)
  # epochs: phases that train the backbone; head_epochs: head-only phases (feature_extraction,
  # phase one of two_phase, whose phase two runs at lr * two_phase_lr_scale).
  # steps_per_call: image steps fused into one jitted call by lax.scan. XLA:CPU gives every
  # call a fresh scratch buffer whose pages the kernel faults in one by one (about 290,000
  # faults for a ResNet-50 step at batch 8, 224 px), so a chunk of steps pays that once.
  c.train = dict(epochs=10, head_epochs=10, two_phase_lr_scale=0.1, log_every=10, eval_every=0,
                 checkpoint=True, checkpoint_every=0, keep_checkpoints=2, steps_per_call=10)
  # Head-only phases train on cached backbone features when there is no augmentation.
  c.features = dict(cache=True, dir='', steps_per_call=100)
  # The embedded pretraining source (model.weights='pretrain'): `arch` trained from scratch
  # on digits `classes` (train_per_class each, 0: all but test_fraction), cached in `dir`
  # (default WORKDIR/pretrain).
  c.pretrain = dict(dir='', classes='0-4', epochs=15, batch_size=64, lr=2e-3, train_per_class=0,
                    test_fraction=0.2, augment=False, crop_scale=0.5, weight_decay=1e-4)
  # A non-empty modes list makes the run an ablation over modes x seeds (transfer/ablation.py).
  c.ablation = dict(modes=(), seeds=5, linear_probe=True)
  return c


def parse_arg(arg, first_choices):
  """'name[,quick]' -> (name or first_choices[0], quick)."""
  words = [w for w in (arg or '').split(',') if w]
  quick = 'quick' in words
  words = [w for w in words if w != 'quick']
  return (words[0] if words else first_choices[0]), quick


TFDS_VARIANTS = ('fine_tune', 'feature_extraction', 'two_phase', 'partial', 'scratch', 'ablation')


def tfds_config(name: str, arg, *, epochs: int, head_epochs: int) -> ml_collections.ConfigDict:
  """`name` with ImageNet weights from `--config.model.weights=DIR`; ARG picks a mode,
  'ablation' (all modes x 3 seeds) and/or 'quick'."""
  mode, quick = parse_arg(arg, TFDS_VARIANTS)
  c = base_config()
  c.mode = 'fine_tune' if mode == 'ablation' else mode
  c.data.update(name=name, image_size=224, resize_size=256, augment=True, batch_size=32,
                eval_batch_size=64)
  c.model.update(arch='resnet50', style='torchvision', weights='')
  c.optim.update(name='sgd', lr=1e-2, head_lr=1e-1, weight_decay=1e-4, momentum=0.9,
                 warmup_steps=100)
  c.train.update(epochs=epochs, head_epochs=head_epochs, log_every=50, checkpoint_every=1000)
  if mode == 'ablation':
    c.ablation.update(modes=('scratch', 'feature_extraction', 'fine_tune', 'two_phase',
                             'linear_probe'), seeds=3)
  if quick:
    c.data.update(image_size=64, resize_size=72, train_per_class=4, batch_size=8)
    c.train.update(epochs=1, head_epochs=1, log_every=1, checkpoint_every=0)
  return c
