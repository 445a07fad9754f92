"""Shared plumbing of the `launch.*` entry points: flags, help, one-line errors, exit codes.

Exit codes of every `launch.*` command:
  0   done.
  2   bad input, or no space left on the device: one line on stderr says what to do.
  75  stopped early, nothing lost (EX_TEMPFAIL): SIGTERM or SIGINT (preemption, scancel, Ctrl-C)
      stopped the run after saving a checkpoint, or a process of a multi-process run was lost;
      rerun the same command (all processes) to resume. Schedulers may requeue on it.
"""
from __future__ import annotations

import ast
import os
import sys
import traceback
import warnings
from typing import Callable, Mapping

from absl import flags

from common import preemption
from common.config import define_config_flag, flatten_config, parse_config_flags, \
    resolve_config_spec
from common.diskspace import disk_full_message
from common.errors import AgreedUserError, UserError
from common.workdir import current_workdir, lock_workdir, note_current_workdir, resume_note, \
    saved_steps, unlock_all

HELP_FLAGS = ('-h', '--help', '--helpfull')
# What a training launcher's --help says about its run's workdir, signals and exit codes.
TRAINING_RUN_HELP = '''\
A run keeps its workdir to itself (WORKDIR/.lock): a second launch on it stops at once, naming
the holder. SIGTERM or SIGINT (preemption, scancel, Ctrl-C) ends the chunk of steps in progress,
saves a checkpoint there and prints 'preempted at step N'; the same command resumes it. In a
multi-process run a lost process stops the others within ADVCNN_PEER_TIMEOUT seconds (default
60). Exit codes: 0 done; 2 bad input or no space left on the device (one line on stderr);
75 stopped early, nothing lost (a signal or a lost process): rerun to resume (requeue on it).
'''


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


def note_workdir(workdir: str | None) -> None:
  """Remember the run's workdir, so an early stop can say where the rerun resumes (None: the
  command is not one run, e.g. a sweep); an existing workdir is locked now (on process 0), so
  a second launch on a busy one stops before any work."""
  note_current_workdir(workdir)
  if workdir and os.path.isdir(workdir):
    from common import distributed
    if distributed.is_main():
      lock_workdir(workdir)


def interrupted_message() -> str:
  workdir = current_workdir()
  if workdir is not None and not saved_steps(workdir):
    return 'interrupted before the first checkpoint; rerunning the same command starts over'
  return f'interrupted; {resume_note()}'


def main_guard(fn: Callable[[], object]) -> None:
  """Run `fn` as a command, with the exit codes in this module's docstring: a UserError or a
  full disk becomes `error: ...` on stderr and exit code 2; SIGTERM/SIGINT stop it with exit
  code 75 (a training loop saves a checkpoint first, `common.preemption`). No traceback but
  for a bug. In a multi-process run a process that stops on its own exits without waiting for
  the others, which then stop within ADVCNN_PEER_TIMEOUT (`common.distributed`)."""
  enable_compile_cache()
  agreed = False  # a stop every process of the run takes together
  at_once = False  # leave without the interpreter's shutdown
  with preemption.installed():
    try:
      fn()
      _finished()
      return
    except UserError as e:
      _quiet()
      message, code, agreed = f'error: {e}', 2, isinstance(e, AgreedUserError)
      if agreed:
        _finished()
    except preemption.Preempted as e:
      _quiet()
      message, code, agreed = str(e), preemption.EXIT_PREEMPTED, True
      _finished()
    except KeyboardInterrupt:
      _quiet()
      # Straight out: worker threads still waiting at interpreter shutdown would turn a second
      # Ctrl-C into a traceback. Checkpoints are written synchronously, so nothing is lost.
      message, code, at_once = interrupted_message(), preemption.EXIT_PREEMPTED, True
    except Exception as e:
      full = disk_full_message(e, current_workdir())
      if full is None:
        _unexpected()
        raise
      _quiet()
      message, code = f'error: {full}', 2
    finally:
      unlock_all()
  sys.stderr.write(message + '\n')
  _exit(code, agreed, at_once)


def _quiet() -> None:
  """The command's one line is the last thing it prints: a write a library abandoned on the
  error (orbax's on a full disk leaves a coroutine never awaited) must not add a warning when
  it is collected, as the exception is dropped or at interpreter shutdown."""
  warnings.simplefilter('ignore')


def _exit(code: int, agreed: bool, at_once: bool = False) -> None:
  """sys.exit; but a process leaving a multi-process run on its own skips JAX's exit-time
  shutdown, which would wait minutes for processes blocked in a collective with it: they see it
  gone and stop within ADVCNN_PEER_TIMEOUT."""
  if at_once or (not agreed and _multi_process()):
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  sys.exit(code)


def _finished() -> None:
  """Tell the other processes of a multi-process run that this one ends as planned."""
  if _multi_process():
    from common import distributed
    distributed.finished()


def _multi_process() -> bool:
  return 'jax' in sys.modules and sys.modules['jax'].distributed.is_initialized()


def _unexpected() -> None:
  """A bug (or a collective broken by a lost process, which the runtime reports in time): in a
  multi-process run, the traceback and exit code 1 without waiting for the other processes."""
  if _multi_process():
    from common import distributed
    distributed.await_lost_process()
    traceback.print_exc()
    _exit(1, agreed=False)


def wants_help(argv: list[str]) -> bool:
  return any(a in HELP_FLAGS for a in argv[1:])


def _flag_lines(fv: flags.FlagValues) -> list[str]:
  """One line per flag (the --config.* overrides are listed with the config's keys)."""
  out = []
  for name in sorted(fv):
    if name.startswith('config.') or name in ('help', 'helpshort', 'helpfull', 'helpxml'):
      continue
    flag = fv[name]
    default = '' if flag.default in (None, '') else f' (default: {flag.default})'
    out.append(f'  --{name}: {flag.help}{default}')
  return out


def _config_help(spec: str, config, key_help: Mapping[str, str]) -> list[str]:
  path = resolve_config_spec(spec).partition(':')[0]
  with open(path) as f:
    doc = ast.get_docstring(ast.parse(f.read())) or ''
  lines = [f'config {spec}:', *(f'  {l}' for l in doc.splitlines()), '',
           'config keys (override any with --config.KEY=VALUE):']
  for key, value in flatten_config(config).items():
    meaning = key_help.get(key, '')
    lines.append(f'  --config.{key}={value!r}' + (f'  # {meaning}' if meaning else ''))
  return lines


def print_help(doc: str, fv: flags.FlagValues, spec: str | None = None, config=None,
               key_help: Mapping[str, str] | None = None) -> None:
  """The module's usage, its flags and, for a config, its docstring and keys."""
  lines = [doc.strip(), '', 'flags:', *_flag_lines(fv)]
  if config is not None:
    lines += ['', *_config_help(spec, config, key_help or {})]
  print('\n'.join(lines))


def parse_flags(argv: list[str], define: Callable[[flags.FlagValues], None],
                doc: str) -> flags.FlagValues:
  """Flags of an entry point without a config; -h/--help prints usage and exits 0."""
  fv, rest = parse_flags_and_args(argv, define, doc)
  if rest:
    raise UserError(f'unexpected argument {rest[0]!r}; flags take the form --name=value')
  return fv


def parse_flags_and_args(argv: list[str], define: Callable[[flags.FlagValues], None],
                         doc: str) -> tuple[flags.FlagValues, list[str]]:
  """`parse_flags` for an entry point that also takes positional arguments: (flags, arguments).
  """
  fv = flags.FlagValues()
  define(fv)
  if wants_help(argv):
    print_help(doc, fv)
    raise SystemExit(0)
  try:
    rest = fv(list(argv))
  except flags.Error as e:
    raise UserError(f'bad flag: {" ".join(str(e).split())}; see --help') from None
  return fv, rest[1:]


def parse(argv: list[str], default_config: str, doc: str = '',
          key_help: Mapping[str, str] | None = None,
          define_extra: Callable[[flags.FlagValues], None] | None = None
          ) -> tuple[flags.FlagValues, str]:
  """Parse `--config` (default `default_config`), its overrides, `--workdir` and any flags
  `define_extra` adds; returns (flag values, config spec). Positional leftovers are an error.
  -h/--help prints usage, the flags and the config's keys with their meanings, and exits 0."""
  show_help = wants_help(argv)
  argv = [a for a in argv if a not in HELP_FLAGS]
  spec = next((a.split('=', 1)[1] for a in argv if a.startswith('--config=')), None)
  if spec is None:
    spec = default_config
    argv.insert(1, f'--config={spec}')
  fv = flags.FlagValues()
  define_config_flag(fv, argv)
  flags.DEFINE_string('workdir', None, 'Directory for config.json, metrics, checkpoints, images '
                      '(default: runs/<config name>[-<arg>]).', flag_values=fv)
  if define_extra is not None:
    define_extra(fv)
  rest = parse_config_flags(fv, argv)
  if show_help:
    print_help(doc, fv, spec, fv.config, key_help)
    raise SystemExit(0)
  if len(rest) > 1:
    raise UserError(f'unexpected argument {rest[1]!r}; flags take the form --name=value')
  return fv, spec


def default_workdir(config_spec: str) -> str:
  """`runs/<config name>[-<arg>]` under the cwd, for runs started without --workdir."""
  path, _, arg = config_spec.partition(':')
  name = os.path.splitext(os.path.basename(path))[0]
  return os.path.join('runs', name + (f'-{arg}' if arg else ''))


def _value(v) -> str:
  return f'{v:.4g}' if isinstance(v, float) else f'{v}'


def print_summary(workdir: str, summary: Mapping[str, object], files: str) -> None:
  """Where the results went, then the summary's scalars on one line."""
  print(f'results in {workdir}: {files}')
  print(' '.join(f'{k}={_value(v)}' for k, v in summary.items()
                 if v is not None and not isinstance(v, (dict, list))))
