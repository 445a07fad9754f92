"""The loop skeleton both trainers share: what a run does around its jitted steps.

A trainer keeps its own `while` loop over chunks of steps (that is where the GAN's rounds and
transfer's phases differ) and hands everything else to a `Run`: preparing the workdir (and the
cross-process barrier), restoring the latest checkpoint or returning the finished summary,
deciding when a step is due for logging, evaluation or a checkpoint (`is_due`,
`steps_to_boundary`: they depend on the step alone, so a resumed run replays the chunks of an
uninterrupted one), metrics and progress, throughput timing without compilation, the finite-loss
check, the summary, and stopping cleanly on SIGTERM/SIGINT (`checkpoint`, `common.preemption`).
"""
from __future__ import annotations

import contextlib
import json
import os
import time
from typing import Any, Callable, Iterator, Mapping

import ml_collections
import numpy as np

from common import distributed, preemption
from common.checkpoint import Checkpointer
from common.errors import UserError
from common.progress import Progress
from common.workdir import prepare_workdir, unlock_workdir
from common.writers import MetricWriter


class TrainingDiverged(UserError):
  """A loss became NaN or inf; the last good checkpoint is kept."""


def check_cadence(train: ml_collections.ConfigDict) -> None:
  """The `train` cadence keys both trainers share: log_every >= 1; eval_every and
  checkpoint_every >= 0 (0: at the end only); keep_checkpoints >= 1."""
  if not train.log_every >= 1:
    raise UserError(f'train.log_every must be at least 1, got {train.log_every}')
  for key in ('eval_every', 'checkpoint_every'):
    if not train[key] >= 0:
      raise UserError(f'train.{key} must be >= 0 (0: at the end only), got {train[key]}')
  if not train.keep_checkpoints >= 1:
    raise UserError(f'train.keep_checkpoints must be at least 1, got {train.keep_checkpoints}')


def is_due(step: int, every: int, end: int | None = None) -> bool:
  """Whether `step` is a multiple of `every` (0: never) or the end of the span."""
  return (every > 0 and step % every == 0) or step == end


def steps_to_boundary(step: int, end: int, *everys: int) -> int:
  """Steps from `step` to the next multiple of any positive `every`, or to `end`."""
  return min([end - step] + [(step // e + 1) * e - step for e in everys if e > 0])


def prepare(workdir: str, config: ml_collections.ConfigDict) -> None:
  """Create `workdir` with config.json (or check it matches `config`) on the main process, then
  wait for every process."""
  if distributed.is_main():
    prepare_workdir(workdir, config)
  distributed.barrier('workdir')


def read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


class Throughput:
  """Steps per second over calls whose shape ran before: the first call of each shape compiles."""

  def __init__(self):
    self.steps, self.seconds = 0, 0.0
    self._seen: set = set()

  @contextlib.contextmanager
  def call(self, steps: int, shape: Any = None) -> Iterator[None]:
    """Times the block; it must end with its results on the host (so the work is done)."""
    t0 = time.perf_counter()
    yield
    if shape in self._seen:
      self.steps += steps
      self.seconds += time.perf_counter() - t0
    self._seen.add(shape)

  def rate(self) -> float | None:
    return self.steps / self.seconds if self.steps and self.seconds > 0 else None


class Run:
  """One run's bookkeeping around a trainer's loop over `total` steps.

    run = Run(workdir, config, total, keep=3, desc='gan', unit='round')
    state, meta, finished = run.restore(state)   # finished: the summary of a completed run
    run.start()
    while run.step < total:
      ... run.advance(k, metrics); run.is_due(every) ...
      run.checkpoint(state, lambda: meta, due=run.is_due(checkpoint_every))
    run.finish(summary)

  The workdir is locked (`common.workdir.lock_workdir`) from construction to `close`.
  """

  def __init__(self, workdir: str, config: ml_collections.ConfigDict, total: int, *,
               keep: int = 3, checkpoint: bool = True, desc: str = '', unit: str = 'step'):
    prepare(workdir, config)
    self.workdir, self.total, self.desc, self.unit = workdir, total, desc, unit
    self.ckpt = Checkpointer(workdir, keep=keep) if checkpoint else None
    self.step = 0
    self.throughput = Throughput()
    self.writer: MetricWriter | None = None
    self.progress: Progress | None = None
    self._deferring = False  # a stop signal waits for the next chunk boundary
    self._closed = False

  def restore(self, state: Any) -> tuple[Any, dict, dict | None]:
    """(state, checkpoint meta, None), restored from the latest checkpoint if there is one; or,
    when the run had finished, (state, meta, its summary) and the run is closed."""
    meta = {}
    if self.ckpt is not None and self.ckpt.latest_step() is not None:
      state, meta, self.step = self.ckpt.restore(state)
    done = read_summary(self.workdir)
    if (done is not None and done.get('step') == self.total
        and (self.ckpt is None or self.step >= self.total)):
      self.close()
      return state, meta, done
    return state, meta, None

  def start(self) -> None:
    """Open the metric writer (dropping rows an interrupted attempt wrote after the restored
    step) and the progress display."""
    main = distributed.is_main()
    self.writer = MetricWriter(self.workdir, start_step=self.step, enabled=main)
    self.progress = Progress(self.total, initial=self.step, desc=self.desc, unit=self.unit,
                             enabled=main)
    if self.step < self.total:
      preemption.defer()
      self._deferring = True

  def is_due(self, every: int, end: int | None = None) -> bool:
    return is_due(self.step, every, self.total if end is None else end)

  def check_losses(self, values: Mapping[str, Any], span: str, advice: str,
                   max_abs: float = 0.0) -> None:
    """Stops the run (`diverged`) when a value is NaN or inf, or beyond `max_abs` in magnitude
    (0: no limit); `span` says where ('between rounds 0 and 50'), `advice` what to change."""
    arrays = [np.asarray(v, np.float64) for v in values.values()]
    if not all(np.all(np.isfinite(a)) for a in arrays):
      self.diverged(f'a loss became NaN/inf {span}', advice)
    peak = max((float(np.max(np.abs(a))) for a in arrays if a.size), default=0.0)
    if max_abs and peak > max_abs:
      self.diverged(f'a loss reached {peak:.3g} {span}, beyond guard.max_abs_loss={max_abs:g}',
                    advice)

  def diverged(self, reason: str, advice: str) -> None:
    """Marks summary.json as diverged and stops with a one-line TrainingDiverged; checkpoints
    stay as they are, so the last good one is kept."""
    last = self.ckpt.latest_step() if self.ckpt is not None else None
    kept = f'step {last}' if last is not None else 'none'
    if self.writer is not None:
      self.writer.write_summary({'step': self.step, 'diverged': True, 'diverged_reason': reason})
    self.close()
    raise TrainingDiverged(f'{reason}; the last good checkpoint ({kept}) is kept; {advice}')

  def advance(self, steps: int, metrics: Mapping[str, object] | None = None) -> int:
    self.step += steps
    self.progress.update(steps, metrics)
    return self.step

  def write(self, metrics: Mapping[str, object]) -> None:
    self.writer.write(self.step, metrics)

  def save(self, state: Any, meta: dict | None = None) -> None:
    if self.ckpt is not None:
      self.ckpt.save(self.step, state, meta)

  def checkpoint(self, state: Any, meta: Callable[[], dict], due: bool) -> None:
    """The end of a chunk: save (with `meta()`) when `due`, or when SIGTERM/SIGINT asked the run
    to stop, and then end the run with `Preempted`. Every process of a multi-process run must
    call it at the same steps: they agree on the stop with one small collective."""
    stop = distributed.any_process(preemption.requested())
    if due or stop:
      self.save(state, meta())
    if self.step >= self.total:
      self._end_deferral()  # a signal from here on stops at once (the rerun resumes from here)
    if stop:
      self._preempted()

  def _end_deferral(self) -> None:
    if self._deferring:
      preemption.undefer()
      self._deferring = False

  def _preempted(self) -> None:
    """Close the run and raise Preempted, saying where a rerun resumes."""
    self.progress.close()
    self.close()
    sig = preemption.signal_name()
    if self.ckpt is None:
      raise preemption.Preempted(
          f'preempted at step {self.step} ({sig}); this run keeps no checkpoints '
          '(train.checkpoint=False), so rerunning the same command starts it over')
    raise preemption.Preempted(f'preempted at step {self.step} ({sig}): checkpoint saved; rerun '
                               f'the same command to resume from step {self.step}')

  def finish(self, summary: dict) -> dict:
    """Writes summary.json (on the main process) and closes the run; returns the summary."""
    self.progress.close()
    self.writer.write_summary(summary)
    self.close()
    return summary

  def close(self) -> None:
    if self._closed:
      return
    self._closed = True
    self._end_deferral()
    if self.writer is not None:
      self.writer.close()
    if self.ckpt is not None:
      self.ckpt.close()
    if distributed.is_main():
      unlock_workdir(self.workdir)
