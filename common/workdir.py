"""Workdir contract: `config.json` identifies the run; a different config is refused."""
from __future__ import annotations

import json
import os
import subprocess
from importlib import metadata

import jax
import ml_collections

from common.config import REPO_ROOT, config_to_dict, diff_configs
from common.errors import UserError

# Version of the config keys' layout; 2: one vocabulary for both trainers (optim.*, and the
# cadence keys train.log_every/eval_every/checkpoint_every/keep_checkpoints).
CONFIG_FORMAT = 2

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


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> bool:
  """Create `workdir` with config.json, or check an existing one matches; True if it existed.

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
  tmp = path + '.tmp'
  with open(tmp, 'w') as f:
    json.dump(record, f, indent=2, sort_keys=True)
  os.replace(tmp, path)
  return False
