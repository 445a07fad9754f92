"""Where a GAN's real data comes from: 2D distributions sampled on device, or image batches
read through grain on the host (one chunk of rounds at a time, sharded over the mesh)."""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import ml_collections
import numpy as np

from common import data as data_lib
from common import sharding
from common.errors import UserError, unknown_name
from gan import data2d, images


@dataclasses.dataclass
class GanData:
  shape: tuple[int, ...]
  real_fn: Callable[[jax.Array, Any], jax.Array]
  source2d: data2d.Source2D | None = None
  iterator: data_lib.BatchIterator | None = None
  num_examples: int | None = None
  labels: bool = False  # conditional runs also take each batch's 'label'

  def next_chunk(self, rounds: int, n_d: int, mesh, length: int | None = None):
    """Real batches for `rounds` rounds: None (sampled on device) or {'image': [L, n_d, B, ...]}
    (and 'label' [L, n_d, B]) sharded along B over the mesh's `data` axis. L = max(rounds,
    length): zero batches pad a short chunk to `length` rounds so every chunk has one shape."""
    if self.iterator is None:
      return None
    taken = self.iterator.take(rounds * n_d)
    keys = ('image', 'label') if self.labels else ('image',)
    out = {}
    for k in keys:
      arr = taken[k].reshape(rounds, n_d, *taken[k].shape[1:])
      if length is not None and length > rounds:
        arr = np.concatenate([arr, np.zeros((length - rounds, *arr.shape[1:]), arr.dtype)])
      out[k] = sharding.global_batch(arr, mesh, batch_axis=2)
    return out


def build_data(config: ml_collections.ConfigDict) -> GanData:
  name, batch = config.data.name, config.data.batch_size
  if name in data2d.DISTRIBUTIONS or name == 'points':
    source = data2d.get_source(name, config.data.path)
    if source.num_points is not None and batch > source.num_points:
      raise UserError(f'batch size {batch} is larger than the points file ({source.num_points} '
                      'points); lower data.batch_size')
    return GanData((2,), lambda key, _: source.sample(key, batch), source2d=source)
  if name not in images.IMAGE_DATASETS:
    raise unknown_name('dataset', name, [*data2d.DISTRIBUTIONS, 'points', *images.IMAGE_DATASETS])
  k = int(config.model.get('num_classes', 0))
  src, shape = images.image_source(config.data, conditional=k > 0)
  if k and name == 'folder':
    check_folder_classes(src.folder, k)
  src = subset(src, int(config.data.get('subset', 0)))
  ds = data_lib.batched(src, batch, seed=config.seed, shuffle=True,
                        shard_index=jax.process_index(), shard_count=jax.process_count())
  return GanData(tuple(shape), lambda _, b: b['image'], iterator=data_lib.BatchIterator(ds),
                 num_examples=len(src), labels=k > 0)


def subset(src, n: int):
  """The first n records of a fixed random order of `src` (seed 0, whatever config.seed is, so
  every run of a comparison trains on the same images); n = 0: all of them."""
  if n < 0 or n > len(src):
    raise UserError(f'data.subset={n} must be in 0..{len(src)} (the dataset has {len(src)} '
                    'images; 0: all)')
  if not n or n == len(src):
    return src
  return data_lib.SubsetSource(src, np.sort(np.random.default_rng(0).permutation(len(src))[:n]))


def check_folder_classes(found, num_classes: int) -> None:
  """A conditional run on a folder needs one sub-folder per class, as many as it has classes."""
  if not found.classes:
    raise UserError(f'model.num_classes={num_classes} needs class sub-folders, but the images '
                    f'of {found.root} lie in one flat folder: sort them into one sub-folder per '
                    'class or set model.num_classes=0')
  if len(found.classes) != num_classes:
    raise UserError(f'model.num_classes={num_classes} but {found.root} has '
                    f'{len(found.classes)} class folders; set model.num_classes='
                    f'{len(found.classes)}')
