"""Transfer training on 8 simulated CPU devices (batch sharded along `data`) matches 1 device.

Fine-tuning a randomly initialised ResNet-18 on 16x16 digits with BatchNorm in
train mode is chaotic in float32: merely reversing the order of the examples
within each batch of 8, on one device, moves the loss by ~1e-2 within 4 steps.
So the 20-step run through the CLI keeps BatchNorm statistics frozen (the
backbone, BatchNorm scale/bias and head all train; SGD, whose updates do not
amplify rounding the way Adam's normalised first steps do), and global-batch
BatchNorm statistics and gradients are checked on a first step, before rounding
grows.
"""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from common.writers import read_metrics
from tests.gan.test_multihost import spawn_processes
from tests.gan.test_train import _final_state as gan_final_state
from tests.transfer.test_train import DIGITS, REPO

SPEC = f'{DIGITS}:fine_tune,quick'
# 40 images, global batch 8: 5 steps an epoch, 20 steps, run 5 to a jitted call.
OVERRIDES = ['model.weights=', 'freeze.bn_train=False', 'optim.name=sgd', 'optim.lr=0.01',
             'data.train_per_class=8', 'data.batch_size=8', 'train.epochs=4', 'train.log_every=5',
             'train.steps_per_call=5', 'data.test_limit=50']

# One process, 8 devices: the same steps on a 1-device mesh and on all 8, BatchNorm training.
# After one SGD step with momentum the optimiser state holds the gradient.
BN_SCRIPT = r'''
import sys
from common import distributed
distributed.widen_cpu_thread_pool()  # as the launchers do, before XLA starts
import jax
import numpy as np
from jax.sharding import Mesh
from common import sharding
from common.config import load_config
from transfer import data as data_lib, freeze, resnet, steps, weights
n_steps, batch, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
config = load_config('transfer/configs/digits.py:fine_tune,quick', ['data.train_per_class=8'])
records = data_lib.load_data(config.data, seed=0).train.gather(np.arange(n_steps * batch))
local = {k: records[k].reshape(n_steps, batch, *records[k].shape[1:]) for k in ('image', 'label')}
model = resnet.create_model('resnet18', 5)
variables = jax.device_get(weights.init_variables(model, config, '', jax.random.key(0)))
rules, mults = freeze.mode_rules('fine_tune', backbone_lr_mult=1.0)
hp = {'step0': np.int32(0), 'start': np.int32(0), 'steps': np.float32(n_steps),
      'lr': np.float32(0.01), 'warmup': np.float32(0), 'cosine': np.bool_(False),
      'linear': np.bool_(False), 'key': jax.random.key(0)}
out = {}
for name, devices in (('one', jax.devices()[:1]), ('eight', jax.devices())):
  mesh = Mesh(np.asarray(devices), ('data',))
  fns = steps.phase_fns(steps.step_spec(model, 'torchvision', 16, rules, mults, optimizer='sgd',
                                        bn_train=True, mesh=mesh))
  state = sharding.replicate({'params': variables['params'],
                              'batch_stats': variables['batch_stats'],
                              'opt': fns.tx.init(variables['params'])}, mesh)
  batches = {k: sharding.global_batch(v, mesh, batch_axis=1) for k, v in local.items()}
  state, metrics = fns.chunk(state, batches, sharding.replicate(hp, mesh))
  flat = jax.tree_util.tree_flatten_with_path(jax.device_get(
      {'params': state['params'], 'batch_stats': state['batch_stats'], 'grad': state['opt'],
       'loss': metrics['loss']}))[0]
  out.update({name + jax.tree_util.keystr(p): np.asarray(v) for p, v in flat})
np.savez(out_path, **out)
'''


def _env(devices: int) -> dict:
  return {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}',
          'JAX_PLATFORMS': 'cpu'}


def _launch(devices: int, workdir: str, overrides: list[str]) -> subprocess.CompletedProcess:
  cmd = [sys.executable, '-m', 'launch.transfer', f'--config={SPEC}', f'--workdir={workdir}',
         *[f'--config.{o}' for o in overrides]]
  return subprocess.run(cmd, cwd=REPO, env=_env(devices), capture_output=True, text=True,
                        timeout=900)


def _final_state(workdir: str) -> tuple[int, dict[str, np.ndarray]]:
  """(step, {path: array}) of the latest checkpoint, whatever device count wrote it."""
  step, state = gan_final_state(workdir)
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  return step, {jax.tree_util.keystr(p): np.asarray(v) for p, v in leaves}


def _assert_close(a: dict, b: dict) -> float:
  """Every entry of `b` within rtol = atol = 1e-5 of `a`; returns the largest difference."""
  assert a.keys() == b.keys()
  worst = 0.0
  for k in a:
    if a[k].dtype.kind == 'f':
      np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)
      worst = max(worst, float(np.max(np.abs(b[k] - a[k]), initial=0.0)))
    else:
      np.testing.assert_array_equal(b[k], a[k], err_msg=k)
  return worst


@pytest.mark.slow
def test_eight_devices_match_one(tmp_path):
  runs = {}
  for devices in (1, 8):
    wd = str(tmp_path / f'd{devices}')
    proc = _launch(devices, wd, OVERRIDES)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(wd, 'config.json')) as f:
      assert json.load(f)['devices']['count'] == devices
    with open(os.path.join(wd, 'summary.json')) as f:
      summary = json.load(f)
    print(f'{devices} device(s): {summary.get("train_images_per_sec", float("nan")):.1f} train '
          f'images/s (after compilation), train_seconds {summary["train_seconds"]:.1f}')
    runs[devices] = _final_state(wd), read_metrics(wd)
  ((step1, one), rows1), ((step8, eight), rows8) = runs[1], runs[8]
  assert step1 == step8 == 20
  assert any("'stage1'" in k and "'params'" in k for k in one)  # the backbone trained
  losses = [r['loss'] for r in rows1 if 'loss' in r]
  assert len(losses) == 4 and losses[-1] < losses[0], losses
  worst = _assert_close(one, eight)
  print(f'max |8 devices - 1 device| over the final train state: {worst:.3g}')
  for r1, r8 in zip(rows1, rows8, strict=True):
    assert r1.keys() == r8.keys()
    for k in r1:
      if isinstance(r1[k], float):
        assert r8[k] == pytest.approx(r1[k], rel=1e-5, abs=1e-5), (k, r1, r8)
      else:
        assert r8[k] == r1[k], (k, r1, r8)


@pytest.mark.slow
def test_batchnorm_statistics_span_the_global_batch(tmp_path):
  # Batch 8 on 8 devices: one image each, so per-device statistics could not pass.
  out = tmp_path / 'step.npz'
  proc = subprocess.run([sys.executable, '-c', BN_SCRIPT, '1', '8', str(out)], cwd=REPO,
                        env=_env(8), capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  with np.load(out) as f:
    arrays = {k: f[k] for k in f.files}
  one = {k[3:]: v for k, v in arrays.items() if k.startswith('one')}
  eight = {k[5:]: v for k, v in arrays.items() if k.startswith('eight')}
  assert any("['batch_stats']['stage4']" in k for k in one) and len(one) == len(eight)
  grad = [k for k in one if k.startswith("['grad']")]
  assert grad and any(np.any(one[k] != 0) for k in grad)
  state = _assert_close({k: one[k] for k in one if k not in grad},
                        {k: eight[k] for k in one if k not in grad})
  # Gradients sum over the batch in another order on each layout; BatchNorm's backward pass
  # (differences of similar terms) leaves them up to ~5e-5 of each tensor's scale apart.
  worst = 0.0
  for k in grad:
    scale = float(np.max(np.abs(one[k])))
    diff = float(np.max(np.abs(eight[k] - one[k])))
    assert diff <= 2e-4 * scale + 1e-7, (k, diff, scale)
    worst = max(worst, diff / scale if scale else 0.0)
  print(f'max |8 devices - 1 device| after a BatchNorm-training step: {state:.3g} (state); '
        f'gradients: {worst:.3g} of their scale')


def test_batch_not_divisible_by_devices(tmp_path):
  proc = _launch(8, str(tmp_path / 'run'), ['model.weights=', 'data.train_per_class=8',
                                             'data.batch_size=12'])
  assert proc.returncode == 2, proc.stderr[-3000:]
  assert proc.stderr.strip() == ('error: global batch 12 is not divisible by the 8 devices; use '
                                 'a multiple of 8')
  assert not os.path.exists(tmp_path / 'run')  # refused before anything was written


# Two processes of one CPU device each (JAX's distributed runtime on localhost): the run of
# test_eight_devices_match_one; every process dumps the final variables it holds.
TWO_PROCESS_SCRIPT = r'''
import sys
import jax
import numpy as np
from common import distributed
distributed.initialize()
from common.config import load_config
from transfer import loop
config = load_config(sys.argv[1], sys.argv[4:])
summary, variables = loop.run(config, sys.argv[2])
leaves = jax.tree_util.tree_flatten_with_path(variables)[0]
np.savez(sys.argv[3], **{jax.tree_util.keystr(p): distributed.to_host(v) for p, v in leaves})
print('process', jax.process_index(), 'of', jax.process_count(), 'devices', jax.device_count())
'''


@pytest.mark.slow
def test_two_processes_fine_tune_one_model(tmp_path):
  wd = str(tmp_path / 'two')
  procs = spawn_processes([['-c', TWO_PROCESS_SCRIPT, SPEC, wd, str(tmp_path / f'p{pid}.npz'),
                            *OVERRIDES] for pid in range(2)])
  outs = [p.communicate(timeout=900) for p in procs]
  for p, (_, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert 'process 0 of 2 devices 2' in outs[0][0] and 'process 1 of 2 devices 2' in outs[1][0]
  with np.load(tmp_path / 'p0.npz') as a, np.load(tmp_path / 'p1.npz') as b:
    assert a.files == b.files and any("['params']['stage1']" in k for k in a.files)
    for k in a.files:
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # One cooperative checkpoint, metrics written once (by process 0), and the same training as
  # one process on one device.
  one_wd = str(tmp_path / 'one')
  proc = _launch(1, one_wd, OVERRIDES)
  assert proc.returncode == 0, proc.stderr[-3000:]
  (step2, two), (step1, one) = _final_state(wd), _final_state(one_wd)
  assert step2 == step1 == 20
  worst = _assert_close(one, two)
  print(f'max |2 processes - 1 device| over the final train state: {worst:.3g}')
  rows2, rows1 = read_metrics(wd), read_metrics(one_wd)
  assert [r['step'] for r in rows2] == [r['step'] for r in rows1]
