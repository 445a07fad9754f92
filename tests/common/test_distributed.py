"""The thread-pool widening applied before XLA:CPU simulates several devices, and the watch that
stops a process whose peer is lost."""
import os
import subprocess
import sys

import pytest

from common import distributed
from common.config import REPO_ROOT


@pytest.mark.parametrize('xla_flags, jax_env, expected', [
    ('', '', 1),
    ('--xla_force_host_platform_device_count=8', '', 8),
    ('--foo=1 --xla_force_host_platform_device_count=2 --xla_force_host_platform_device_count=4', '', 4),
    ('', '6', 6),
])
def test_simulated_cpu_devices_reads_xla_flags_and_jax_env(monkeypatch, xla_flags, jax_env, expected):
  monkeypatch.setenv('XLA_FLAGS', xla_flags)
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', jax_env)
  assert distributed.simulated_cpu_devices() == expected


def test_widen_sets_nproc_only_for_simulated_devices_and_keeps_the_users(monkeypatch):
  monkeypatch.setenv('JAX_NUM_CPU_DEVICES', '')
  monkeypatch.delenv('NPROC', raising=False)
  monkeypatch.setenv('XLA_FLAGS', '')
  distributed.widen_cpu_thread_pool()
  assert 'NPROC' not in os.environ
  monkeypatch.setenv('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
  monkeypatch.setattr(os, 'cpu_count', lambda: 2)
  distributed.widen_cpu_thread_pool()
  assert os.environ['NPROC'] == '32'
  monkeypatch.setenv('NPROC', '5')
  distributed.widen_cpu_thread_pool()
  assert os.environ['NPROC'] == '5'


_LOST_PEER_SCRIPT = r'''
import threading, time
import jax
from common import cli, distributed, workdir

jax.distributed.is_initialized = lambda: True  # a multi-process run, as far as these two know
slow = workdir.resume_note
def resume_note(**kw):  # the watch takes its time over its one line
  time.sleep(1.0)
  return slow(**kw)
workdir.resume_note = resume_note
threading.Thread(target=distributed._stop_for_lost, args=('process 1', 5)).start()
try:
  raise RuntimeError('a collective broken by the lost process')
except RuntimeError:
  cli._unexpected()
  raise
'''


def test_a_broken_collective_waits_for_the_watch_and_shows_no_traceback():
  """The main thread's error from a collective broken by a lost peer must not be printed while
  the watch is reporting that peer: the one line is all the process writes."""
  out = subprocess.run([sys.executable, '-c', _LOST_PEER_SCRIPT], cwd=REPO_ROOT,
                       capture_output=True, text=True, timeout=120,
                       env={**os.environ, 'ADVCNN_PEER_TIMEOUT': '5'})
  assert out.returncode == 75, out.stderr
  assert out.stderr.splitlines() == [
      'error: process 1 of this 1-process run died or stopped answering (no heartbeat for 5s, '
      'ADVCNN_PEER_TIMEOUT); process 0 stops too; rerun all processes to resume: finished work '
      'is kept'], out.stderr
