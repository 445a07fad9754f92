"""grain batches: deterministic, epoch-reshuffled, resumable from the saved state, shardable."""
import logging

import numpy as np
import pytest

from common import data
from common.errors import UserError


def _source(n=50):
  return data.ArraySource({'x': np.arange(n) * 10, 'y': np.arange(n)})


def test_each_epoch_is_a_permutation_and_epochs_differ():
  it = data.BatchIterator(data.batched(_source(50), 10, seed=0))
  epochs = [np.concatenate([next(it)['y'] for _ in range(5)]) for _ in range(2)]
  for e in epochs:
    assert sorted(e.tolist()) == list(range(50))
  assert not np.array_equal(epochs[0], epochs[1])


def test_same_seed_same_stream_other_seed_differs():
  a = data.BatchIterator(data.batched(_source(), 8, seed=3)).take(7)
  b = data.BatchIterator(data.batched(_source(), 8, seed=3)).take(7)
  c = data.BatchIterator(data.batched(_source(), 8, seed=4)).take(7)
  assert np.array_equal(a['x'], b['x']) and not np.array_equal(a['x'], c['x'])
  assert a['x'].shape == (7, 8) and np.array_equal(a['x'], a['y'] * 10)


def test_state_restores_the_exact_continuation():
  it = data.BatchIterator(data.batched(_source(), 8, seed=1))
  it.take(9)
  state = it.get_state()
  expected = it.take(5)
  fresh = data.BatchIterator(data.batched(_source(), 8, seed=1))
  fresh.set_state(state)
  assert np.array_equal(fresh.take(5)['x'], expected['x'])


def test_process_shards_are_disjoint_and_cover_the_global_batch():
  full = data.BatchIterator(data.batched(_source(), 8, seed=2)).take(3)['y']
  shards = [data.BatchIterator(data.batched(_source(), 8, seed=2, shard_index=i, shard_count=2)).take(3)['y']
            for i in range(2)]
  assert np.array_equal(np.concatenate(shards, axis=1), full)
  for step in range(3):
    assert not set(shards[0][step]) & set(shards[1][step])


def test_bad_batch_sizes():
  with pytest.raises(UserError, match='larger than the dataset'):
    data.batched(_source(5), 8, seed=0)
  with pytest.raises(UserError, match='must be positive'):
    data.batched(_source(5), 0, seed=0)
  with pytest.raises(UserError, match='not divisible'):
    data.batched(_source(50), 9, seed=0, shard_count=2)


def test_missing_tfds_dataset_names_the_build_command(tmp_path, caplog):
  caplog.set_level(logging.DEBUG)
  with pytest.raises(UserError) as info:
    data.tfds_source('mnist', 'train', data_dir=str(tmp_path))
  message = str(info.value)
  assert '\n' not in message
  assert f"TFDS dataset 'mnist' is not prepared in {tmp_path}" in message
  assert 'tfds build mnist --file_format=array_record' in message
  assert '--config.data.data_dir=DIR' in message
  # TFDS's own warnings about the empty directory would print before the one error line.
  assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
  assert logging.getLogger('absl').level == logging.NOTSET  # the silence ends with the lookup
