"""Embedded default of launch.transfer (offline): digits 0-4 -> digits 5-9 with few labels.

A ResNet-18 trained here from scratch on scikit-learn's digits 0-4 (cached in
WORKDIR/pretrain, the format of converted weights) is transferred to digits 5-9
with 5 labelled images per class; the other 871 images are the test set. With no ARG the
run is the ablation scratch vs feature_extraction vs fine_tune vs two_phase
over 5 seeds (plus a scikit-learn linear probe on the frozen features):

  python -m launch.transfer                     # = --config=transfer/configs/digits.py
  python -m launch.transfer --config=transfer/configs/digits.py --workdir=runs/digits
  python -m launch.transfer --config=transfer/configs/digits.py:quick --workdir=/tmp/digits-quick

ARG may name one mode instead, for a single run: `digits.py:fine_tune`,
`digits.py:partial,quick`. The 8x8 digits are upsampled to 16x16 RGB, small enough
for a CPU; larger inputs add no information to 8x8 images.

`digits.py:backbones` compares ResNet-18, VGG16 and InceptionV3, each pretrained here on
digits 0-4 and adapted to 5-9 (scratch vs feature extraction vs fine-tuning, 3 seeds), in one
table and plot. Each run trains on 5 of its 10 labelled images per class, holds out the other 5
for validation and is tested with the weights selected on them. Inputs are 32 px (InceptionV3:
75 px, its minimum):

  python -m launch.transfer --config=transfer/configs/digits.py:backbones --workdir=runs/backbones

Adding torchvision's VGG16 with BatchNorm takes about 5 minutes more:
`--config.ablation.archs="('resnet18','vgg16','vgg16_bn','inception_v3')"`. Running fewer
archs means dropping the others' `ablation.per_arch` entries too (the run names them).
"""
from transfer.configs.base import base_config, parse_arg

ABLATION = ('scratch', 'feature_extraction', 'fine_tune', 'two_phase', 'linear_probe')


BACKBONES = ('resnet18', 'vgg16', 'inception_v3')


def get_config(arg=None):
  mode, quick = parse_arg(arg, ('ablation',))
  if mode == 'backbones':
    return backbones_config(quick)
  c = base_config()
  c.mode = 'fine_tune' if mode == 'ablation' else mode
  c.data.update(name='digits', classes='5-9', image_size=16, augment=False, train_per_class=5,
                test_limit=0, batch_size=25, eval_batch_size=218)
  c.model.update(arch='resnet18', style='torchvision', weights='pretrain')
  # A 5-class source is far from ImageNet: fine-tuning re-estimates BatchNorm statistics and
  # trains the backbone at the head's rate (both beat the 0.1x / frozen-statistics defaults).
  c.freeze.update(backbone_lr_mult=1.0, bn_train=True)
  c.optim.update(lr=1e-3, head_lr=1e-2, weight_decay=1e-4)
  c.train.update(epochs=20, head_epochs=100, two_phase_lr_scale=0.5, log_every=10)
  # Random crops keep the source's pooled features from collapsing onto its 5 classes.
  c.pretrain.update(classes='0-4', epochs=6, batch_size=25, lr=2e-3, augment=True, crop_scale=0.5)
  if mode == 'ablation':
    c.ablation.update(modes=ABLATION, seeds=5)
  if quick:
    c.data.update(test_limit=100, eval_batch_size=50)
    c.train.update(epochs=2, head_epochs=10, log_every=2)
    c.pretrain.update(epochs=1, train_per_class=20, augment=False)
    c.ablation.seeds = 2
  return c


def backbones_config(quick: bool = False):
  """ResNet-18 vs VGG16 vs InceptionV3 on digits, validation-selected (see the docstring)."""
  c = get_config('ablation')
  # As the embedded ablation: 5 training labels a class (the other 5 validate), sources trained
  # on every digit 0-4 (docs/performance.md has what each choice gave).
  c.data.update(image_size=32, train_per_class=10, val_fraction=0.5, test_limit=500,
                batch_size=25, eval_batch_size=100)
  # 15 steps leave BatchNorm's running averages mostly at their start: every evaluation uses
  # statistics re-estimated under the current weights (scratch runs gain most; VGG16 has none).
  c.train.update(epochs=15, head_epochs=60, log_every=10, precise_bn=4)
  # VGG16 has no BatchNorm: from scratch it stalls at Adam 1e-3, so every arch trains at 3e-4.
  c.optim.lr = 3e-4
  # Sources: 20 epochs at Adam 3e-4, with two per-arch recipes. InceptionV3's at 1e-3, where
  # 3e-4 leaves it underfit (its own held-out top-1 on digits 0-4: 65% at 3e-4, 84% at 1e-3).
  # VGG16 (no BatchNorm) trained with Adam keeps features nearly rank-deficient on digits 5-9
  # and transfers worse than a random init; SGD with momentum and weight decay keeps them.
  # ResNet-18 fine-tunes its backbone at 3x the new head's rate: in 15 steps the source's
  # features must move (over seeds 0-7 the gap to scratch went from -1.2 to +2.2).
  c.pretrain.update(epochs=20, lr=3e-4)
  per_arch = (('resnet18', 'freeze.backbone_lr_mult', 3.0), ('inception_v3', 'pretrain.lr', 1e-3),
              ('vgg16', 'pretrain.optimizer', 'sgd'), ('vgg16', 'pretrain.lr', 1e-2),
              ('vgg16', 'pretrain.weight_decay', 5e-3))
  if not quick:  # the quick variant's sources train for its 1 epoch
    per_arch += (('vgg16', 'pretrain.epochs', 40),)
  c.ablation.update(archs=BACKBONES, modes=('scratch', 'feature_extraction', 'fine_tune'),
                    seeds=3, per_arch=per_arch)
  if quick:
    c.data.update(test_limit=50, eval_batch_size=50)
    c.train.update(epochs=1, head_epochs=2, log_every=1)
    c.pretrain.update(epochs=1, train_per_class=10, augment=False)
    c.ablation.seeds = 1
  return c
