"""The thread-pool widening applied before XLA:CPU simulates several devices."""
import os

import pytest

from common import distributed


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
