"""Where each flax variable of a transfer backbone lives in torchvision and Keras weight files.

A flax variable path is (collection, module..., leaf), e.g. ('params', 'block5', 'conv3',
'kernel'). `torchvision_name` gives its state-dict key ('features.28.weight'), `keras_name` its
'<layer>/<variable>' key ('block5_conv3/kernel'). Keras names InceptionV3's layers only by class
and creation order (`conv2d_7`, `batch_normalization_7`); readers (`transfer.keras_files`)
renumber them 0.. in that order, and `keras3_positions` maps the positions of a Keras 3
`.weights.h5` file (Keras' topological layer order) to those names.

`guess_arch` says which registered arch a file's tensor names describe, so a file given for the
wrong arch or family is named for what it is.
"""
from __future__ import annotations

import re
from typing import Collection

from common import torch_files
from transfer import inception, models, resnet, vgg

# Keras has used all of these names for the classifier layer.
KERAS_HEAD_LAYERS = ('predictions', 'probs', 'fc1000')
_KERAS_BN_LEAVES = {'scale': 'gamma', 'bias': 'beta', 'mean': 'moving_mean',
                    'var': 'moving_variance'}

# Branches of each Inception block type in creation order (torchvision's and Keras' alike).
_INCEPTION_BRANCHES = {
    'A': ('branch1x1', 'branch5x5_1', 'branch5x5_2', 'branch3x3dbl_1', 'branch3x3dbl_2',
          'branch3x3dbl_3', 'branch_pool'),
    'B': ('branch3x3', 'branch3x3dbl_1', 'branch3x3dbl_2', 'branch3x3dbl_3'),
    'C': ('branch1x1', 'branch7x7_1', 'branch7x7_2', 'branch7x7_3', 'branch7x7dbl_1',
          'branch7x7dbl_2', 'branch7x7dbl_3', 'branch7x7dbl_4', 'branch7x7dbl_5', 'branch_pool'),
    'D': ('branch3x3_1', 'branch3x3_2', 'branch7x7x3_1', 'branch7x7x3_2', 'branch7x7x3_3',
          'branch7x7x3_4'),
    'E': ('branch1x1', 'branch3x3_1', 'branch3x3_2a', 'branch3x3_2b', 'branch3x3dbl_1',
          'branch3x3dbl_2', 'branch3x3dbl_3a', 'branch3x3dbl_3b', 'branch_pool'),
}
_INCEPTION_TYPES = 'AAABCCCCDEE'  # mixed0..mixed10
# Keras' Functional model lists a block's layers by depth, not creation: position -> creation
# index within the block (read off keras.applications.InceptionV3's `model.layers`).
_KERAS3_INCEPTION_ORDER = {'A': (3, 1, 4, 0, 2, 5, 6), 'B': (1, 2, 0, 3),
                           'C': (4, 5, 1, 6, 2, 7, 0, 3, 8, 9), 'D': (2, 3, 0, 4, 1, 5),
                           'E': (4, 1, 5, 2, 3, 6, 7, 0, 8)}


def inception_modules() -> list[tuple[str, str]]:
  """(top-level module, conv module) of every InceptionV3 conv in creation order."""
  out = [('stem', name) for name in inception.STEM_LAYERS]
  for mixed, kind in zip(inception.MIXED_NAMES, _INCEPTION_TYPES):
    out += [(mixed, branch) for branch in _INCEPTION_BRANCHES[kind]]
  return out


_INCEPTION_INDEX = {m: i for i, m in enumerate(inception_modules())}


# ----------------------------------------------------------------------------------------------
# torchvision.


def _vgg_feature_index(spec: vgg.ArchSpec, block: int, conv: int) -> int:
  """Index in torchvision's `features` Sequential of conv `conv` of block `block` (from 1)."""
  per_conv = 3 if spec.batch_norm else 2  # conv, [bn,] relu
  before = sum(spec.convs[:block - 1])
  return before * per_conv + (block - 1) + (conv - 1) * per_conv  # one pool per earlier block


def torchvision_name(arch: str, path: tuple[str, ...]) -> str:
  """The torchvision state-dict key of flax variable `path` of `arch`."""
  collection, *modules, leaf = path
  top = modules[0]
  leaf = torch_files.LEAF_NAMES[(collection, leaf)]
  kind = models.ARCHS[arch]
  if kind == 'resnet':
    if top.startswith('stage'):
      layer = {'downsample_conv': 'downsample.0',
               'downsample_bn': 'downsample.1'}.get(modules[2], modules[2])
      prefix = f'layer{top[5:]}.{modules[1][5:]}.{layer}'
    else:
      prefix = {'stem_conv': 'conv1', 'stem_bn': 'bn1', 'head': 'fc'}[top]
  elif kind == 'vgg':
    if top.startswith('block'):
      layer = modules[1]  # conv{i} or bn{i}
      index = _vgg_feature_index(vgg.ARCHS[arch], int(top[5:]), int(layer[-1]))
      prefix = f'features.{index + (layer.startswith("bn"))}'
    else:
      prefix = {'fc1': 'classifier.0', 'fc2': 'classifier.3', 'head': 'classifier.6'}[top]
  else:
    if top == 'head':
      prefix = 'fc'
    elif top == 'stem':
      prefix = f'{modules[1]}.{modules[2]}'
    else:
      mixed = inception.TORCHVISION_MIXED[inception.MIXED_NAMES.index(top)]
      prefix = f'{mixed}.{modules[1]}.{modules[2]}'
  return f'{prefix}.{leaf}'


def torchvision_ignored(arch: str, name: str) -> bool:
  """Tensors of a torchvision file no model here uses: BatchNorm counters, and InceptionV3's
  auxiliary classifier (it only trains the original network)."""
  return name.endswith('num_batches_tracked') or (
      models.ARCHS[arch] == 'inception' and name.startswith('AuxLogits.'))


# ----------------------------------------------------------------------------------------------
# Keras.


def keras_name(arch: str, path: tuple[str, ...], head_layer: str = 'predictions') -> str:
  """The '<layer>/<variable>' key of flax variable `path` of `arch` in a Keras file."""
  _, *modules, leaf = path
  top = modules[0]
  kind = models.ARCHS[arch]
  if top == 'head':
    layer = head_layer
  elif top.startswith('fc'):
    layer = top
  elif kind == 'resnet':
    layer = _resnet_keras_layer(modules)
  elif kind == 'vgg':
    layer = f'{top}_{modules[1]}'
  else:
    index = _INCEPTION_INDEX[(top, modules[1])]
    layer = f'conv2d_{index}' if modules[2] == 'conv' else f'batch_normalization_{index}'
  if layer.endswith('_bn') or layer.startswith('batch_normalization'):
    leaf = _KERAS_BN_LEAVES[leaf]
  return f'{layer}/{leaf}'


def _resnet_keras_layer(modules: list[str]) -> str:
  top = modules[0]
  if not top.startswith('stage'):
    return {'stem_conv': 'conv1_conv', 'stem_bn': 'conv1_bn'}[top]
  layer = modules[2]  # conv1..conv3, bn1..bn3, downsample_conv/_bn
  kind = 'bn' if 'bn' in layer else 'conv'
  index = '0' if layer.startswith('downsample') else layer[-1]
  return f'conv{int(top[5:]) + 1}_block{int(modules[1][5:]) + 1}_{index}_{kind}'


def resnet_keras3_order(spec: resnet.ArchSpec) -> dict[str, list[str]]:
  """keras.applications ResNet layer names in Keras 3's Functional layer order.

  Keras orders a block with a conv shortcut as 1_conv, 1_bn, 2_conv, 2_bn, 0_conv, 3_conv,
  0_bn, 3_bn (topological order by depth).
  """
  convs, bns = ['conv1_conv'], ['conv1_bn']
  for s, n in enumerate(spec.stage_sizes):
    for b in range(n):
      p = f'conv{s + 2}_block{b + 1}'
      order = ('1', '2', '0', '3') if b == 0 else ('1', '2', '3')
      convs += [f'{p}_{i}_conv' for i in order]
      bns += [f'{p}_{i}_bn' for i in order]
  return {'conv2d': convs, 'batch_normalization': bns, 'dense': ['predictions']}


def keras3_positions(arch: str) -> dict[str, list[str]]:
  """{layer class: layer names by position} for a Keras 3 `.weights.h5` file of `arch`, whose
  layers are named by class and position (`conv2d_7` is the eighth Conv2D in model.layers)."""
  kind = models.ARCHS[arch]
  if kind == 'resnet':
    return resnet_keras3_order(resnet.ARCHS[arch])
  if kind == 'vgg':
    spec = vgg.ARCHS[arch]
    convs = [f'block{b}_conv{i}' for b, n in enumerate(spec.convs, 1) for i in range(1, n + 1)]
    return {'conv2d': convs, 'batch_normalization': [], 'dense': ['fc1', 'fc2', 'predictions']}
  order = list(range(len(inception.STEM_LAYERS)))
  for kind_ in _INCEPTION_TYPES:
    start = len(order)
    order += [start + i for i in _KERAS3_INCEPTION_ORDER[kind_]]
  return {'conv2d': [f'conv2d_{i}' for i in order],
          'batch_normalization': [f'batch_normalization_{i}' for i in order],
          'dense': ['predictions']}


def keras3_arch(convs: int, batch_norms: int) -> str | None:
  """The keras.applications arch a Keras 3 file with these layer counts holds, if any."""
  for arch in models.ARCHS:
    try:
      models.check_arch(arch, 'keras')
    except ValueError:
      continue
    order = keras3_positions(arch)
    if (len(order['conv2d']), len(order['batch_normalization'])) == (convs, batch_norms):
      return arch
  return None


# ----------------------------------------------------------------------------------------------
# Which arch a file holds.


def guess_arch(names: Collection[str], style: str) -> str | None:
  """Which registered arch the tensor names of a `style` file describe, if any (by their
  block counts; no values are needed)."""
  names = list(names)
  if style == 'torchvision':
    if any(n.startswith('Mixed_5b.') for n in names):
      return 'inception_v3'
    if any(n.startswith('features.') for n in names):
      return _guess_torchvision_vgg(names)
  else:
    if any(n.startswith('conv2d_93/') for n in names):
      return 'inception_v3'
    convs = {n.split('/')[0] for n in names if re.match(r'^block\d_conv\d+/', n)}
    if convs:
      return next((a for a, s in vgg.ARCHS.items()
                   if not s.batch_norm and sum(s.convs) == len(convs)), None)
  return _guess_resnet(names, style)


def _guess_torchvision_vgg(names: list[str]) -> str | None:
  indices = {int(n.split('.')[1]) for n in names if re.match(r'^features\.\d+\.weight$', n)}
  bn = {int(n.split('.')[1]) for n in names if re.match(r'^features\.\d+\.running_mean$', n)}
  convs = len(indices - bn)
  return next((a for a, s in vgg.ARCHS.items()
               if s.batch_norm == bool(bn) and sum(s.convs) == convs), None)


def _guess_resnet(names: list[str], style: str) -> str | None:
  pattern = (re.compile(r'^layer(\d)\.(\d+)\.') if style == 'torchvision'
             else re.compile(r'^conv(\d)_block(\d+)_'))
  first_stage, first_block = (1, 0) if style == 'torchvision' else (2, 1)
  counts = [0, 0, 0, 0]
  for name in names:
    m = pattern.match(name)
    if m and 0 <= int(m.group(1)) - first_stage < 4:
      s = int(m.group(1)) - first_stage
      counts[s] = max(counts[s], int(m.group(2)) - first_block + 1)
  bottleneck = style == 'keras' or any('.conv3.' in k for k in names)
  for arch, spec in resnet.ARCHS.items():
    if (tuple(counts) == spec.stage_sizes
        and (spec.block == 'bottleneck') == bottleneck):
      return arch
  return None


def describe(arch: str | None) -> str:
  """How an error message names what a file looks like."""
  return 'weights of no known architecture' if arch is None else f'{arch} weights'
