"""Stopping cleanly on SIGTERM and SIGINT: preemption, `scancel`, a pod eviction, Ctrl-C.

Cluster schedulers preempt with SIGTERM and a grace period before SIGKILL. Once `install()` has
run (every `launch.*` command, through `common.cli.main_guard`), either signal asks the run to
stop. A training loop (`common.loop.Run`) finishes the chunk it is in, saves a checkpoint at that
step (all processes of a multi-process run agree on the step) and ends with `Preempted`: the
line 'preempted at step N' and exit code `EXIT_PREEMPTED`. Outside a training loop (loading data,
compiling, a sweep waiting for its points) the first signal stops the process at once with the
same code. A second SIGINT (Ctrl-C pressed again) stops at once; further SIGTERMs change nothing,
since a scheduler follows its SIGTERM with SIGKILL when the grace period ends.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

# EX_TEMPFAIL (sysexits.h): a temporary failure; rerunning the same command continues the run.
# Requeue on it: SLURM `if [ $? -eq 75 ]; then scontrol requeue $SLURM_JOB_ID; fi`, Kubernetes
# `podFailurePolicy` with `onExitCodes: {operator: In, values: [75]}, action: Ignore`.
EXIT_PREEMPTED = 75
SIGNALS = (signal.SIGTERM, signal.SIGINT)

_received: int | None = None  # the first stop signal, if any
_deferring = 0  # training loops running that act on a signal at their next chunk boundary


class Interrupted(KeyboardInterrupt):
  """A stop signal that arrived outside a training loop (or a second Ctrl-C)."""


class Preempted(Exception):
  """A run stopped at a chunk boundary after a stop signal; the message says where it resumes."""


def _handle(signum: int, frame) -> None:
  global _received
  first = _received is None
  if first:
    _received = signum
  if not first and signum == signal.SIGTERM:
    return  # already stopping; the scheduler's SIGKILL ends a stop that takes too long
  if _deferring and first:
    sys.stderr.write(f'{signal.Signals(signum).name} received: stopping after this chunk, with a '
                     'checkpoint (Ctrl-C again stops at once)\n')
    sys.stderr.flush()
    return
  raise Interrupted(signal.Signals(signum).name)


@contextlib.contextmanager
def installed() -> Iterator[None]:
  """SIGTERM and SIGINT ask for a stop inside the block; the previous handlers come back after
  it. Only the main thread can install handlers: elsewhere the block changes nothing."""
  global _received
  if threading.current_thread() is not threading.main_thread():
    yield
    return
  previous = {s: signal.getsignal(s) for s in SIGNALS}
  _received = None
  for s in SIGNALS:
    signal.signal(s, _handle)
  try:
    yield
  finally:
    for s, handler in previous.items():
      signal.signal(s, handler)
    _received = None  # a library call after the block runs to its end


def requested() -> bool:
  """Whether a stop signal has arrived."""
  return _received is not None


def signal_name() -> str:
  return signal.Signals(_received).name if _received is not None else ''


def defer() -> None:
  """A training loop starts: a first signal now waits for its next chunk boundary."""
  global _deferring
  _deferring += 1


def undefer() -> None:
  """The loop `defer` announced has ended."""
  global _deferring
  _deferring = max(0, _deferring - 1)
