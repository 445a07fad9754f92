"""Sweeps: a grid of config overrides × seeds, each point a separate run in its own workdir.

SPEC is whitespace-separated `field=values` terms; values are comma-separated
(`loss.name=ns,hinge`) or an integer range `a:b` (Python's half-open range:
`seed=0:5` is 0..4). Every point runs `python -m launch.X` as a subprocess, here
(`executor='local'`) or inside a submitit job (`'slurm'`, `'submitit_local'`), so
a crash in one point is recorded and the others go on; a point whose
`summary.json` exists is skipped, and an interrupted one resumes from its
checkpoints when the sweep is run again. Stopping the sweep (SIGTERM, SIGINT) stops
its local points the same way, each with a checkpoint, and cancels its submitit jobs. A
point whose loss became NaN/inf is "diverged": listed apart, never averaged into the table.
"""
from __future__ import annotations

import contextlib
import ctypes
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, Sequence

from common.config import load_config
from common.errors import UserError, first_line
from common.sweep_report import numeric_metrics, plot, summarise, write_tables

EXECUTORS = ('local', 'slurm', 'submitit_local')
# The --slurm_* flags: name -> (submitit parameter, type, default, help). `submitit_local` uses
# time_min and gpus_per_node too (its jobs see CUDA_VISIBLE_DEVICES=0..n-1).
SLURM_PARAMS = {
    'partition': ('slurm_partition', str, None, 'SLURM partition (default: the cluster\'s).'),
    'time_min': ('timeout_min', int, 240, 'Time limit of each point\'s job, minutes (also '
                 'submitit_local); a point cut off resumes when the sweep is rerun.'),
    'gpus_per_node': ('gpus_per_node', int, 1, 'GPUs for each point\'s job (also '
                      'submitit_local: CUDA_VISIBLE_DEVICES=0..N-1).'),
    'cpus_per_task': ('cpus_per_task', int, 8, 'CPU cores for each point\'s job.'),
    'mem_gb': ('mem_gb', int, 32, 'Memory for each point\'s job, GB.'),
}


def parse_spec(spec: str) -> list[tuple[str, list[str]]]:
  """'a=1,2 seed=0:3' -> [('a', ['1', '2']), ('seed', ['0', '1', '2'])]."""
  terms = []
  for term in spec.split():
    key, sep, values = term.partition('=')
    if not sep or not key or not values:
      raise UserError(f'sweep term {term!r} is not FIELD=V1,V2,... or FIELD=A:B')
    m = re.fullmatch(r'(-?\d+):(-?\d+)', values)
    if m:
      vals = [str(v) for v in range(int(m.group(1)), int(m.group(2)))]
    else:
      vals = [v for v in values.split(',') if v != '']
    if not vals:
      raise UserError(f'sweep term {term!r} has no values; e.g. seed=0:5 or loss.name=ns,hinge')
    if key in (k for k, _ in terms):
      raise UserError(f'sweep field {key!r} appears twice; list all its values in one term')
    terms.append((key, vals))
  if not terms:
    raise UserError('the sweep is empty; pass --sweep="FIELD=V1,V2 seed=0:5"')
  return terms


def grid(terms: list[tuple[str, list[str]]]) -> list[dict[str, str]]:
  keys = [k for k, _ in terms]
  return [dict(zip(keys, combo)) for combo in itertools.product(*(v for _, v in terms))]


def point_name(point: dict[str, str]) -> str:
  """A filesystem-safe sub-workdir name built from the point's overrides."""
  raw = '__'.join(f'{k}-{v}' for k, v in point.items())
  return re.sub(r'[^A-Za-z0-9._-]', '_', raw)


def check_points(config_spec: str, points: list[dict[str, str]]) -> None:
  """Every field must exist and every value must parse, before anything runs."""
  seen = set()
  for p in points:
    for k, v in p.items():
      if (k, v) not in seen:
        seen.add((k, v))
        try:
          load_config(config_spec, [f'{k}={v}'])
        except UserError as e:
          raise UserError(f'sweep value {k}={v} is invalid: {e}') from None


def launcher_for(config_spec: str) -> str:
  path = config_spec.partition(':')[0].replace(os.sep, '/')
  if '/transfer/' in '/' + path or path.startswith('transfer/'):
    return 'launch.transfer'
  if '/gan/' in '/' + path or path.startswith('gan/'):
    return 'launch.gan'
  raise UserError(f'cannot tell whether {config_spec!r} is a gan or transfer config; '
                  'use a file under gan/configs/ or transfer/configs/')


def point_command(module: str, config_spec: str, workdir: str, point: dict[str, str]
                  ) -> list[str]:
  """The launch command of one point: the same whichever executor runs it."""
  return [sys.executable, '-m', module, f'--config={config_spec}', f'--workdir={workdir}',
          *[f'--config.{k}={v}' for k, v in point.items()]]


def _die_with_parent():
  """Children of a killed sweep stop too, so a rerun never races an orphan (Linux)."""
  try:
    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except OSError:
    pass


# A point's child runs one prctl call between fork and exec, no JAX: the warning JAX gives on
# every fork of a process that imported it (a config file may import it) does not apply.
warnings.filterwarnings('ignore', message=r'os\.fork\(\) was called', category=RuntimeWarning)

_children: set[subprocess.Popen] = set()  # points running as subprocesses of this process
_children_lock = threading.Lock()


def run_command(cmd: list[str], workdir: str) -> int:
  """Run one point's command with its stderr in WORKDIR/stderr.log; returns the exit code.
  Module-level so that submitit jobs can pickle it by name."""
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'stderr.log'), 'w') as err:
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err,
                            preexec_fn=_die_with_parent)
    with _children_lock:
      _children.add(proc)
    try:
      return proc.wait()
    finally:
      with _children_lock:
        _children.discard(proc)


def stop_children() -> None:
  """Forward a stop to the points running here (SIGTERM: each saves a checkpoint at the end of
  its chunk, `common.preemption`) and wait until they have exited."""
  with _children_lock:
    procs = list(_children)
  for proc in procs:
    with contextlib.suppress(ProcessLookupError):
      proc.send_signal(signal.SIGTERM)
  for proc in procs:
    proc.wait()


def _read_summary(workdir: str) -> dict | None:
  path = os.path.join(workdir, 'summary.json')
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _last_error_line(workdir: str) -> str:
  path = os.path.join(workdir, 'stderr.log')
  if not os.path.exists(path):
    return ''
  with open(path) as f:
    lines = [l.strip() for l in f if l.strip()]
  return lines[-1] if lines else ''


def finished_outcome(workdir: str) -> dict | None:
  """The outcome of a point that has a summary.json (ran or diverged), else None."""
  summary = _read_summary(workdir)
  if summary is None:
    return None
  if summary.get('diverged'):
    return {'status': 'diverged', 'reason': str(summary.get('diverged_reason') or 'diverged'),
            'summary': summary}
  return {'status': 'ran', 'summary': summary}


def outcome_of(workdir: str, returncode: int) -> dict:
  """Classify a point whose command exited with `returncode`: ran, diverged or failed. A
  launcher reports divergence with exit 2 and 'NaN/inf' or 'diverged' in its error line."""
  done = finished_outcome(workdir)
  if done is not None and (returncode == 0 or done['status'] == 'diverged'):
    return done
  err = _last_error_line(workdir)
  if returncode == 2 and ('NaN/inf' in err or 'diverged' in err):
    return {'status': 'diverged', 'reason': err.removeprefix('error: ')}
  return {'status': 'failed', 'error': f'exit {returncode}: {err}'}


class SweepLog:
  """Prints each point's start and end as they happen, with a running count (thread-safe)."""

  def __init__(self, points: list[dict[str, str]], metrics: Sequence[str] | None,
               write: Callable[[str], None]):
    self.points, self.metrics, self.write = points, metrics, write
    self.outcomes: list[dict | None] = [None] * len(points)
    self.lock = threading.Lock()
    self.stopped = False

  def stop(self) -> None:
    """Say nothing more: after an interrupt, the points it cut short are not results."""
    with self.lock:
      self.stopped = True

  def _head(self, i: int) -> tuple[str, str]:
    label = ' '.join(f'{k}={v}' for k, v in self.points[i].items())
    return f'[{i + 1}/{len(self.points)}]', label

  def start(self, i: int, note: str = '') -> None:
    tag, label = self._head(i)
    with self.lock:
      if not self.stopped:
        self.write(f'{tag} start {label}' + (f' ({note})' if note else ''))

  def end(self, i: int, outcome: dict, seconds: float | None = None) -> None:
    tag, label = self._head(i)
    when = '(finished before)' if outcome.get('skipped') else f'in {seconds:.0f} s'
    word = {'ran': 'done', 'failed': 'FAILED', 'diverged': 'DIVERGED'}[outcome['status']]
    with self.lock:
      if self.stopped:
        return
      self.outcomes[i] = outcome
      self.write(f'{tag} {word} {label} {when}: {self._row(outcome)}')
      done = [o for o in self.outcomes if o is not None]
      failed = sum(o['status'] == 'failed' for o in done)
      diverged = sum(o['status'] == 'diverged' for o in done)
      self.write(f'{len(done)} of {len(self.points)} done, {failed} failed, {diverged} diverged')

  def _row(self, outcome: dict) -> str:
    if outcome['status'] == 'failed':
      return outcome['error']
    if outcome['status'] == 'diverged':
      return f'diverged: {outcome["reason"]}'
    summary = outcome['summary']
    names = self.metrics if self.metrics is not None else numeric_metrics(summary)
    return ' '.join(f'{m}={summary[m]:.4g}' if isinstance(summary.get(m), (int, float))
                    else f'{m}=—' for m in names)


def submitit_executor(kind: str, folder: str, slurm: dict | None = None):
  """A submitit executor for `kind` ('slurm' or 'submitit_local') with the --slurm_* settings
  (SLURM_PARAMS names; missing ones take their defaults); logs go under `folder`."""
  try:
    import submitit
  except ImportError:
    raise UserError(f'--executor={kind} needs submitit; pip install "submitit>=1.5"') from None
  settings = {k: d for k, (_, _, d, _) in SLURM_PARAMS.items()}
  settings.update({k: v for k, v in (slurm or {}).items() if v is not None})
  if kind == 'submitit_local':
    ex = submitit.AutoExecutor(folder=os.path.join(folder, '%j'), cluster='local')
    ex.update_parameters(timeout_min=settings['time_min'],
                         gpus_per_node=settings['gpus_per_node'])
    return ex
  try:
    ex = submitit.AutoExecutor(folder=os.path.join(folder, '%j'), cluster='slurm')
  except RuntimeError as e:
    raise UserError(f'--executor=slurm cannot reach SLURM ({first_line(e)}); run the sweep on '
                    'a login node or use --executor=local') from None
  ex.update_parameters(name='advcnn-sweep', **{
      SLURM_PARAMS[k][0]: v for k, v in settings.items() if v is not None})
  return ex


def _job_error(job, e: Exception) -> str:
  """One line for a submitit job that gave no exit code: the last line of what it raised, or
  the state it ended in; with its log."""
  import submitit
  if isinstance(e, submitit.core.utils.FailedJobError):
    # Its message is a header, the job's traceback between two dashed rules, then log paths.
    parts = str(e).split('-' * 22)
    lines = [l.strip() for l in (parts[1] if len(parts) > 2 else '').splitlines() if l.strip()]
    what = f'failed: {lines[-1] if lines else type(e).__name__}'
  else:
    what = f'ended {job.state} without a result'
  return f'job {job.job_id} {what}; its log: {job.paths.stderr}'


def _run_pool(todo: list[int], run_one: Callable[[int], None], parallel: int, log: SweepLog,
              on_abort: Callable[[], None] = lambda: None) -> None:
  """run_one(i) for each point, `parallel` at a time; on an interrupt, silence `log` and call
  `on_abort`."""
  pool = ThreadPoolExecutor(parallel)
  try:
    for f in as_completed([pool.submit(run_one, i) for i in todo]):
      f.result()
  except BaseException:
    log.stop()
    on_abort()
    pool.shutdown(wait=False, cancel_futures=True)
    raise
  pool.shutdown()


def _run_points(todo: list[int], cmds: list[list[str]], dirs: list[str], log: SweepLog,
                parallel: int, executor: str, folder: str, slurm: dict | None) -> None:
  """Run the unfinished points here (`local`) or as submitit jobs, reporting each to `log`."""
  if executor == 'local':
    def run_one(i):
      log.start(i)
      t = time.monotonic()
      rc = run_command(cmds[i], dirs[i])
      log.end(i, outcome_of(dirs[i], rc), time.monotonic() - t)
    _run_pool(todo, run_one, parallel, log, stop_children)
    return
  ex = submitit_executor(executor, folder, slurm)
  live = {}

  def run_one(i):
    job = ex.submit(run_command, cmds[i], dirs[i])
    live[i] = job
    if log.stopped:  # submitted while the sweep was being interrupted
      job.cancel(check=False)
      return
    log.start(i, f'{executor} job {job.job_id}')
    t = time.monotonic()
    while not job.done():  # job.result() would wait, deaf to an interrupt
      if log.stopped:
        return
      time.sleep(0.5)
    try:
      out = outcome_of(dirs[i], job.result())
    except Exception as e:  # the job itself failed: time limit, preemption, node failure
      out = {'status': 'failed', 'error': _job_error(job, e)}
    live.pop(i, None)
    log.end(i, out, time.monotonic() - t)

  def cancel_live():  # jobs outlive this process on a cluster: a rerun must not race them
    for job in list(live.values()):
      job.cancel(check=False)
  _run_pool(todo, run_one, parallel, log, cancel_live)


def _check_record(workdir: str, config_spec: str, spec: str) -> None:
  """sweep.json names the sweep a directory holds; a different one is refused."""
  record = {'config': config_spec, 'sweep': spec}
  record_path = os.path.join(workdir, 'sweep.json')
  if os.path.exists(record_path):
    with open(record_path) as f:
      old = json.load(f)
    if old != record:
      raise UserError(f'{workdir!r} holds a different sweep ({old["config"]} {old["sweep"]!r}); '
                      'use a new --workdir')
  else:
    with open(record_path, 'w') as f:
      json.dump(record, f, indent=2)


def _print(line: str) -> None:
  print(line, flush=True)


def run_sweep(config_spec: str, workdir: str, spec: str, parallel: int = 1,
              metrics: Sequence[str] | None = None, executor: str = 'local',
              slurm: dict | None = None, report: Callable[[str], None] = _print) -> dict:
  """Run every point not already finished (reporting each start and end to `report` as it
  happens), then write results.csv/.md and one results_<metric>.png per metric. Returns the
  point counts by status (ran, skipped, failed, diverged), the table's rows, (point, error)
  `failures`, (point, reason) `diverged_points` and the `plots` written."""
  if parallel < 1:
    raise UserError(f'--parallel must be at least 1, got {parallel}')
  if executor not in EXECUTORS:
    raise UserError(f'unknown executor {executor!r}; choose one of: {", ".join(EXECUTORS)}')
  terms = parse_spec(spec)
  points = grid(terms)
  check_points(config_spec, points)
  module = launcher_for(config_spec)
  os.makedirs(workdir, exist_ok=True)
  _check_record(workdir, config_spec, spec)
  dirs = [os.path.join(workdir, 'points', point_name(p)) for p in points]
  log = SweepLog(points, metrics, report)
  todo = []
  for i, d in enumerate(dirs):
    done = finished_outcome(d)
    if done is None:
      todo.append(i)
    else:
      log.end(i, {**done, 'skipped': True})
  if todo:
    cmds = [point_command(module, config_spec, d, p) for d, p in zip(dirs, points)]
    _run_points(todo, cmds, dirs, log, parallel, executor, os.path.join(workdir, 'submitit'),
                slurm)
  outcomes = [{**o, 'status': 'skipped'} if o.get('skipped') and o['status'] == 'ran' else o
              for o in log.outcomes]
  fields = [k for k, _ in terms if k != 'seed']
  metric_names, rows = summarise(points, outcomes, metrics)
  named = lambda status, key: [(point_name(p), o[key]) for p, o in zip(points, outcomes)
                               if o['status'] == status]
  failures, diverged = named('failed', 'error'), named('diverged', 'reason')
  write_tables(workdir, fields, metric_names, rows, failures, diverged)
  plots = [p for p in (plot(workdir, fields, m, rows) for m in metric_names) if p]
  counts = {s: sum(o['status'] == s for o in outcomes)
            for s in ('ran', 'skipped', 'failed', 'diverged')}
  return {'points': len(points), **counts, 'rows': rows, 'failures': failures,
          'diverged_points': diverged, 'plots': plots}
