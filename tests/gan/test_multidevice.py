"""The same GAN run on 8 simulated CPU devices (batch sharded along `data`) matches 1 device."""
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.gan.test_train import REPO, _final_state, _flat

RUNS = {
    'toy': ('gan/configs/toy2d.py:ring8,quick', ['train.steps=20', 'train.rounds_per_call=10',
                                                 'log_every=10', 'eval_every=20', 'checkpoint_every=20',
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
  import json
  assert json.load(open(tmp_path / 'eight' / 'config.json'))['devices']['count'] == 8
  a, b = _flat(_final_state(str(tmp_path / 'one'))[1]), _flat(_final_state(str(tmp_path / 'eight'))[1])
  for k in a:
    if a[k].dtype.kind == 'f':
      np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)
    else:
      np.testing.assert_array_equal(b[k], a[k], err_msg=k)


def test_batch_not_divisible_by_devices(tmp_path):
  spec, overrides = RUNS['toy']
  env = {**os.environ, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8', 'JAX_PLATFORMS': 'cpu'}
  proc = subprocess.run([sys.executable, '-m', 'launch.gan', f'--config={spec}', f'--workdir={tmp_path}/w',
                         '--config.data.batch_size=60'], cwd=REPO, env=env, capture_output=True,
                        text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.strip() == 'error: global batch 60 is not divisible by the 8 devices; use a multiple of 8'
