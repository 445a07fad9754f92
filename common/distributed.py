"""Multi-process (multi-host) runs through JAX's own distributed runtime.

A process joins a multi-process run when launched with JAX's standard
settings, `JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=N
JAX_PROCESS_ID=i`, or on a cluster JAX detects by itself (SLURM, Open MPI,
Cloud TPU) when `ADVCNN_DISTRIBUTED=auto`. Process 0 alone writes metrics,
images and tables; orbax writes checkpoints cooperatively.
"""
from __future__ import annotations

import os

import jax
import numpy as np

from common.errors import UserError

_ENV = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')


def initialize() -> None:
  """Call once, before any other JAX work; a no-op for single-process runs."""
  given = {k: os.environ.get(k) for k in _ENV if os.environ.get(k)}
  if os.environ.get('ADVCNN_DISTRIBUTED') == 'auto':
    jax.distributed.initialize()
    return
  if not given:
    return
  if len(given) != len(_ENV):
    missing = ', '.join(k for k in _ENV if k not in given)
    raise UserError(f'multi-process launch is missing {missing}; set all of {", ".join(_ENV)}')
  try:
    n, pid = int(given['JAX_NUM_PROCESSES']), int(given['JAX_PROCESS_ID'])
  except ValueError:
    raise UserError('JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers') from None
  if n < 1 or not 0 <= pid < n:
    raise UserError(f'JAX_PROCESS_ID={pid} is not in [0, JAX_NUM_PROCESSES={n})')
  if jax.config.jax_platforms in (None, '', 'cpu') or os.environ.get('JAX_PLATFORMS') == 'cpu':
    # CPU collectives across processes need gloo (GPU/TPU bring their own).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  jax.distributed.initialize(given['JAX_COORDINATOR_ADDRESS'], n, pid)


def is_main() -> bool:
  return jax.process_index() == 0


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def to_host(x: jax.Array) -> np.ndarray:
  """A replicated (or fully addressable) array as numpy on every process."""
  if getattr(x, 'is_fully_addressable', True):
    return np.asarray(x)
  return np.asarray(x.addressable_data(0))
