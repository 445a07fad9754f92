"""The same GAN run on 8 simulated CPU devices (batch sharded along `data`) matches 1 device,
with the train state replicated or fully sharded (fsdp)."""
import base64
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from common.writers import read_metrics
from tests.gan.test_train import REPO, _final_state, _flat

RUNS = {
    'toy': ('gan/configs/toy2d.py:ring8,quick', ['train.steps=20', 'train.rounds_per_call=10',
                                                 'train.log_every=10', 'train.eval_every=20', 'train.checkpoint_every=20',
                                                 'eval.plots=False', 'data.batch_size=64']),
    'digits': ('gan/configs/dcgan_digits.py:quick', ['train.steps=20']),
}


def _run(devices: int, spec: str, overrides: list[str], workdir: str) -> None:
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
         'JAX_PLATFORMS': 'cpu'}
  cmd = [sys.executable, '-m', 'launch.gan', f'--config={spec}', f'--workdir={workdir}',
         *[f'--config.{o}' for o in overrides]]
  proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RUNS))
def test_eight_devices_match_one(tmp_path, name):
  spec, overrides = RUNS[name]
  _run(1, spec, overrides, str(tmp_path / 'one'))
  _run(8, spec, overrides, str(tmp_path / 'eight'))
  assert json.load(open(tmp_path / 'eight' / 'config.json'))['devices']['count'] == 8
  a, b = _flat(_final_state(str(tmp_path / 'one'))[1]), _flat(_final_state(str(tmp_path / 'eight'))[1])
  for k in a:
    if a[k].dtype.kind == 'f':
      np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)
    else:
      np.testing.assert_array_equal(b[k], a[k], err_msg=k)


# fsdp: the toy at the default min_size (its 128x128 kernels split, small arrays replicated);
# the digits DCGAN with min_size=0, so conv kernels, biases and BatchNorm statistics split too.
FSDP_RUNS = {
    'toy': (RUNS['toy'][0], [*RUNS['toy'][1], 'train.checkpoint_every=10', 'sharding.params=fsdp'], 2**14),
    'digits': (RUNS['digits'][0], [*RUNS['digits'][1], 'train.checkpoint_every=10', 'sharding.params=fsdp',
                                   'sharding.min_size=0'], 0),
}


def _saved_specs(workdir: str, step: int) -> dict[str, list]:
  """The partition spec orbax recorded for every array of a checkpoint's state, by _flat key."""
  with open(os.path.join(workdir, 'checkpoints', str(step), 'state', '_sharding')) as f:
    recorded = json.load(f)
  return {base64.b64decode(k).decode().replace('.', '/') + '/': json.loads(v)['partition_spec']
          for k, v in recorded.items()}


def _expected_spec(shape: tuple, devices: int, min_size: int) -> list:
  """The fsdp rule, written out: split the largest dimension divisible by `devices`."""
  size = int(np.prod(shape))
  fits = [i for i, d in enumerate(shape) if d % devices == 0 and d >= devices]
  if size < min_size or not fits:
    return []
  axis = sorted(fits, key=lambda i: (-shape[i], i))[0]
  return [None] * axis + ['data']


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(FSDP_RUNS))
def test_fsdp_eight_devices_match_one_shard_and_resume(tmp_path, name):
  spec, overrides, min_size = FSDP_RUNS[name]
  _run(1, spec, overrides, str(tmp_path / 'one'))
  _run(8, spec, overrides, str(tmp_path / 'eight'))
  step, eight = _final_state(str(tmp_path / 'eight'))
  a, b = _flat(_final_state(str(tmp_path / 'one'))[1]), _flat(eight)
  for k in a:
    if a[k].dtype.kind == 'f':
      np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)
    else:
      np.testing.assert_array_equal(b[k], a[k], err_msg=k)
  # The checkpoint holds the arrays split as the rule says: really sharded, not just replicated.
  specs = _saved_specs(str(tmp_path / 'eight'), step)
  arrays = {k: v for k, v in b.items() if v.dtype.kind != 'O'}  # not optax's empty states
  assert specs.keys() == arrays.keys()
  for k, v in arrays.items():
    assert specs[k] == _expected_spec(v.shape, 8, min_size), k
  split = [k for k, v in specs.items() if v]
  assert any(k.startswith('g/params/') for k in split) and any(k.startswith('d_opt/') for k in split)
  assert specs['step/'] == [] and specs['rng/'] == []
  assert all(v == [] for v in _saved_specs(str(tmp_path / 'one'), step).values())
  # Resume from the mid-run checkpoint: bitwise the uninterrupted run, metrics included.
  resumed = str(tmp_path / 'resumed')
  shutil.copytree(tmp_path / 'eight', resumed)
  shutil.rmtree(os.path.join(resumed, 'checkpoints', str(step)))
  os.remove(os.path.join(resumed, 'summary.json'))
  _run(8, spec, overrides, resumed)
  c = _flat(_final_state(resumed)[1])
  for k in b:
    np.testing.assert_array_equal(c[k], b[k], err_msg=k)
  assert read_metrics(resumed) == read_metrics(str(tmp_path / 'eight'))


def test_batch_not_divisible_by_devices(tmp_path):
  spec, overrides = RUNS['toy']
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8', 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run([sys.executable, '-m', 'launch.gan', f'--config={spec}', f'--workdir={tmp_path}/w',
                         '--config.data.batch_size=60'], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip() == 'error: global batch 60 is not divisible by the 8 devices; use a multiple of 8'
