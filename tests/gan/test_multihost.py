"""Two processes on localhost (CPU, JAX's distributed runtime): one run, identical parameters
on both, disjoint data shards, one cooperative checkpoint, metrics written once."""
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from tests.gan.test_train import REPO

SCRIPT = r'''
import sys
import numpy as np
from common import distributed
distributed.initialize()
import jax
from common.config import load_config
from gan import train
cfg = load_config('gan/configs/dcgan_digits.py:quick', ['train.steps=20'])
summary, state = train.train_and_evaluate(cfg, sys.argv[1], return_state=True)
flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): distributed.to_host(v)
        for path, v in jax.tree_util.tree_flatten_with_path(state['g']['params'])[0]}
idx = train.build_data(cfg).iterator.take(3)['index']
np.savez(sys.argv[2], index=idx, **flat)
print('process', jax.process_index(), 'of', jax.process_count(), 'devices', jax.device_count())
'''


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path):
  port = _free_port()
  wd = str(tmp_path / 'run')
  procs = []
  for pid in range(2):
    env = {**os.environ, 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': '2',
           'JAX_PROCESS_ID': str(pid), 'JAX_PLATFORMS': 'cpu'}
    env.pop('XLA_FLAGS', None)
    procs.append(subprocess.Popen([sys.executable, '-c', SCRIPT, wd, str(tmp_path / f'p{pid}.npz')],
                                  cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True))
  outs = [p.communicate(timeout=600) for p in procs]
  for p, (out, err) in zip(procs, outs):
    assert p.returncode == 0, err[-3000:]
  assert 'process 0 of 2 devices 2' in outs[0][0] and 'process 1 of 2 devices 2' in outs[1][0]
  a, b = np.load(tmp_path / 'p0.npz'), np.load(tmp_path / 'p1.npz')
  for k in a.files:
    if k != 'index':
      np.testing.assert_array_equal(a[k], b[k], err_msg=k)
  # Each process read its own half of every global batch of 64.
  assert a['index'].shape == b['index'].shape == (3, 32)
  for step in range(3):
    assert not set(a['index'][step]) & set(b['index'][step])
  assert sorted(os.listdir(os.path.join(wd, 'checkpoints'))) == ['20']
  rows = [json.loads(l) for l in open(os.path.join(wd, 'metrics.jsonl'))]
  assert [r['step'] for r in rows if 'loss_d' in r] == [20]  # written once, by process 0
