"""Workdir contract: `config.json` identifies the run; a different config is refused; one run at
a time holds the workdir (`WORKDIR/.lock`)."""
from __future__ import annotations

import datetime
import errno
import fcntl
import json
import os
import socket
import subprocess
import time
from importlib import metadata

import ml_collections

from common.config import REPO_ROOT, config_to_dict, diff_configs
from common.diskspace import replace_atomically, saved_steps, writing
from common.errors import UserError

# Version of the config keys' layout; 2: one vocabulary for both trainers (optim.*, and the
# cadence keys train.log_every/eval_every/checkpoint_every/keep_checkpoints).
CONFIG_FORMAT = 2

LOCK_FILE = '.lock'
_held: dict[str, int] = {}  # real path of a lock file this process holds -> its descriptor

_PACKAGES = ('jax', 'jaxlib', 'flax', 'optax', 'orbax-checkpoint', 'grain', 'numpy',
             'tensorflow-datasets', 'ml-collections', 'advcnn')


def cache_root() -> str:
  """Where work shared across runs lives (trained feature nets, reference statistics, XLA
  compilations): $ADVCNN_CACHE or ~/.cache/advcnn."""
  return os.environ.get('ADVCNN_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'advcnn')


def package_versions() -> dict[str, str]:
  out = {}
  for name in _PACKAGES:
    try:
      out[name] = metadata.version(name)
    except metadata.PackageNotFoundError:
      pass
  return out


def git_commit() -> str | None:
  try:
    out = subprocess.run(['git', 'rev-parse', 'HEAD'], cwd=REPO_ROOT, capture_output=True,
                         text=True, timeout=5)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None if out.returncode == 0 else None


def read_config(workdir: str, what_to_do: str) -> dict:
  """The resolved config (a plain dict) recorded in `workdir/config.json`; a file that cannot be
  read, or was written with another layout of config keys, is a UserError ending `what_to_do`."""
  path = os.path.join(workdir, 'config.json')
  try:
    with open(path) as f:
      record = json.load(f)
    config = record['config']
  except (OSError, ValueError, KeyError, TypeError):
    raise UserError(f'{path} is unreadable; {what_to_do}') from None
  if record.get('config_format') != CONFIG_FORMAT:
    raise UserError(f'{path} was written with an older config format (GAN optimiser keys are now '
                    'optim.*, cadence keys train.*); start a new --workdir, or finish this run '
                    'with the advcnn version that made it')
  return config


def _holder(fd: int, patience_s: float = 2.0) -> str:
  """'PID 123 on host h, started 2024-05-01 12:00:00' from a lock file's record, waiting up to
  `patience_s` for a holder that took the lock a moment ago to write it."""
  deadline = time.monotonic() + patience_s
  while True:
    try:
      record = json.loads(os.pread(fd, 4096, 0).decode() or '{}')
      return (f'PID {record["pid"]} on host {record["host"]}, started {record["started"]}')
    except (OSError, ValueError, KeyError, TypeError):
      if time.monotonic() > deadline:
        return 'a process that has not recorded itself yet'
      time.sleep(0.05)


def lock_workdir(workdir: str) -> bool:
  """Hold `workdir/.lock` (an exclusive `flock`) until `unlock_workdir` or the process ends;
  True when this call took it, False when this process held it already.

  A second process asking for a held workdir gets a one-line UserError naming the holder (PID,
  host, start time, which the taker writes into the file at once). The kernel drops the lock of a
  process that died, even by SIGKILL, so a stale lock file is taken over without a word. A
  filesystem without `flock` (some network mounts) runs unlocked.
  """
  path = os.path.realpath(os.path.join(workdir, LOCK_FILE))
  if path in _held:
    return False
  try:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
  except OSError as e:
    raise UserError(f'cannot create {path} ({e.strerror}); choose a writable --workdir') from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    holder = _holder(fd)
    os.close(fd)
    raise UserError(f'workdir {workdir!r} is in use by another run ({holder}); wait for it to '
                    'end or stop it, or choose another --workdir') from None
  except OSError as e:
    if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
      os.close(fd)
      raise
  _held[path] = fd
  _record_holder(fd)
  return True


def _record_holder(fd: int) -> None:
  """Write this process (PID, host, start time) into the lock file it holds."""
  record = {'pid': os.getpid(), 'host': socket.gethostname(),
            'started': datetime.datetime.now().strftime('%Y-%m-%d %H:%M:%S')}
  try:
    data = json.dumps(record).encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))
  except OSError:
    pass  # a full disk: the lock holds without its record


def unlock_workdir(workdir: str) -> None:
  """Release the lock `lock_workdir` took (if this process holds it); the file stays."""
  fd = _held.pop(os.path.realpath(os.path.join(workdir, LOCK_FILE)), None)
  if fd is not None:
    os.close(fd)


def unlock_all() -> None:
  """Release every workdir lock this process holds."""
  for fd in _held.values():
    os.close(fd)
  _held.clear()


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Create `workdir` with config.json, or check an existing one matches; True if it existed.
  The workdir stays locked (`lock_workdir`) by this process unless the check fails, which
  leaves the workdir untouched.

  Only the `config` entry decides identity: versions and devices may change
  between a run and its resumption.
  """
  if not workdir:
    raise UserError('--workdir is empty; name a directory for the run')
  try:
    os.makedirs(workdir, exist_ok=True)
  except OSError as e:
    raise UserError(f'cannot create workdir {workdir!r} ({e.strerror}); choose a writable path') from None
  if not os.access(workdir, os.W_OK | os.X_OK):
    raise UserError(f'workdir {workdir!r} is not writable; choose a writable path')
  taken = lock_workdir(workdir)
  try:
    return _write_or_check_config(workdir, config)
  except BaseException:
    if taken:
      unlock_workdir(workdir)
    raise


def _write_or_check_config(workdir: str, config: ml_collections.ConfigDict) -> bool:
  import jax  # here: reading a workdir needs no accelerator runtime

  path = os.path.join(workdir, 'config.json')
  resolved = config_to_dict(config)
  if os.path.exists(path):
    changed = diff_configs(read_config(workdir, 'use a new --workdir'), resolved)
    if changed:
      raise UserError(f'workdir {workdir!r} was made by a different config (differs in: '
                      f'{", ".join(changed[:8])}); use a new --workdir or the original config')
    return True
  record = {
      'config_format': CONFIG_FORMAT,
      'config': resolved,
      'versions': package_versions(),
      'git_commit': git_commit(),
      'devices': {'platform': jax.devices()[0].platform,
                  'kind': jax.devices()[0].device_kind,
                  'count': jax.device_count(),
                  'process_count': jax.process_count()},
  }
  with writing('config.json', path, workdir):
    replace_atomically(path, json.dumps(record, indent=2, sort_keys=True))
  return False


# The workdir of the run this process is running (None: none, or a command that is not one run,
# e.g. a sweep), so that an early stop can say where the rerun resumes.
_current: str | None = None


def note_current_workdir(workdir: str | None) -> None:
  global _current
  _current = workdir


def current_workdir() -> str | None:
  return _current


def resume_note(all_processes: bool = False) -> str:
  """Where rerunning the same command resumes the current workdir's run."""
  rerun = 'rerun all processes' if all_processes else 'rerun the same command'
  if _current is None:
    return f'{rerun} to resume: finished work is kept'
  steps = saved_steps(_current)
  if steps:
    return f'{rerun} to resume from the checkpoint at step {steps[-1]}'
  return 'no checkpoint yet, so rerunning starts over'
