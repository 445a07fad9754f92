"""The train-state layouts: which dimension fsdp splits, and bad sharding options refused."""
import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from common import sharding
from common.config import load_config
from common.errors import UserError


@pytest.mark.parametrize('shape,min_size,spec', [
    ((128, 128), 0, P('data')),                   # equal sizes: the first
    ((64, 256), 0, P(None, 'data')),              # the largest divisible dimension
    ((4, 4, 16, 1), 0, P(None, None, 'data')),    # conv kernel [H, W, I, O]: 4 does not divide by 8
    ((1024, 12), 0, P('data')),
    ((12, 1000), 0, P(None, 'data')),             # 1000 = 8 * 125
    ((2,), 0, P()), ((), 0, P()), ((7, 9), 0, P()),
    ((128, 128), 2**14, P('data')), ((128, 127), 2**14, P()),  # below min_size: replicated
])
def test_fsdp_spec(shape, min_size, spec):
  assert sharding.fsdp_spec(shape, 8, min_size) == spec


def test_fsdp_spec_one_device_is_replicated():
  assert sharding.fsdp_spec((128, 128), 1) == P()


def test_state_shardings_follow_the_mode():
  mesh = sharding.data_mesh()
  tree = {'w': np.zeros((16, 8), np.float32), 'step': np.zeros((), np.int32)}
  out = sharding.state_shardings(tree, mesh, 'fsdp')
  n = jax.device_count()
  assert out['w'].spec == (P('data') if n > 1 and 16 % n == 0 else P()) and out['step'].spec == P()
  assert all(s.spec == P() for s in jax.tree.leaves(sharding.state_shardings(tree, mesh)))
  put = sharding.shard_state(tree, mesh, 'fsdp')
  np.testing.assert_array_equal(np.asarray(put['w']), tree['w'])
  assert put['w'].sharding == out['w']


def test_bad_modes_are_refused():
  with pytest.raises(UserError, match="unknown sharding.params 'zero'; choose one of: fsdp, replicated"):
    sharding.check_param_mode('zero', 0)
  with pytest.raises(UserError, match='sharding.min_size must be >= 0'):
    sharding.check_param_mode('fsdp', -1)


def test_gan_config_refuses_unknown_layout():
  from gan import train
  config = load_config('gan/configs/toy2d.py:ring8,quick', ['sharding.params=zero3'])
  with pytest.raises(UserError, match="unknown sharding.params 'zero3'"):
    train.validate(config)
