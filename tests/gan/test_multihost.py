"""Two processes on localhost (CPU, JAX's distributed runtime): one run, identical parameters
on both, disjoint data shards, one cooperative checkpoint, metrics written once; processes
started with different JAX_NUM_PROCESSES stop with exit code 2 instead of hanging; a process
that dies or stops answering mid-run stops the other within ADVCNN_PEER_TIMEOUT, with one line
naming it, and the rerun of both resumes."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import pytest

from common import distributed
from common.errors import UserError
from tests.gan.test_train import REPO

SCRIPT = r'''
import sys
import numpy as np
from common import distributed
distributed.initialize()
import jax
from common.config import load_config
from gan import train
from gan.data import build_data
cfg = load_config('gan/configs/dcgan_digits.py:quick', ['train.steps=20'])
summary, state = train.train_and_evaluate(cfg, sys.argv[1], return_state=True)
flat = {'/'.join(str(getattr(k, 'key', k)) for k in path): distributed.to_host(v)
        for path, v in jax.tree_util.tree_flatten_with_path(state['g']['params'])[0]}
idx = build_data(cfg).iterator.take(3)['index']
np.savez(sys.argv[2], index=idx, **flat)
print('process', jax.process_index(), 'of', jax.process_count(), 'devices', jax.device_count())
'''


def _free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def spawn_processes(argvs, counts=None, **extra_env):
  """`python ARGV` as processes 0, 1, ... of one JAX distributed run on localhost (CPU, one
  device each); process i is told JAX_NUM_PROCESSES=counts[i] (default: as many as started)."""
  port = _free_port()
  counts = counts or [len(argvs)] * len(argvs)
  procs = []
  for pid, (argv, n) in enumerate(zip(argvs, counts, strict=True)):
    env = {**os.environ, 'JAX_COORDINATOR_ADDRESS': f'127.0.0.1:{port}', 'JAX_NUM_PROCESSES': str(n),
           'JAX_PROCESS_ID': str(pid), 'JAX_PLATFORMS': 'cpu', **extra_env}
    env.pop('XLA_FLAGS', None)
    procs.append(subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
  return procs


@pytest.mark.slow
def test_two_processes_train_one_model(tmp_path):
  wd = str(tmp_path / 'run')
  procs = spawn_processes([['-c', SCRIPT, wd, str(tmp_path / f'p{pid}.npz')] for pid in range(2)])
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


def _launch_two(tmp_path, counts, timeout_s):
  """launch.gan as processes 0 and 1 told JAX_NUM_PROCESSES=counts[0] and counts[1]."""
  argv = ['-m', 'launch.gan', '--config=gan/configs/toy2d.py:ring8,quick', f'--workdir={tmp_path}/run']
  procs = spawn_processes([argv, argv], counts, ADVCNN_INIT_TIMEOUT=str(timeout_s))
  return [(p, *p.communicate(timeout=120)) for p in procs]


@pytest.mark.slow
def test_process_told_more_processes_than_process_0_exits_2(tmp_path):
  # JAX itself lets process 1 (told 3) join process 0's run of 2 and reports 2 processes to both.
  t0 = time.monotonic()
  results = _launch_two(tmp_path, (2, 3), timeout_s=60)
  assert time.monotonic() - t0 < 60  # found by comparing counts, not by waiting for a timeout
  for p, _, err in results:
    assert p.returncode == 2, err[-3000:]
    assert err.strip() == ('error: processes disagree on JAX_NUM_PROCESSES (process 0: 2, '
                           'process 1: 3; 2 joined the run); start every process with the same '
                           'JAX_NUM_PROCESSES, equal to the number of processes launched')
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.slow
def test_process_0_told_more_processes_than_started_exits_2_after_timeout(tmp_path):
  # JAX itself waits for the missing process for 5 minutes, then aborts with a stack trace.
  t0 = time.monotonic()
  results = _launch_two(tmp_path, (3, 2), timeout_s=5)
  assert time.monotonic() - t0 < 60
  for pid, (p, _, err) in enumerate(results):
    assert p.returncode == 2, err[-3000:]
    lines = err.strip().splitlines()
    assert len(lines) == 1, err[-3000:]
    assert lines[0].startswith(f'error: process {pid} waited 5s for the other processes at 127.0.0.1:')
    assert f'(it was told JAX_NUM_PROCESSES={3 - pid}); start every process with the same ' \
           'JAX_NUM_PROCESSES' in lines[0]
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('value', ['0', 'soon', '-5'])
def test_bad_init_timeout_is_refused(monkeypatch, value):
  monkeypatch.setenv('JAX_COORDINATOR_ADDRESS', '127.0.0.1:1')
  monkeypatch.setenv('JAX_NUM_PROCESSES', '2')
  monkeypatch.setenv('JAX_PROCESS_ID', '0')
  monkeypatch.setenv('ADVCNN_INIT_TIMEOUT', value)
  with pytest.raises(UserError, match=f'ADVCNN_INIT_TIMEOUT={value} is not a positive whole'):
    distributed.initialize()



@pytest.mark.parametrize('value', ['0', 'soon', '1e9'])
def test_bad_peer_timeout_is_refused(monkeypatch, value):
  monkeypatch.setenv('ADVCNN_PEER_TIMEOUT', value)
  with pytest.raises(UserError, match=f'ADVCNN_PEER_TIMEOUT={value} is not a positive whole'):
    distributed.peer_timeout()

# A toy run long enough to be stopped after its checkpoint at round 100.
PEER_RUN = ['--config=gan/configs/toy2d.py:ring8', '--config.train.steps=300',
            '--config.train.rounds_per_call=50', '--config.model.hidden=16',
            '--config.data.batch_size=64', '--config.train.log_every=50',
            '--config.train.eval_every=300', '--config.train.checkpoint_every=100',
            '--config.eval.plots=False', '--config.eval.num_samples=500']


@pytest.mark.slow
@pytest.mark.parametrize('victim,sig', [(1, signal.SIGKILL), (0, signal.SIGSTOP)],
                         ids=['process-1-killed', 'process-0-frozen'])
def test_a_lost_process_stops_the_other_with_one_line_and_the_rerun_resumes(tmp_path, victim,
                                                                            sig):
  """Process 1 killed, or process 0 (which hosts the runtime) frozen: the other stops within the
  5 s ADVCNN_PEER_TIMEOUT with exit code 75 and one line naming it; the checkpoint stays, and
  both processes run again resume from it."""
  wd = str(tmp_path / 'run')
  argv = ['-m', 'launch.gan', f'--workdir={wd}', *PEER_RUN]
  procs = spawn_processes([argv, argv], ADVCNN_PEER_TIMEOUT='5')
  try:
    deadline = time.monotonic() + 300
    while not os.path.exists(os.path.join(wd, 'checkpoints', '100')):
      assert all(p.poll() is None for p in procs) and time.monotonic() < deadline
      time.sleep(0.1)
    procs[victim].send_signal(sig)
    t0 = time.monotonic()
    survivor = procs[1 - victim]
    _, err = survivor.communicate(timeout=120)
    assert time.monotonic() - t0 < 30
  finally:
    procs[victim].kill()
    procs[victim].communicate()
  assert survivor.returncode == 75, err[-3000:]
  lines = [l for l in err.splitlines() if not l.startswith('gan: ')]  # progress lines
  assert lines == [f'error: process {victim} of this 2-process run died or stopped answering '
                   '(no heartbeat for 5s, ADVCNN_PEER_TIMEOUT); process '
                   f'{1 - victim} stops too; rerun all processes to resume from the '
                   f'checkpoint at step {max_step(wd)}'], err[-3000:]
  before = [r for r in map(json.loads, open(os.path.join(wd, 'metrics.jsonl')))
            if r['step'] <= max_step(wd)]
  procs = spawn_processes([argv, argv], ADVCNN_PEER_TIMEOUT='5')
  for p in procs:
    _, err = p.communicate(timeout=600)
    assert p.returncode == 0, err[-3000:]
  rows = list(map(json.loads, open(os.path.join(wd, 'metrics.jsonl'))))
  assert rows[:len(before)] == before
  assert [r['step'] for r in rows if 'loss_d' in r] == [50, 100, 150, 200, 250, 300]
  assert json.load(open(os.path.join(wd, 'summary.json')))['step'] == 300


def max_step(workdir):
  return max(int(d) for d in os.listdir(os.path.join(workdir, 'checkpoints')) if d.isdigit())
