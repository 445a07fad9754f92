"""Model selection on the validation split: the best weights so far, and early stopping.

With `data.val_fraction` > 0 a run evaluates the validation split (never the test split) during
training; `Selection` keeps the step whose `train.select` metric was best and counts evaluations
since it last improved by more than `train.min_delta`. After `train.patience` of them (0: never)
the current phase stops; the next phase, and the final test evaluation, start from the best
weights (Keras' ModelCheckpoint(save_best_only) + EarlyStopping(restore_best_weights)).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from common.errors import UserError, unknown_name

# Metric -> whether larger is better.
METRICS = {'val_top1': True, 'val_loss': False}


def check(train: Any) -> None:
  """Validates train.select, train.patience and train.min_delta."""
  if train.select not in METRICS:
    raise unknown_name('train.select metric', train.select, METRICS)
  if not train.patience >= 0:
    raise UserError(f'train.patience must be >= 0 (0: no early stopping), got {train.patience}')
  if not train.min_delta >= 0:
    raise UserError(f'train.min_delta must be >= 0, got {train.min_delta}')


@dataclasses.dataclass
class Selection:
  """The best validation value so far, its step, and evaluations without improvement."""
  metric: str
  patience: int = 0
  min_delta: float = 0.0
  best: float | None = None
  best_step: int = -1
  waited: int = 0  # evaluations since the last improvement, in this phase
  stopped: list = dataclasses.field(default_factory=list)  # phases stopped early

  def update(self, row: dict, step: int) -> bool:
    """Takes one evaluation's row ({'val_top1': ..., 'val_loss': ...}); True if it improved."""
    value = float(row[self.metric])
    sign = 1.0 if METRICS[self.metric] else -1.0
    if self.best is None or sign * (value - self.best) > self.min_delta:
      self.best, self.best_step, self.waited = value, step, 0
      return True
    self.waited += 1
    return False

  def should_stop(self) -> bool:
    return bool(self.patience) and self.waited >= self.patience

  def state(self) -> dict:
    """What a checkpoint keeps, so a resumed run selects as an uninterrupted one."""
    return {'best': self.best, 'best_step': self.best_step, 'waited': self.waited,
            'stopped': list(self.stopped)}

  def restore(self, state: dict | None) -> None:
    if state:
      self.best, self.best_step = state['best'], state['best_step']
      self.waited, self.stopped = state['waited'], list(state['stopped'])


def snapshot(state: dict) -> dict:
  """A copy of the weights (params, batch_stats) that survives the next donated step."""
  return jax.tree.map(jnp.copy, {'params': state['params'], 'batch_stats': state['batch_stats']})
