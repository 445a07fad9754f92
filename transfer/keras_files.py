"""Keras applications weights files (HDF5) -> {tensor name: float32 array}.

Two layouts: the legacy one of the published `*_weights_tf_dim_ordering_tf_kernels[_notop].h5`
files (layer and weight names as attributes) and Keras 3 `.weights.h5` files from
`model.save_weights` (layers by position, matched to the architecture's layer order by
`transfer.layouts.keras3_positions`). Layers Keras named only by class and creation order
(InceptionV3's `conv2d_7`, `batch_normalization_7`) are renumbered 0.. in that order, whatever
number the session that saved them had reached.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import re

import numpy as np

from common import file_kinds, torch_files
from common.errors import UserError
from transfer import layouts, models

# MD5 of the published Keras files, from keras/src/applications/{resnet,vgg16,vgg19,
# inception_v3}.py (their `file_hash` arguments).
KERAS_MD5 = {
    'vgg16_weights_tf_dim_ordering_tf_kernels.h5': '64373286793e3c8b2b4e3219cbf3544b',
    'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5': '6d6bbae143d832006294945121d1f1fc',
    'vgg19_weights_tf_dim_ordering_tf_kernels.h5': 'cbe5617147190e668d6c5d5026f83318',
    'vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5': '253f8cb515780f3b799900260a226db6',
    'inception_v3_weights_tf_dim_ordering_tf_kernels.h5': '9a0d58056eeedaa3f26cb7ebd46da564',
    'inception_v3_weights_tf_dim_ordering_tf_kernels_notop.h5':
        'bcbd6486424b2319ff4ef7d526e38f63',
    'resnet50_weights_tf_dim_ordering_tf_kernels.h5':
        '2cb95161c43110f7111970584f804107',
    'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5':
        '4d473c1dd8becc155b73f8504c6f6626',
    'resnet101_weights_tf_dim_ordering_tf_kernels.h5':
        'f1aeb4b969a6efcfb50fad2f0c20cfc5',
    'resnet101_weights_tf_dim_ordering_tf_kernels_notop.h5':
        '88cf7a10940856eca736dc7b7e228a21',
    'resnet152_weights_tf_dim_ordering_tf_kernels.h5':
        '100835be76be38e30d865e96f2aaae62',
    'resnet152_weights_tf_dim_ordering_tf_kernels_notop.h5':
        'ee4c566cf9a93f14d82f913c2dc6dd0c',
}


def verify_md5(path: Path) -> None:
  expected = KERAS_MD5.get(path.name)
  if expected is None:
    return
  if torch_files.file_digest(path, 'md5') != expected:
    raise UserError(f'weights file {path} fails its checksum (MD5 differs from '
                    f'the published {path.name}); download it again')


def read_keras(path: Path, arch: str) -> dict[str, np.ndarray]:
  import h5py  # pylint: disable=g-import-not-at-top
  try:
    with h5py.File(path, 'r') as f:
      root = f['model_weights'] if 'model_weights' in f else f
      if _h5_attr_list(root, 'layer_names') is not None:
        return _renumber_auto_names(_read_keras_legacy(root))
      if 'layers' in f and isinstance(f['layers'], h5py.Group):
        return _read_keras3(f['layers'], path, arch)
  except UserError:
    raise
  except Exception as e:  # h5py reports damage as OSError, KeyError, ...
    why = ('shorter than its header says' if 'truncated file' in str(e)
           else f'{type(e).__name__}: {file_kinds.brief(e)}')
    raise file_kinds.unreadable(path, 'hdf5', why) from None
  raise UserError(f'weights file {path} is neither a legacy Keras .h5 nor a '
                  f'Keras 3 .weights.h5 file; save it with '
                  f'model.save_weights("x.weights.h5")')


def _h5_attr_list(group, name: str) -> list[str] | None:
  """Reads a string-list attribute, joining Keras' chunks (`name0`, ...)."""
  if name in group.attrs:
    values = list(group.attrs[name])
  elif f'{name}0' in group.attrs:
    values, i = [], 0
    while f'{name}{i}' in group.attrs:
      values.extend(group.attrs[f'{name}{i}'])
      i += 1
  else:
    return None
  return [v.decode('utf8') if isinstance(v, bytes) else str(v) for v in values]


def _read_keras_legacy(root) -> dict[str, np.ndarray]:
  """Legacy layout: root attr layer_names; group per layer with weight_names.

  A weight name such as 'conv1_conv/kernel:0' is a dataset path inside the
  layer's group; the tensor is keyed '<layer>/<variable>' ('conv1_conv/kernel').
  """
  tensors = {}
  for layer in _h5_attr_list(root, 'layer_names'):
    group = root[layer]
    for weight_name in _h5_attr_list(group, 'weight_names') or []:
      var = weight_name.rsplit('/', 1)[-1].split(':')[0]
      tensors[f'{layer}/{var}'] = np.asarray(group[weight_name], np.float32)
  return tensors


_KERAS3_VARS = {
    'conv2d': ('kernel', 'bias'),
    'batch_normalization': ('gamma', 'beta', 'moving_mean', 'moving_variance'),
    'dense': ('kernel', 'bias'),
}
_AUTO_NAME = re.compile(r'^(conv2d|batch_normalization)(?:_(\d+))?$')

# The ResNet layer order (kept here for callers that read it from this module).
keras3_layer_order = layouts.resnet_keras3_order


def _var_names(kind: str, count: int) -> tuple[str, ...]:
  """A layer's variable names; a BatchNorm saved without its scale (scale=False) has 3."""
  names = _KERAS3_VARS[kind]
  return names[1:] if kind == 'batch_normalization' and count == 3 else names


def _renumber_auto_names(tensors: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """'conv2d_95/kernel' -> 'conv2d_1/kernel' when conv2d_94 is the file's first Conv2D: layers
  named by class and creation number are renumbered from 0 in creation order."""
  numbers: dict[str, set[int]] = {}
  for key in tensors:
    m = _AUTO_NAME.match(key.split('/')[0])
    if m:
      numbers.setdefault(m.group(1), set()).add(int(m.group(2) or 0))
  rank = {kind: {n: i for i, n in enumerate(sorted(found))} for kind, found in numbers.items()}
  out = {}
  for key, value in tensors.items():
    layer, _, var = key.partition('/')
    m = _AUTO_NAME.match(layer)
    if m:
      key = f'{m.group(1)}_{rank[m.group(1)][int(m.group(2) or 0)]}/{var}'
    out[key] = value
  return out


def _read_keras3(layers, path: Path, arch: str) -> dict[str, np.ndarray]:
  """Keras 3 layout: layers/<layer name>/vars/<index>, in weight order."""
  by_kind: dict[str, list[tuple[int, Any]]] = {k: [] for k in _KERAS3_VARS}
  named = 'conv1_conv' in layers or 'block1_conv1' in layers
  tensors = {}
  for name, group in layers.items():
    if 'vars' not in group or not len(group['vars']):
      continue
    values = [np.asarray(group['vars'][str(i)], np.float32)
              for i in range(len(group['vars']))]
    if named:  # layers saved under their own names
      kind = ('batch_normalization' if name.endswith('_bn') else
              'conv2d' if '_conv' in name else 'dense')
      tensors.update({f'{name}/{v}': x for v, x in
                      zip(_var_names(kind, len(values)), values)})
      continue
    kind, _, index = name.rpartition('_')
    if not index.isdigit():
      kind, index = name, '0'
    if kind not in by_kind:
      raise UserError(f'weights file {path} has a {name!r} layer that no keras.applications '
                      f'ResNet, VGG or InceptionV3 has; use a file saved from one of them')
    by_kind[kind].append((int(index), values))
  if named:
    return tensors
  # Name positions with the layout of the arch the file holds (judged by its layer counts), so
  # a wrong --arch is reported with meaningful names.
  file_arch = layouts.keras3_arch(len(by_kind['conv2d']), len(by_kind['batch_normalization']))
  order = layouts.keras3_positions(file_arch or (arch if arch in models.ARCHS else 'resnet50'))
  for kind, entries in by_kind.items():
    names = order[kind]
    if kind == 'dense' and len(entries) < len(names):
      names = names[len(names) - len(entries):]  # a top without hidden layers
    for pos, (_, values) in enumerate(sorted(entries, key=lambda e: e[0])):
      layer = names[pos] if pos < len(names) else f'{kind}_{pos}'
      tensors.update({f'{layer}/{v}': x for v, x in
                      zip(_var_names(kind, len(values)), values)})
  return tensors
