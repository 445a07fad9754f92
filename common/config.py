"""Configs as Python files (`get_config(arg=None)`) plus `--config.key=value` overrides.

Both the launch entry points and library callers (tests, sweeps) go through
`parse_config_flags`, which uses ml_collections' `config_flags` with
`lock_config=True`, so a typo in a key is an error rather than a silent no-op.
"""
from __future__ import annotations

import json
import os
import re
from typing import Sequence

import ml_collections
from absl import flags
from ml_collections import config_flags

from common.errors import UserError

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def resolve_config_spec(spec: str) -> str:
  """`PKG/configs/NAME.py[:ARG]` relative to the cwd, else to the installed packages."""
  path, sep, arg = spec.partition(':')
  if not os.path.exists(path):
    candidate = os.path.join(REPO_ROOT, path)
    if os.path.exists(candidate):
      path = candidate
    else:
      raise UserError(f'config file {path!r} not found; pass --config=PKG/configs/NAME.py[:ARG] '
                      f'(see {os.path.join(REPO_ROOT, "gan", "configs")})')
  return path + sep + arg


def define_config_flag(flag_values: flags.FlagValues, argv: Sequence[str]) -> None:
  """`--config` on `flag_values`; config_flags registers the `--config.*` overrides it finds in
  `argv` at definition time, so define it with the argv that will be parsed."""
  config_flags.DEFINE_config_file(
      'config', None, 'Config file PKG/configs/NAME.py[:ARG]; override fields with '
      '--config.key=value.', flag_values=flag_values, lock_config=True, sys_argv=list(argv))


def _one_line(e: BaseException) -> str:
  lines = [l.strip() for l in str(e).splitlines() if l.strip()]
  return ' '.join(lines)[:500] or type(e).__name__


def parse_config_flags(flag_values: flags.FlagValues, argv: Sequence[str]) -> list[str]:
  """Parse argv into `flag_values`; any flag or config error becomes a one-line UserError."""
  argv = list(argv)
  for i, a in enumerate(argv):
    if a.startswith('--config='):
      argv[i] = '--config=' + resolve_config_spec(a[len('--config='):])
  try:
    rest = flag_values(argv)
    flag_values['config'].value  # loads the file and applies overrides now
  except UserError:
    raise
  except flags.Error as e:
    raise UserError(f'bad flag: {_one_line(e)}') from None
  except (AttributeError, KeyError) as e:  # an override naming a key the config lacks
    detail = re.sub(r"\\n|[\\'\"]", ' ', _one_line(e))
    detail = ' '.join(detail.split())
    raise UserError(f'unknown config key in --config.* overrides: {detail}') from None
  except Exception as e:  # errors raised while executing the config file itself
    raise UserError(f'cannot load config: {type(e).__name__}: {_one_line(e)}') from None
  return rest


def load_config(spec: str, overrides: Sequence[str] = ()) -> ml_collections.ConfigDict:
  """Config from `PKG/configs/NAME.py[:ARG]` with `key=value` overrides, as the CLI would build it."""
  argv = ['prog', f'--config={spec}'] + [f'--config.{o}' for o in overrides]
  fv = flags.FlagValues()
  define_config_flag(fv, argv)
  parse_config_flags(fv, argv)
  return fv.config


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
  """Plain JSON-able dict of a config (tuples become lists)."""
  return json.loads(config.to_json_best_effort(sort_keys=True))


def flatten_config(config) -> dict:
  """{'dotted.key': value} of a ConfigDict (or a plain nested dict), in definition order."""
  out = {}
  for k, v in config.items():
    if hasattr(v, 'items'):
      out.update({f'{k}.{kk}': vv for kk, vv in flatten_config(v).items()})
    else:
      out[k] = v
  return out


def reference_markdown(title: str, config, key_help: dict) -> str:
  """A markdown table of every key of `config` with its default and `key_help` meaning."""
  lines = [f'## {title}', '', '| key | default | meaning |', '|---|---|---|']
  for key, value in flatten_config(config).items():
    shown = repr(value).replace('|', '\\|')
    lines.append(f'| `{key}` | `{shown}` | {key_help.get(key, "").replace("|", chr(92) + "|")} |')
  return '\n'.join(lines) + '\n'


def diff_configs(a: dict, b: dict, prefix: str = '') -> list[str]:
  """Dotted keys whose values differ between two plain config dicts."""
  out = []
  for k in sorted(set(a) | set(b)):
    va, vb = a.get(k), b.get(k)
    if isinstance(va, dict) and isinstance(vb, dict):
      out += diff_configs(va, vb, f'{prefix}{k}.')
    elif va != vb:
      out.append(f'{prefix}{k}')
  return out
