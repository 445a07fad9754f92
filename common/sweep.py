"""Sweeps: a grid of config overrides × seeds, each point a separate run in its own workdir.

SPEC is whitespace-separated `field=values` terms; values are comma-separated
(`loss.name=ns,hinge`) or an integer range `a:b` (Python's half-open range:
`seed=0:5` is 0..4). Points run as `python -m launch.X` subprocesses, so a
crash in one point is recorded and the others go on; a point whose
`summary.json` exists is skipped, and an interrupted one resumes from its
checkpoints when the sweep is run again.
"""
from __future__ import annotations

import csv
import ctypes
import itertools
import json
import math
import os
import re
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Sequence

import numpy as np

from common.config import load_config
from common.errors import UserError


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


def _die_with_parent():
  """Children of a killed sweep stop too, so a rerun never races an orphan (Linux)."""
  try:
    ctypes.CDLL('libc.so.6').prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
  except OSError:
    pass


def run_point(module: str, config_spec: str, workdir: str, point: dict[str, str]) -> dict:
  """Run (or skip, if finished) one point; returns {'status', 'summary' | 'error'}."""
  summary_path = os.path.join(workdir, 'summary.json')
  if os.path.exists(summary_path):
    with open(summary_path) as f:
      return {'status': 'skipped', 'summary': json.load(f)}
  os.makedirs(workdir, exist_ok=True)
  cmd = [sys.executable, '-m', module, f'--config={config_spec}', f'--workdir={workdir}',
         *[f'--config.{k}={v}' for k, v in point.items()]]
  with open(os.path.join(workdir, 'stderr.log'), 'w') as err:
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=err, preexec_fn=_die_with_parent)
  if proc.returncode == 0 and os.path.exists(summary_path):
    with open(summary_path) as f:
      return {'status': 'ran', 'summary': json.load(f)}
  with open(os.path.join(workdir, 'stderr.log')) as f:
    lines = [l.strip() for l in f if l.strip()]
  return {'status': 'failed', 'error': f'exit {proc.returncode}: ' + (lines[-1] if lines else '')}


def summarise(points: list[dict[str, str]], outcomes: list[dict], metrics: Sequence[str] | None,
              group_out: str = 'seed') -> tuple[list[str], list[dict]]:
  """Rows of mean ± std over seeds for each configuration (all fields but `group_out`)."""
  groups: dict[tuple, list[dict]] = {}
  for p, o in zip(points, outcomes):
    key = tuple((k, v) for k, v in p.items() if k != group_out)
    groups.setdefault(key, []).append(o)
  if metrics is None:
    names = set()
    for o in outcomes:
      if 'summary' in o:
        names |= {k for k, v in o['summary'].items()
                  if isinstance(v, (int, float)) and k not in ('step', 'rounds_per_sec')}
    metrics = sorted(names)
  rows = []
  for key, outs in groups.items():
    row = dict(key)
    done = [o['summary'] for o in outs if 'summary' in o]
    row['seeds'] = len(done)
    row['failed'] = len(outs) - len(done)
    for m in metrics:
      vals = [float(s[m]) for s in done if isinstance(s.get(m), (int, float))]
      row[m] = (float(np.mean(vals)), float(np.std(vals)), len(vals)) if vals else None
    rows.append(row)
  return list(metrics), rows


def _fmt(v) -> str:
  if v is None:
    return '—'
  mean, std, _ = v
  return f'{mean:.4g} ± {std:.2g}'


def write_tables(workdir: str, fields: list[str], metrics: list[str], rows: list[dict],
                 failures: list[tuple[str, str]]) -> None:
  cols = fields + ['seeds'] + metrics
  with open(os.path.join(workdir, 'results.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(fields + ['seeds', 'failed'] + [f'{m}_{s}' for m in metrics for s in ('mean', 'std')])
    for r in rows:
      w.writerow([r[k] for k in fields] + [r['seeds'], r['failed']] +
                 [x for m in metrics for x in ((r[m][0], r[m][1]) if r[m] else ('', ''))])
  lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    lines.append('| ' + ' | '.join([str(r[k]) for k in fields] + [str(r['seeds'])] +
                                   [_fmt(r[m]) for m in metrics]) + ' |')
  lines.append('')
  lines.append('Values are mean ± standard deviation over seeds (numpy std, ddof=0).')
  if failures:
    lines += ['', '## Failed points', ''] + [f'- `{n}`: {e}' for n, e in failures]
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def plot(workdir: str, fields: list[str], metric: str, rows: list[dict]) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  rows = [r for r in rows if r.get(metric)]
  if not rows:
    return
  labels = [', '.join(f'{k}={r[k]}' for k in fields) or 'all' for r in rows]
  fig, ax = plt.subplots(figsize=(max(4, 1.3 * len(rows)), 3.8))
  ax.bar(range(len(rows)), [r[metric][0] for r in rows], yerr=[r[metric][1] for r in rows],
         capsize=4, color='#7b3294')
  ax.set_xticks(range(len(rows)), labels, rotation=30, ha='right', fontsize=8)
  ax.set_ylabel(f'{metric} (mean ± std over seeds)')
  fig.tight_layout()
  fig.savefig(os.path.join(workdir, f'results_{metric}.png'), dpi=90)
  plt.close(fig)


def run_sweep(config_spec: str, workdir: str, spec: str, parallel: int = 1,
              metrics: Sequence[str] | None = None) -> dict:
  """Run every point not already finished, then write results.csv/.md and a plot."""
  if parallel < 1:
    raise UserError(f'--parallel must be at least 1, got {parallel}')
  terms = parse_spec(spec)
  points = grid(terms)
  check_points(config_spec, points)
  module = launcher_for(config_spec)
  os.makedirs(workdir, exist_ok=True)
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
  dirs = [os.path.join(workdir, 'points', point_name(p)) for p in points]
  with ThreadPoolExecutor(parallel) as pool:
    outcomes = list(pool.map(lambda a: run_point(module, config_spec, *a), zip(dirs, points)))
  fields = [k for k, _ in terms if k != 'seed']
  metric_names, rows = summarise(points, outcomes, metrics)
  failures = [(point_name(p), o['error']) for p, o in zip(points, outcomes) if o['status'] == 'failed']
  write_tables(workdir, fields, metric_names, rows, failures)
  if metric_names:
    plot(workdir, fields, metric_names[0], rows)
  counts = {s: sum(o['status'] == s for o in outcomes) for s in ('ran', 'skipped', 'failed')}
  return {'points': len(points), **counts, 'rows': rows, 'failures': failures}
