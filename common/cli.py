"""Shared plumbing of the `launch.*` entry points: flags, one-line errors, exit codes."""
from __future__ import annotations

import os
import sys
from typing import Callable

from absl import flags

from common.config import define_config_flag, parse_config_flags
from common.errors import UserError


def enable_compile_cache() -> None:
  """Keep XLA compilations on disk (JAX's persistent cache), so reruns and sweep points with the
  same shapes skip most of their compile time. The directory is $JAX_COMPILATION_CACHE_DIR when
  set, else $ADVCNN_CACHE/xla (~/.cache/advcnn/xla); ADVCNN_COMPILE_CACHE=0 turns it off.
  A cached executable is the compiled program itself, so results do not change."""
  if os.environ.get('ADVCNN_COMPILE_CACHE', '1') == '0':
    return
  import jax

  from common.workdir import cache_root

  if not os.environ.get('JAX_COMPILATION_CACHE_DIR'):
    jax.config.update('jax_compilation_cache_dir', os.path.join(cache_root(), 'xla'))
  if not os.environ.get('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'):
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)


def main_guard(fn: Callable[[], object]) -> None:
  """Run `fn`; a UserError becomes `error: ...` on stderr and exit code 2, no traceback."""
  enable_compile_cache()
  try:
    fn()
  except UserError as e:
    sys.stderr.write(f'error: {e}\n')
    sys.exit(2)
  except KeyboardInterrupt:
    sys.stderr.write('interrupted; rerun the same command to resume from the last checkpoint\n')
    sys.exit(130)


def parse(argv: list[str], default_config: str,
          define_extra: Callable[[flags.FlagValues], None] | None = None
          ) -> tuple[flags.FlagValues, str]:
  """Parse `--config` (default `default_config`), its overrides, `--workdir` and any flags
  `define_extra` adds; returns (flag values, config spec). Positional leftovers are an error."""
  argv = list(argv)
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    spec = default_config
    argv.insert(1, f'--config={spec}')
  fv = flags.FlagValues()
  define_config_flag(fv, argv)
  flags.DEFINE_string('workdir', None, 'Directory for config.json, metrics, checkpoints, images.',
                      flag_values=fv)
  if define_extra is not None:
    define_extra(fv)
  rest = parse_config_flags(fv, argv)
  if len(rest) > 1:
    raise UserError(f'unexpected argument {rest[1]!r}; flags take the form --name=value')
  return fv, spec


def default_workdir(config_spec: str) -> str:
  """`runs/<config name>[-<arg>]` under the cwd, for runs started without --workdir."""
  path, _, arg = config_spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', name + (f'-{arg}' if arg else ''))
