"""orbax checkpoints holding everything needed to continue bit-for-bit.

Each step directory has two items: `state` (the train-state pytree: params,
optimiser states, EMA, rng, step) and `meta` (JSON: data iterator state and
anything else small the loop needs).
"""
from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Keep-last-N orbax CheckpointManager under `workdir/checkpoints`."""

  def __init__(self, workdir: str, keep: int = 3):
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._mgr = ocp.CheckpointManager(self.directory, options=options, item_names=('state', 'meta'))

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def save(self, step: int, state: Any, meta: dict | None = None) -> None:
    self._mgr.save(int(step), args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})))
    self._mgr.wait_until_finished()

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
    """Restore `step` (default latest) into the structure/shardings of `abstract_state`."""
    step = self._mgr.latest_step() if step is None else step
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    out = self._mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return out['state'], dict(out['meta'] or {}), step

  def close(self) -> None:
    self._mgr.close()
