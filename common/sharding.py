"""One code path for 1 device and many: a `data` mesh axis, sharded batches, replicated state.

With a single device every helper here is a no-op in effect, so the same
training code runs on a laptop CPU, one GPU, or a pod slice.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from common.errors import UserError


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
  return jax.device_put(tree, replicated(mesh))


def global_batch(local: np.ndarray, mesh: Mesh, batch_axis: int = 0) -> jax.Array:
  """This process's slice of a batch -> the global array sharded along `data`."""
  return jax.make_array_from_process_local_data(batch_sharding(mesh, batch_axis), local)


def constrain_batch(x: jax.Array, mesh: Mesh | None, batch_axis: int = 0) -> jax.Array:
  """Inside jit: lay an on-device-generated batch out along `data` (data parallelism)."""
  if mesh is None or mesh.devices.size == 1:
    return x
  return jax.lax.with_sharding_constraint(x, batch_sharding(mesh, batch_axis))
