"""Progress of a long run: a tqdm bar on a terminal, plain lines anywhere else.

Piped, under nohup, SLURM or CI, stderr is not a terminal and a bar would print nothing useful;
there a line such as `gan: 1200/5000 rounds (24%), 41.2 rounds/s, ETA 1m32s | loss_d=0.61` goes
to stderr at most every `interval` seconds (and at the end).
"""
from __future__ import annotations

import math
import sys
import time
from typing import Mapping, TextIO

from tqdm.auto import tqdm

PLAIN_INTERVAL_S = 10.0


def _duration(seconds: float) -> str:
  if not math.isfinite(seconds):
    return '?'
  s = int(round(seconds))
  h, rem = divmod(s, 3600)
  m, s = divmod(rem, 60)
  return f'{h}h{m:02d}m' if h else f'{m}m{s:02d}s' if m else f'{s}s'


def _metrics_text(metrics: Mapping[str, object]) -> str:
  return ' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                  for k, v in metrics.items() if isinstance(v, (int, float, str)))


class Progress:
  """`update(n, metrics)` after each chunk; `close()` at the end. Silent when `enabled` is False
  (every process but the first of a multi-process run)."""

  def __init__(self, total: int, initial: int = 0, desc: str = '', unit: str = 'step',
               enabled: bool = True, stream: TextIO | None = None,
               interval: float = PLAIN_INTERVAL_S):
    self.total, self.step, self.desc, self.unit = total, initial, desc, unit
    self.stream = stream or sys.stderr
    self.enabled = enabled
    self.interval = interval
    self.metrics: dict[str, object] = {}
    self._bar = None
    self._t0 = time.monotonic()
    self._start = initial
    self._last_line = self._t0
    if enabled and self.stream.isatty():
      self._bar = tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
                       mininterval=1.0, smoothing=0.1, file=self.stream)

  def update(self, n: int, metrics: Mapping[str, object] | None = None) -> None:
    self.step += n
    if metrics:
      self.metrics = dict(metrics)
    if not self.enabled:
      return
    if self._bar is not None:
      self._bar.update(n)
      if metrics:
        self._bar.set_postfix_str(_metrics_text(metrics), refresh=False)
    elif time.monotonic() - self._last_line >= self.interval:
      self._line()

  def line_text(self) -> str:
    elapsed = time.monotonic() - self._t0
    done = self.step - self._start
    rate = done / elapsed if elapsed > 0 else float('nan')
    eta = (self.total - self.step) / rate if rate > 0 else float('nan')
    pct = 100 * self.step / self.total if self.total else 100.0
    text = (f'{self.desc}: {self.step}/{self.total} {self.unit}s ({pct:.0f}%), '
            f'{rate:.3g} {self.unit}s/s, ETA {_duration(eta)}')
    return text + (f' | {_metrics_text(self.metrics)}' if self.metrics else '')

  def _line(self) -> None:
    self._last_line = time.monotonic()
    self.stream.write(self.line_text() + '\n')
    self.stream.flush()

  def close(self) -> None:
    if self._bar is not None:
      self._bar.close()
    elif self.enabled and self.step > self._start:
      self._line()
