"""orbax checkpoints holding everything needed to continue bit-for-bit.

Each step directory has two items: `state` (the train-state pytree: params,
optimiser states, EMA, rng, step) and `meta` (JSON: data iterator state and
anything else small the loop needs). orbax writes a step under a temporary name
(`STEP.orbax-checkpoint-tmp*`) and renames it once complete: a save that fails (a full
disk) removes its temporary directory, and any left by a killed run are removed when the
next run opens the directory, before it saves anything.
"""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import sys
import threading
from typing import Any, Iterator

import jax
import orbax.checkpoint as ocp

from common.diskspace import is_disk_full, writing


class Checkpointer:
  """Keep-last-N orbax CheckpointManager under `workdir/checkpoints`."""

  def __init__(self, workdir: str, keep: int = 3):
    self.workdir = workdir
    self.directory = os.path.abspath(os.path.join(workdir, 'checkpoints'))
    options = ocp.CheckpointManagerOptions(max_to_keep=keep, create=True,
                                           enable_async_checkpointing=False)
    self._remove_unfinished()
    with writing('the checkpoint directory', self.directory, workdir):
      self._mgr = ocp.CheckpointManager(self.directory, options=options,
                                        item_names=('state', 'meta'))

  def _remove_unfinished(self, step: int | None = None) -> None:
    """Remove the temporary directories of saves that never completed (of `step`, or all); on
    process 0, which alone deletes in a multi-process run."""
    if jax.process_index() == 0:
      pattern = f'{"*" if step is None else int(step)}.orbax-checkpoint-tmp*'
      for tmp in glob.glob(os.path.join(self.directory, pattern)):
        shutil.rmtree(tmp, ignore_errors=True)

  def latest_step(self) -> int | None:
    return self._mgr.latest_step()

  def save(self, step: int, state: Any, meta: dict | None = None) -> None:
    """Save `step`; a full disk raises common.diskspace.DiskFull, the checkpoints saved before
    kept and the half-written one removed."""
    with writing(f'the checkpoint at step {step}', self.directory, self.workdir), \
        _errors_held_back(), _aftermath_silenced():
      try:
        self._mgr.save(int(step), args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta or {})))
        self._mgr.wait_until_finished()
      except Exception:
        self._remove_unfinished(step)
        raise

  def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict, int]:
    """Restore `step` (default latest) into the structure/shardings of `abstract_state`."""
    step = self._mgr.latest_step() if step is None else step
    target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
    out = self._mgr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()))
    return out['state'], dict(out['meta'] or {}), step

  def close(self) -> None:
    self._mgr.close()


class _HoldBack(logging.Filter):
  def __init__(self):
    super().__init__()
    self.records: list[logging.LogRecord] = []

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR:
      self.records.append(record)
      return False
    return True


@contextlib.contextmanager
def _errors_held_back() -> Iterator[None]:
  """orbax logs each failing writer thread's traceback before the save raises; hold those
  records back, and log them only if the save succeeds after all (a failed save is reported
  once, by the exception)."""
  logger = logging.getLogger('absl')
  hold = _HoldBack()
  logger.addFilter(hold)
  failed = False
  try:
    yield
  except BaseException:
    failed = True
    raise
  finally:
    logger.removeFilter(hold)
    if not failed:
      for record in hold.records:
        logger.handle(record)


def _is_aftermath(e: BaseException | None) -> bool:
  return is_disk_full(e) or (isinstance(e, RuntimeError) and 'Event loop is closed' in str(e))


@contextlib.contextmanager
def _aftermath_silenced() -> Iterator[None]:
  """When a save fails on a full disk, orbax's writes still in flight fail one by one for a
  while: their callbacks find the save's event loop closed, and each failure reaches
  sys.unraisablehook (callbacks run from the storage library's threads), sys.excepthook or
  threading.excepthook. The run is ending with one line that says so: from the start of the
  save (the first ones come before it raises), such reports are dropped; after a save that
  succeeded, the usual hooks come back."""
  hooks = sys.excepthook, threading.excepthook, sys.unraisablehook
  excepthook, thread_hook, unraisable_hook = hooks

  def quiet(exc_type, exc, tb):
    if not _is_aftermath(exc):
      excepthook(exc_type, exc, tb)

  def quiet_thread(args):
    if not _is_aftermath(args.exc_value):
      thread_hook(args)

  def quiet_unraisable(args):
    if not _is_aftermath(args.exc_value):
      unraisable_hook(args)

  sys.excepthook, threading.excepthook, sys.unraisablehook = quiet, quiet_thread, quiet_unraisable
  try:
    yield
  except BaseException as e:
    if is_disk_full(e):  # the failed writes keep coming: stay quiet for the rest of the run
      logging.getLogger('asyncio').addFilter(
          lambda r: not (r.exc_info and _is_aftermath(r.exc_info[1])))
      raise
    sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
    raise
  sys.excepthook, threading.excepthook, sys.unraisablehook = hooks
