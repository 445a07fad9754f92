"""One code path for 1 device and many: a `data` mesh axis, sharded batches, and a train state
either replicated or fully sharded (FSDP) along the same axis.

With a single device every helper here is a no-op in effect, so the same
training code runs on a laptop CPU, one GPU, or a pod slice.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from common import distributed
from common.errors import UserError, unknown_name

# How a train state (parameters, optimiser states, EMA) is laid out over the `data` axis:
# replicated: a full copy on every device (data parallelism);
# fsdp: each large array split along one dimension (ZeRO-3 / fully sharded data parallelism),
#   gathered by XLA where a computation needs it whole; memory per device ~ 1 / devices.
PARAM_MODES = ('replicated', 'fsdp')


def data_mesh() -> Mesh:
  """All devices (of every process) along one `data` axis."""
  return Mesh(np.asarray(jax.devices()), ('data',))


def check_batch(global_batch: int, mesh: Mesh) -> None:
  n = mesh.devices.size
  if global_batch % n:
    raise UserError(f'global batch {global_batch} is not divisible by the {n} devices; '
                    f'use a multiple of {n}')


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def batch_sharding(mesh: Mesh, batch_axis: int = 0) -> NamedSharding:
  return NamedSharding(mesh, P(*([None] * batch_axis), 'data'))


def replicate(tree, mesh: Mesh):
  """A full copy of every leaf on every device of `mesh` (all processes pass the same values)."""
  out = replicated(mesh)
  if mesh.is_multi_process:
    # device_put refuses typed PRNG keys for devices of other processes; build each leaf from
    # this process's copy instead (keys through their raw data).
    def put(x):
      if jax.dtypes.issubdtype(getattr(x, 'dtype', None), jax.dtypes.prng_key):
        return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, out, lambda index: x[index])
    return jax.tree.map(put, tree)
  return jax.device_put(tree, out)


def check_param_mode(mode: str, min_size: int) -> None:
  if mode not in PARAM_MODES:
    raise unknown_name('sharding.params', mode, PARAM_MODES)
  if min_size < 0:
    raise UserError(f'sharding.min_size must be >= 0, got {min_size}')


def fsdp_spec(shape: tuple[int, ...], devices: int, min_size: int = 0) -> P:
  """P('data') on the largest dimension of `shape` divisible by `devices` (the first such if
  several are as large); P() (replicated) if none is, or if the array has fewer than
  `min_size` elements (gathering it would cost more than the memory saved)."""
  if devices == 1 or math.prod(shape) < min_size:
    return P()
  dims = [i for i, d in enumerate(shape) if d >= devices and d % devices == 0]
  if not dims:
    return P()
  axis = max(dims, key=lambda i: shape[i])  # max keeps the first of equal sizes
  return P(*([None] * axis), 'data')


def state_shardings(tree: Any, mesh: Mesh, mode: str = 'replicated', min_size: int = 0) -> Any:
  """A NamedSharding for every leaf of `tree` (arrays or shape structs) under `mode`."""
  check_param_mode(mode, min_size)
  if mode == 'replicated':
    return jax.tree.map(lambda _: replicated(mesh), tree)
  n = mesh.shape['data']
  return jax.tree.map(lambda x: NamedSharding(mesh, fsdp_spec(tuple(np.shape(x)), n, min_size)),
                      tree)


def shard_state(tree: Any, mesh: Mesh, mode: str = 'replicated', min_size: int = 0) -> Any:
  """Put a train state on the mesh: replicated, or each large array split along `data` (fsdp)."""
  return jax.device_put(tree, state_shardings(tree, mesh, mode, min_size))


def constrain_state(tree: Any, mesh: Mesh | None, mode: str = 'replicated',
                    min_size: int = 0) -> Any:
  """Inside jit: keep an fsdp state laid out as `shard_state` put it (e.g. a scan's carry), so
  XLA gathers parameters for the computation but stores them, and their updates, sharded."""
  if mesh is None or mode == 'replicated' or mesh.devices.size == 1:
    return tree
  return jax.lax.with_sharding_constraint(tree, state_shardings(tree, mesh, mode, min_size))


def global_batch(local: np.ndarray, mesh: Mesh, batch_axis: int = 0) -> jax.Array:
  """This process's slice of a batch -> the global array sharded along `data`."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh, batch_axis), local)


def constrain_batch(x: jax.Array, mesh: Mesh | None, batch_axis: int = 0) -> jax.Array:
  """Inside jit: lay an on-device-generated batch out along `data` (data parallelism)."""
  if mesh is None or mesh.devices.size == 1:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, batch_axis))


def pad_shard_unpad(fn: Callable[[Any], Any], batch: np.ndarray, batch_size: int = 0,
                    mesh: Mesh | None = None) -> Any:
  """fn's outputs for the rows of a host batch [B, ...], as numpy arrays [B, ...].

  The batch gets zero rows up to `batch_size` (when larger than B), so a jitted `fn` sees one
  shape for every batch, a short last one included. With a `mesh` it is also padded to a
  multiple of the devices and `fn` gets the global array sharded along `data`: every process
  passes the same batch and puts its own contiguous slice on its devices (the mesh lists
  devices process by process). Every output leaf is cut back to the B valid rows.
  """
  b = len(batch)
  size = max(batch_size, b)
  if mesh is not None:
    size = -(-size // mesh.devices.size) * mesh.devices.size
  if size > b:
    batch = np.concatenate([batch, np.zeros((size - b,) + batch.shape[1:], batch.dtype)])
  if mesh is not None:
    per, rank = size // jax.process_count(), jax.process_index()
    batch = global_batch(batch[rank * per:(rank + 1) * per], mesh)
  return jax.tree.map(lambda y: distributed.to_host(y)[:b], fn(batch))
