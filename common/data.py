"""Input pipelines on grain: deterministic, random-access, checkpointable.

Element `i` of a `batched` dataset is batch `i` of an endless stream: batch `i`
of epoch `e = i // batches_per_epoch` takes its indices from a permutation
seeded by `(seed, e)`. Because every batch is a pure function of `(seed, i)`,
the iterator state is just `next_index`, which the checkpoint stores.
"""
from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Callable, Sequence

import grain
import numpy as np

from common.errors import UserError, first_line


class ArraySource:
  """Random-access records from in-memory arrays: `record[i] = {k: a[i]}`."""

  def __init__(self, arrays: dict[str, np.ndarray]):
    lengths = {len(a) for a in arrays.values()}
    if len(lengths) != 1:
      raise UserError(f'arrays have different lengths {sorted(lengths)}; give one row per example')
    self.arrays = arrays
    self.num_records = lengths.pop()

  def __len__(self) -> int:
    return self.num_records

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return {k: a[indices] for k, a in self.arrays.items()}


class RecordSource:
  """Random-access source of dict records (e.g. `tfds.data_source`) with a per-record decoder."""

  def __init__(self, source: Any, decode: Callable[[dict], dict]):
    self.source = source
    self.decode = decode

  def __len__(self) -> int:
    return len(self.source)

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    records = [self.decode(self.source[int(i)]) for i in indices]
    return {k: np.stack([r[k] for r in records]) for k in records[0]}


class SubsetSource:
  """The records of `source` at `indices`, in that order."""

  def __init__(self, source, indices: np.ndarray):
    self.source = source
    self.indices = np.asarray(indices, np.int64)

  def __len__(self) -> int:
    return len(self.indices)

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    return self.source.gather(self.indices[np.asarray(indices)])


class _EpochBatches:
  """grain random-access source whose element `i` is batch `i` (see module doc)."""

  def __init__(self, source, batch_size: int, seed: int, shuffle: bool,
               shard_index: int, shard_count: int):
    self.source = source
    self.batch_size = batch_size
    self.seed = seed
    self.shuffle = shuffle
    self.shard_index = shard_index
    self.shard_count = shard_count
    self.batches_per_epoch = len(source) // batch_size
    self._perm_epoch = None
    self._perm = None

  def __len__(self) -> int:
    return 2**62  # endless stream; callers stop by step count

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch != self._perm_epoch:
      n = len(self.source)
      if self.shuffle:
        self._perm = np.random.default_rng([self.seed, epoch]).permutation(n)
      else:
        self._perm = np.arange(n)
      self._perm_epoch = epoch
    return self._perm

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    epoch, pos = divmod(int(index), self.batches_per_epoch)
    idx = self._permutation(epoch)[pos * self.batch_size:(pos + 1) * self.batch_size]
    # Each process reads a disjoint slice of the global batch.
    per = self.batch_size // self.shard_count
    idx = idx[self.shard_index * per:(self.shard_index + 1) * per]
    batch = self.source.gather(idx)
    batch['index'] = idx.astype(np.int64)
    return batch


def batched(source, batch_size: int, seed: int, shuffle: bool = True,
            shard_index: int = 0, shard_count: int = 1) -> grain.MapDataset:
  """An endless grain dataset of global batches (this process's shard of each).

  Drops the last partial batch of every epoch so shapes stay static under jit.
  """
  if batch_size <= 0:
    raise UserError(f'batch size must be positive, got {batch_size}')
  if batch_size > len(source):
    raise UserError(f'batch size {batch_size} is larger than the dataset ({len(source)} examples); '
                    'lower the batch size')
  if batch_size % shard_count:
    raise UserError(f'batch size {batch_size} is not divisible by the {shard_count} processes')
  return grain.MapDataset.source(
      _EpochBatches(source, batch_size, seed, shuffle, shard_index, shard_count))


class BatchIterator:
  """Iterator over a `batched` dataset with `get_state`/`set_state` for checkpoints."""

  def __init__(self, dataset: grain.MapDataset):
    self._it = iter(dataset.to_iter_dataset())

  def __iter__(self):
    return self

  def __next__(self) -> dict[str, np.ndarray]:
    return next(self._it)

  def get_state(self) -> dict:
    return dict(self._it.get_state())

  def set_state(self, state: dict) -> None:
    self._it.set_state(state)

  def take(self, n: int) -> dict[str, np.ndarray]:
    """The next `n` batches stacked on a new leading axis: `[n, B, ...]`."""
    batches = [next(self._it) for _ in range(n)]
    return {k: np.stack([b[k] for b in batches]) for k in batches[0]}


TFDS_PREPARE_HINT = ('prepare it once with network access: pip install "advcnn[prepare]" && '
                     'tfds build {name} --file_format=array_record{dir_flag}, or point '
                     '--config.data.data_dir=DIR at a directory that holds it prepared')


@contextlib.contextmanager
def _quiet_tfds():
  """Silences TFDS's absl warnings (e.g. a missing dataset_info.json) during a lookup.

  A dataset that is not there is reported as one UserError line; the warnings before it would
  only repeat it in TFDS's words.
  """
  loggers = [logging.getLogger(name) for name in ('absl', 'tensorflow_datasets')]
  levels = [logger.level for logger in loggers]
  for logger in loggers:
    logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    for logger, level in zip(loggers, levels):
      logger.setLevel(level)


def tfds_source(name: str, split: str, data_dir: str | None = None):
  """`tfds.data_source` for a prepared dataset, or a UserError naming the `tfds build` command."""
  import tensorflow_datasets as tfds  # heavy import; only when a TFDS dataset is asked for

  dir_flag = f' --data_dir={data_dir}' if data_dir else ''
  hint = TFDS_PREPARE_HINT.format(name=name, dir_flag=dir_flag)
  with _quiet_tfds():
    try:
      builder = tfds.builder(name, data_dir=data_dir)
    except Exception as e:  # tfds raises several types for unknown names
      raise UserError(f'unknown TFDS dataset {name!r} ({type(e).__name__}); check the '
                      'name') from None
    if not builder.is_prepared():
      where = data_dir or os.environ.get('TFDS_DATA_DIR', '~/tensorflow_datasets')
      raise UserError(f'TFDS dataset {name!r} is not prepared in {where}; {hint}')
    try:
      return tfds.data_source(name, split=split, data_dir=data_dir, download=False)
    except Exception as e:
      raise UserError(f'cannot read TFDS dataset {name!r} split {split!r} '
                      f'({first_line(e)}); {hint}') from None


def decode_image(image: Any) -> np.ndarray:
  """TFDS image feature (array or encoded bytes) -> uint8 [H, W, C]."""
  if isinstance(image, (bytes, bytearray)):
    import io
    from PIL import Image
    image = np.asarray(Image.open(io.BytesIO(image)))
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  return image
