"""A full disk (or quota) is one line, not a storm of tracebacks.

Each write into a workdir runs inside `writing(what, path, workdir)`: no space left there
becomes a `DiskFull` (a UserError: exit code 2) naming what was being written, the workdir and
the checkpoint a rerun resumes from once space is freed. The writers themselves keep what was
already written (`common.writers`: whole lines, files replaced atomically; `common.checkpoint`:
a half-written checkpoint is removed).
"""
from __future__ import annotations

import contextlib
import errno
import os
from typing import Iterator

from common.errors import UserError

_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
# How libraries that do not raise OSError (tensorstore under orbax) word the same failure.
_FULL_TEXTS = ('No space left on device', 'Disk quota exceeded', "os_error_code='28'")


class DiskFull(UserError):
  """No space was left for a write; the message says what to free and where the run resumes."""


def is_disk_full(e: BaseException | None) -> bool:
  """Whether `e`, or an exception it was raised from, says the device or quota is full."""
  seen = set()
  while e is not None and id(e) not in seen:
    seen.add(id(e))
    if isinstance(e, OSError) and e.errno in _FULL_ERRNOS:
      return True
    if any(t in str(e) for t in _FULL_TEXTS):
      return True
    e = e.__cause__ or e.__context__
  return False


def saved_steps(workdir: str) -> list[int]:
  """Steps of the complete checkpoints in `workdir/checkpoints`, ascending (orbax writes a step
  under a temporary name and renames it once complete)."""
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(d) for d in os.listdir(directory) if d.isdigit())


def resume_text(workdir: str | None) -> str:
  """What rerunning does once space is freed, from the checkpoints on disk."""
  steps = saved_steps(workdir) if workdir else []
  if steps:
    return f'the run resumes from the checkpoint at step {steps[-1]}'
  return 'the run starts over (no checkpoint was saved yet)' if workdir else 'the run resumes'


def message(what: str, path: str | None, workdir: str | None) -> str:
  """'no space left on the device of workdir W while writing X (P); free space ...'."""
  where = f' of workdir {workdir}' if workdir else ''
  shown = f' ({path})' if path else ''
  return (f'no space left on the device{where} while writing {what}{shown}; free space there '
          f'and rerun the same command: {resume_text(workdir)}, and nothing written is lost')


@contextlib.contextmanager
def writing(what: str, path: str | None = None, workdir: str | None = None) -> Iterator[None]:
  """Turns a full disk inside the block into DiskFull(`what`, `path`); other errors pass."""
  try:
    yield
  except DiskFull:
    raise
  except Exception as e:
    if not is_disk_full(e):
      raise
    raise DiskFull(message(what, path, workdir)) from None


def disk_full_message(e: BaseException, workdir: str | None) -> str | None:
  """The one line for a full disk that no `writing` block named (None: `e` is not one)."""
  if not is_disk_full(e):
    return None
  path = getattr(e, 'filename', None)
  return message('a file', path, workdir)


def replace_atomically(path: str, data: bytes | str) -> None:
  """Write `path` through a temporary file and a rename: a failed write leaves the old file."""
  tmp = f'{path}.tmp'
  try:
    with open(tmp, 'wb' if isinstance(data, bytes) else 'w') as f:
      f.write(data)
  except BaseException:
    with contextlib.suppress(OSError):
      os.remove(tmp)
    raise
  os.replace(tmp, path)
