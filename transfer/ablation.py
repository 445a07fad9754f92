"""Modes x seeds ablation: one `transfer.train` run each, then a table and a bar plot.

The ablation workdir holds config.json, metrics.jsonl (one row per finished
run), summary.json, results.md, results.csv, images/ablation.png, the cached
pretraining source (`pretrain/`), shared backbone features (`features/`) and
one workdir per run under `runs/MODE-seedS/`. Runs keep no checkpoints; a
rerun skips every run whose summary.json is complete, so an interrupted
ablation resumes at run granularity.

`ablation.archs` compares backbones: every arch x mode x seed, each arch with
its own pretraining source (`pretrain/ARCH/`) and runs (`runs/ARCH/...`), at
`data.image_size` or the arch's smallest input if that is larger (InceptionV3:
75 px), in one table and plot. `ablation.per_arch` sets keys for one arch only (a
recipe a backbone needs, such as its source's learning rate); results.md lists them.
With a validation split (`data.val_fraction`) every run's test accuracy is that of
its validation-selected weights.
"""
from __future__ import annotations

import csv
import os
import time

import jax
import ml_collections
import numpy as np

from common import distributed
from common import rng as rng_lib
from common.errors import UserError, unknown_name
from common.loop import prepare
from common.writers import MetricWriter, save_figure
from transfer import data as data_lib
from transfer import features, freeze, loop, models, pretrain
from transfer import weights as weights_lib

LINEAR_PROBE = 'linear_probe'
ABLATION_MODES = (*freeze.MODES, LINEAR_PROBE)


def run_config(config: ml_collections.ConfigDict, mode: str, seed: int, weights: str,
               features_dir: str) -> ml_collections.ConfigDict:
  """The single-run config of one (mode, seed) cell."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.mode = mode
  c.seed = seed
  c.model.weights = '' if mode == 'scratch' else weights
  c.features.dir = features_dir
  c.train.checkpoint = False  # one ablation keeps tens of runs; each is minutes at most
  c.ablation.modes = ()
  c.pretrain.dir = ''
  return c


def validate(config: ml_collections.ConfigDict) -> None:
  if config.mode not in freeze.MODES:  # each run sets its own; a typo is still a typo
    raise unknown_name('mode', config.mode, freeze.MODES)
  a = config.ablation
  for mode in a.modes:
    if mode not in ABLATION_MODES:
      raise unknown_name('ablation mode', mode, ABLATION_MODES)
  if len(set(a.modes)) != len(a.modes):
    raise UserError(f'ablation.modes {list(a.modes)} repeats a mode; list each once')
  if a.seeds < 1:
    raise UserError(f'ablation.seeds must be at least 1, got {a.seeds}')
  if a.archs and config.model.weights not in ('', weights_lib.PRETRAIN):
    raise UserError('ablation.archs compares backbones each from its own source model; set '
                    "model.weights='pretrain' (or '' for random init), not one weights file")
  for arch in a.archs:
    models.family(arch)
  _check_per_arch(config)
  for arch in a.archs or (config.model.arch,):
    cfg = arch_config(config, arch, '') if a.archs else config
    for mode in a.modes:
      if mode != LINEAR_PROBE:
        loop.validate(run_config(cfg, mode, config.seed, config.model.weights or '', ''))


def _linear_probe(config: ml_collections.ConfigDict, weights: str, style: str) -> dict:
  """scikit-learn logistic regression on the frozen backbone's cached features."""
  data = data_lib.load_data(config.data, seed=config.seed)
  model = models.model_for(config, data.num_classes)
  variables = weights_lib.init_variables(model, config, weights,
                                   rng_lib.stream(rng_lib.root_key(config.seed), 'init'))
  key = weights_lib.feature_key(weights, style, config.seed) + loop.features_tag(model)
  t0 = time.perf_counter()
  tr = features.cached_features(config.features.dir, f'{data.train_key}-{key}', model, variables,
                                style, data.train, config.data.eval_batch_size)
  te = features.cached_features(config.features.dir, f'{data.test_key}-{key}', model, variables,
                                style, data.test, config.data.eval_batch_size)
  out = features.linear_probe(*tr, *te)
  return {'mode': LINEAR_PROBE, 'seed': config.seed, 'top1': out['top1'],
          'train_seconds': time.perf_counter() - t0}


def _stats(values: list[float]) -> tuple[float, float]:
  v = np.asarray(values, float)
  return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def aggregate(rows: list[dict], modes: list[str]) -> list[dict]:
  """Per (arch and) mode: n, top-1 (and top-5 where runs report it) mean and std over seeds,
  and the gap to scratch paired by seed.

  Runs report top-5 only with more than 5 classes (transfer.evaluate); without it the table
  has no top-5 columns at all, and a mode without it (the linear probe) gets NaN there.
  """
  archs = list(dict.fromkeys(r['arch'] for r in rows)) if rows and 'arch' in rows[0] else [None]
  with_top5 = any(r.get('top5') is not None for r in rows)
  out = []
  for arch in archs:
    mine_arch = [r for r in rows if r.get('arch') == arch]
    scratch = {r['seed']: r['top1'] for r in mine_arch if r['mode'] == 'scratch'}
    for mode in modes:
      mine = [r for r in mine_arch if r['mode'] == mode]
      if not mine:
        continue
      top1, top1_std = _stats([r['top1'] for r in mine])
      row = {'mode': mode, 'n_seeds': len(mine), 'top1_mean': top1, 'top1_std': top1_std}
      if arch is not None:
        row = {'arch': arch, **row}
      if with_top5:
        top5 = [r['top5'] for r in mine if r.get('top5') is not None]
        row['top5_mean'], row['top5_std'] = _stats(top5) if top5 else (float('nan'),) * 2
      gaps = [r['top1'] - scratch[r['seed']] for r in mine if r['seed'] in scratch]
      gap, gap_std = (_stats(gaps) if gaps and mode != 'scratch'
                      else (float('nan'), float('nan')))
      out.append({**row, 'gap_vs_scratch_mean': gap, 'gap_vs_scratch_std': gap_std,
                  'train_seconds_mean': float(np.mean([r['train_seconds'] for r in mine]))})
  return out


def _pct(mean: float, std: float) -> str:
  return '–' if not np.isfinite(mean) else f'{100 * mean:.1f} ± {100 * std:.1f}'


def write_results(workdir: str, table: list[dict], config: ml_collections.ConfigDict,
                  wall_seconds: float) -> None:
  """results.csv, results.md and images/ablation.png."""
  with open(os.path.join(workdir, 'results.csv'), 'w', newline='') as f:
    w = csv.DictWriter(f, fieldnames=list(table[0]))
    w.writeheader()
    for row in table:
      w.writerow({k: (f'{v:.6g}' if isinstance(v, float) else v) for k, v in row.items()})
  d = config.data
  top5 = 'top5_mean' in table[0]
  by_arch = 'arch' in table[0]
  accuracy = 'top-1 / top-5' if top5 else 'top-1'
  val_fraction = d.get('val_fraction', 0.0)
  selected = (f' of the weights selected on the validation split ({val_fraction:g} of each '
              'class)' if val_fraction else '')
  archs = _archs(table, config)
  lines = [
      f'# Transfer ablation: {archs} ({config.model.style}) on {d.name}'
      + (f' {d.classes}' if d.name == 'digits' else ''),
      '',
      f'Weights: `{config.model.weights or "random init"}`; '
      f'{d.train_per_class or "all"} labelled examples per class; {accuracy} test accuracy'
      f'{selected} in %, mean ± std over seeds; gap = mode minus scratch, paired by seed.',
      '',
      ('| arch ' if by_arch else '') + '| mode | n seeds | top-1 |' + (' top-5 |' if top5 else '')
      + ' gap vs scratch (top-1) | train s / run |',
      ('|---' if by_arch else '') + '|---|---|---|' + ('---|' if top5 else '') + '---|---|',
  ]
  for r in table:
    cells = ([r['arch']] if by_arch else []) + [r['mode'], str(r['n_seeds']),
                                                _pct(r['top1_mean'], r['top1_std'])]
    if top5:
      cells.append(_pct(r['top5_mean'], r['top5_std']))
    cells += [_pct(r['gap_vs_scratch_mean'], r['gap_vs_scratch_std']),
              f'{r["train_seconds_mean"]:.1f}']
    lines.append('| ' + ' | '.join(cells) + ' |')
  settings = {arch: per_arch_settings(config, arch)
              for arch in dict.fromkeys(r['arch'] for r in table)} if by_arch else {}
  if any(settings.values()):
    lines += ['', 'Per-arch settings (all else as the config): ' + '; '.join(
        f'{arch}: ' + ', '.join(f'`{k}={v!r}`' for k, v in kv)
        for arch, kv in settings.items() if kv) + '.']
  lines += ['', f'Wall time of this invocation: {wall_seconds:.0f} s '
            f'({jax.devices()[0].platform}, {jax.device_count()} device(s)).', '']
  with open(os.path.join(workdir, 'results.md'), 'w') as f:
    f.write('\n'.join(lines))
  _bar_plot(os.path.join(workdir, 'images', 'ablation.png'), table, config)


def _archs(table: list[dict], config: ml_collections.ConfigDict) -> str:
  if 'arch' not in table[0]:
    return config.model.arch
  return ', '.join(dict.fromkeys(r['arch'] for r in table))


def _bar_plot(path: str, table: list[dict], config: ml_collections.ConfigDict) -> None:
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  modes = [r['mode'] for r in table]
  labels = [(f'{r["arch"]}\n' if 'arch' in r else '') + r['mode'].replace('_', '\n')
            for r in table]
  means = [100 * r['top1_mean'] for r in table]
  stds = [100 * r['top1_std'] for r in table]
  fig, ax = plt.subplots(figsize=(1.6 * len(modes) + 2, 4))
  colors = ['#999999' if m == 'scratch' else '#3572b0' for m in modes]
  ax.bar(range(len(modes)), means, yerr=stds, capsize=6, color=colors)
  for i, (m, s) in enumerate(zip(means, stds)):
    ax.text(i, m + s + 1, f'{m:.1f}', ha='center', va='bottom', fontsize=9)
  ax.set_xticks(range(len(modes)), labels, fontsize=8 if 'arch' in table[0] else None)
  ax.set_ylabel('test top-1 accuracy (%)')
  ax.set_ylim(0, 110)
  n = max(r['n_seeds'] for r in table)
  archs = _archs(table, config)
  ax.set_title(f'{archs} on {config.data.name}: mean ± std over {n} seeds')
  fig.tight_layout()
  save_figure(path, fig)
  plt.close(fig)


# Keys ablation.per_arch may not set: they define the comparison itself.
_NOT_PER_ARCH = ('seed', 'mode', 'model.arch', 'model.weights', 'pretrain.dir', 'features.dir')


def _check_per_arch(config: ml_collections.ConfigDict) -> None:
  a = config.ablation
  if not isinstance(a.per_arch, (list, tuple)):
    raise UserError(f'ablation.per_arch must be (arch, key, value) triples, got {a.per_arch!r}')
  for entry in a.per_arch:
    if not (isinstance(entry, (list, tuple)) and len(entry) == 3
            and all(isinstance(x, str) for x in entry[:2])):
      raise UserError(f"ablation.per_arch entries must be (arch, key, value) triples such as "
                      f"('inception_v3', 'pretrain.lr', 1e-3), got {entry!r}")
    arch, key, _ = entry
    if arch not in a.archs:
      raise UserError(f'ablation.per_arch names {arch!r}, which is not in ablation.archs '
                      f'{list(a.archs)}; add it there or drop the entry')
    if key in _NOT_PER_ARCH or key.startswith('ablation.'):
      raise UserError(f'ablation.per_arch cannot set {key}: it is set for every arch by the '
                      'ablation itself')
  # The key and value are checked where they are set: arch_config, which validate runs per arch.


def _set_key(c: ml_collections.ConfigDict, key: str, value) -> None:
  """c[key] = value for a dotted `key` that exists in `c`, with the key's type."""
  *parents, leaf = key.split('.')
  node = c
  for part in parents:
    node = node.get(part) if isinstance(node, ml_collections.ConfigDict) else None
  if not isinstance(node, ml_collections.ConfigDict) or leaf not in node:
    raise UserError(f'ablation.per_arch: the config has no key {key!r}')
  if isinstance(node[leaf], ml_collections.ConfigDict):
    raise UserError(f'ablation.per_arch: {key!r} is a group of keys; name one of them')
  if isinstance(node[leaf], tuple) and isinstance(value, list):
    value = tuple(value)  # config.json stores tuples as lists
  try:
    node[leaf] = value
  except TypeError:
    raise UserError(f'ablation.per_arch: {key} takes type {type(node[leaf]).__name__}, got '
                    f'{value!r}') from None


def per_arch_settings(config: ml_collections.ConfigDict, arch: str) -> list[tuple[str, object]]:
  """(key, value) of every `ablation.per_arch` entry for `arch`, in order."""
  return [(key, value) for a, key, value in config.ablation.get('per_arch', ()) if a == arch]


def arch_config(config: ml_collections.ConfigDict, arch: str, workdir: str
                ) -> ml_collections.ConfigDict:
  """The ablation of one arch of `ablation.archs`: its own source model and input size, and
  its `ablation.per_arch` settings."""
  c = ml_collections.ConfigDict(config.to_dict())
  c.model.arch = arch
  c.data.image_size = max(config.data.image_size, models.family(arch).min_size)
  c.pretrain.dir = os.path.join(config.pretrain.dir or os.path.join(workdir, 'pretrain'), arch)
  for key, value in per_arch_settings(config, arch):
    _set_key(c, key, value)
  c.ablation.archs = ()
  c.ablation.per_arch = ()
  return c


def _arch_rows(config: ml_collections.ConfigDict, workdir: str, runs_dir: str, tag: dict
               ) -> tuple[list[dict], str]:
  """Every (mode, seed) row of one arch, and the source weights they started from."""
  source = run_config(config, 'fine_tune', config.seed, config.model.weights, '')
  source.pretrain.dir = config.pretrain.dir  # per arch with ablation.archs
  weights, style = weights_lib.resolve_weights(source, pretrain.source_weights(source, workdir))
  features_dir = config.features.dir or os.path.join(workdir, 'features')
  rows = []
  for seed in [config.seed + i for i in range(config.ablation.seeds)]:
    for mode in config.ablation.modes:
      cell = run_config(config, mode, seed, weights, features_dir)
      if mode == LINEAR_PROBE:
        rows.append({**tag, **_linear_probe(cell, weights, style)})
      else:
        summary, _ = loop.run(cell, os.path.join(runs_dir, f'{mode}-seed{seed}'))
        rows.append({**tag, 'mode': mode, 'seed': seed, 'top1': summary['top1'],
                     'train_seconds': summary['train_seconds']})
        if summary.get('top5') is not None:  # only with more than 5 classes
          rows[-1]['top5'] = summary['top5']
      if distributed.is_main():
        name = f'{tag["arch"]} {mode}' if tag else mode
        print(f'{name:>30s} seed {seed}: top-1 {100 * rows[-1]["top1"]:.1f}%', flush=True)
  return rows, weights


def run_ablation(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Every (arch,) mode and seed of `config.ablation`; writes the results files; returns the
  summary."""
  validate(config)
  prepare(workdir, config)
  t0 = time.perf_counter()
  rows, sources = [], {}
  for arch in config.ablation.archs:
    arch_rows, sources[arch] = _arch_rows(arch_config(config, arch, workdir), workdir,
                                          os.path.join(workdir, 'runs', arch), {'arch': arch})
    rows += arch_rows
  if not config.ablation.archs:
    rows, weights = _arch_rows(config, workdir, os.path.join(workdir, 'runs'), {})
  wall = time.perf_counter() - t0
  writer = MetricWriter(workdir, enabled=distributed.is_main())
  for i, r in enumerate(rows, start=1):
    writer.write(i, r)
  table = aggregate(rows, list(config.ablation.modes))
  if distributed.is_main():
    write_results(workdir, table, config, wall)
  summary = {'step': len(rows), 'seeds': [config.seed + i for i in range(config.ablation.seeds)],
             'wall_seconds': wall}
  summary.update({'sources': sources} if sources else {'weights': weights})
  for r in table:
    name = f'{r["arch"]}_{r["mode"]}' if 'arch' in r else r['mode']
    summary[f'{name}_top1_mean'], summary[f'{name}_top1_std'] = r['top1_mean'], r['top1_std']
    if r['mode'] != 'scratch':
      summary[f'{name}_gap_vs_scratch_mean'] = r['gap_vs_scratch_mean']
      summary[f'{name}_gap_vs_scratch_std'] = r['gap_vs_scratch_std']
  writer.write_summary(summary)
  writer.close()
  return summary
