"""A sweep's results: mean ± std over seeds per configuration, as results.csv, results.md and
one results_<metric>.png per metric; failed and diverged points are listed, never averaged."""
from __future__ import annotations

import csv
import os
import re
from typing import Sequence

import numpy as np

from common.writers import save_figure

_NOT_METRICS = ('step', 'rounds_per_sec')


def numeric_metrics(summary: dict) -> list[str]:
  """Names of a summary's numeric values that are results (not bookkeeping), sorted."""
  return sorted(k for k, v in summary.items() if k not in _NOT_METRICS
                and isinstance(v, (int, float)) and not isinstance(v, bool))


def summarise(points: list[dict[str, str]], outcomes: list[dict], metrics: Sequence[str] | None,
              group_out: str = 'seed') -> tuple[list[str], list[dict]]:
  """Rows of mean ± std over seeds for each configuration (all fields but `group_out`); failed
  and diverged points are counted per row but never averaged."""
  groups: dict[tuple, list[dict]] = {}
  for p, o in zip(points, outcomes):
    key = tuple((k, v) for k, v in p.items() if k != group_out)
    groups.setdefault(key, []).append(o)
  ok = lambda o: o['status'] in ('ran', 'skipped')
  if metrics is None:
    metrics = sorted({m for o in outcomes if ok(o) for m in numeric_metrics(o['summary'])})
  rows = []
  for key, outs in groups.items():
    row = dict(key)
    done = [o['summary'] for o in outs if ok(o)]
    row['seeds'] = len(done)
    row['failed'] = sum(o['status'] == 'failed' for o in outs)
    row['diverged'] = sum(o['status'] == 'diverged' for o in outs)
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
                 failures: list[tuple[str, str]], diverged: Sequence[tuple[str, str]] = ()
                 ) -> None:
  """results.csv (mean and std columns) and results.md (mean ± std, then the failed and the
  diverged points in their own sections)."""
  cols = fields + ['seeds'] + metrics
  with open(os.path.join(workdir, 'results.csv'), 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(fields + ['seeds', 'failed', 'diverged'] +
               [f'{m}_{s}' for m in metrics for s in ('mean', 'std')])
    for r in rows:
      w.writerow([r[k] for k in fields] + [r['seeds'], r['failed'], r.get('diverged', 0)] +
                 [x for m in metrics for x in ((r[m][0], r[m][1]) if r[m] else ('', ''))])
  lines = ['| ' + ' | '.join(cols) + ' |', '|' + '---|' * len(cols)]
  for r in rows:
    lines.append('| ' + ' | '.join([str(r[k]) for k in fields] + [_seeds_cell(r)] +
                                   [_fmt(r[m]) for m in metrics]) + ' |')
  lines.append('')
  lines.append('Values are mean ± standard deviation over seeds (numpy std, ddof=0); failed and '
               'diverged points are not in them.')
  if failures:
    lines += ['', '## Failed points', ''] + [f'- `{n}`: {e}' for n, e in failures]
  if diverged:
    lines += ['', '## Diverged points', ''] + [f'- `{n}`: {e}' for n, e in diverged]
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def _lost(row: dict) -> str:
  """'1 failed, 2 diverged': the row's points without a result ('' when none)."""
  return ', '.join(f'{row[k]} {k}' for k in ('failed', 'diverged') if row.get(k))


def _seeds_cell(row: dict) -> str:
  """'2', or '1 (1 failed)' / '0 (2 diverged)' when some seeds of the row gave no result."""
  return str(row['seeds']) + (f' ({_lost(row)})' if _lost(row) else '')


def plot(workdir: str, fields: list[str], metric: str, rows: list[dict]) -> str | None:
  """Bar chart of one metric's mean ± std per configuration, configurations without a result
  marked as such: results_<metric>.png (150 dpi). Returns its path; None when no row has the
  metric."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  if not any(r.get(metric) for r in rows):
    return None
  labels = [', '.join(f'{k}={r[k]}' for k in fields) or 'all' for r in rows]
  x = [i for i, r in enumerate(rows) if r.get(metric)]
  means, stds = [rows[i][metric][0] for i in x], [rows[i][metric][1] for i in x]
  fig, ax = plt.subplots(figsize=(max(4.5, 1.1 * len(rows) + 1.5), 4))
  bars = ax.bar(x, means, yerr=stds, width=0.6, capsize=4, color='#7b3294')
  ax.bar_label(bars, [f'{m:.3g} ± {s:.2g}' for m, s in zip(means, stds)], padding=3, fontsize=8)
  for i, r in enumerate(rows):
    if not r.get(metric):
      ax.annotate('\n'.join(['no result', _lost(r)]).strip(), (i, 0), xytext=(0, 4),
                  textcoords='offset points', ha='center', va='bottom', fontsize=8, color='#b2182b')
  tilt = len(rows) > 2 or max(map(len, labels)) > 30
  ax.set_xticks(range(len(rows)), labels, rotation=30 if tilt else 0,
                ha='right' if tilt else 'center', fontsize=8)
  ax.set_xlim(-0.6, len(rows) - 0.4)
  ax.set_ylabel(f'{metric} (mean ± std)')
  seeds = '/'.join(map(str, sorted({rows[i][metric][2] for i in x})))
  ax.set_title(f'{metric}: mean ± std over {seeds} seed(s)', fontsize=10)
  ax.margins(y=0.15)
  fig.tight_layout()
  path = os.path.join(workdir, f'results_{re.sub(r"[^A-Za-z0-9._-]", "_", metric)}.png')
  save_figure(path, fig)
  plt.close(fig)
  return path
