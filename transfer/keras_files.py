"""Keras applications weights files (HDF5) -> {tensor name: float32 array}.

Two layouts: the legacy one of the published `resnet*_weights_tf_dim_ordering_tf_kernels[_notop]
.h5` files (layer and weight names as attributes) and Keras 3 `.weights.h5` files from
`model.save_weights` (layers by position, matched to the architecture's layer order).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from common import file_kinds, torch_files
from common.errors import UserError
from transfer import resnet

# MD5 of the published Keras files, from keras/src/applications/resnet.py
# (WEIGHTS_HASHES: (with top, without top)).
KERAS_MD5 = {
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
        return _read_keras_legacy(root)
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


def keras3_layer_order(spec: resnet.ArchSpec) -> dict[str, list[str]]:
  """keras.applications layer names in Keras 3's Functional layer order.

  Keras 3 `.weights.h5` files name layers by class and position (`conv2d_7`,
  `batch_normalization_7`), so positions must be mapped back to names. Keras
  orders a block with a conv shortcut as 1_conv, 1_bn, 2_conv, 2_bn, 0_conv,
  3_conv, 0_bn, 3_bn (topological order by depth).
  """
  convs, bns = ['conv1_conv'], ['conv1_bn']
  for s, n in enumerate(spec.stage_sizes):
    for b in range(n):
      p = f'conv{s + 2}_block{b + 1}'
      order = ('1', '2', '0', '3') if b == 0 else ('1', '2', '3')
      convs += [f'{p}_{i}_conv' for i in order]
      bns += [f'{p}_{i}_bn' for i in order]
  return {'conv2d': convs, 'batch_normalization': bns, 'dense': ['predictions']}


def _read_keras3(layers, path: Path, arch: str) -> dict[str, np.ndarray]:
  """Keras 3 layout: layers/<layer name>/vars/<index>, in weight order."""
  by_kind: dict[str, list[tuple[int, Any]]] = {k: [] for k in _KERAS3_VARS}
  named = 'conv1_conv' in layers
  tensors = {}
  for name, group in layers.items():
    if 'vars' not in group or not len(group['vars']):
      continue
    values = [np.asarray(group['vars'][str(i)], np.float32)
              for i in range(len(group['vars']))]
    if named:  # layers saved under their own names
      kind = ('batch_normalization' if name.endswith('_bn') else
              'conv2d' if name.endswith('_conv') else 'dense')
      tensors.update({f'{name}/{v}': x for v, x in
                      zip(_KERAS3_VARS[kind], values)})
      continue
    kind, _, index = name.rpartition('_')
    if not index.isdigit():
      kind, index = name, '0'
    if kind not in by_kind:
      raise UserError(f'weights file {path} has a {name!r} layer that a '
                      f'keras.applications ResNet does not have; use a file '
                      f'saved from keras.applications.ResNet50/101/152')
    by_kind[kind].append((int(index), values))
  if named:
    return tensors
  # Name positions with the layout of the depth the file holds (judged by its
  # conv count), so a wrong --arch is reported with meaningful names.
  n_convs = len(by_kind['conv2d'])
  spec = resnet.ARCHS.get(arch)
  file_spec = next((s for s in resnet.ARCHS.values() if 'keras' in s.styles
                    and 5 + 3 * sum(s.stage_sizes) == n_convs), spec)
  order = keras3_layer_order(file_spec)
  for kind, entries in by_kind.items():
    names = order[kind]
    for pos, (_, values) in enumerate(sorted(entries, key=lambda e: e[0])):
      layer = names[pos] if pos < len(names) else f'{kind}_{pos}'
      tensors.update({f'{layer}/{v}': x for v, x in
                      zip(_KERAS3_VARS[kind], values)})
  return tensors
