"""The ablation's table: top-5 only where runs report it (more than 5 classes)."""
import csv

import ml_collections
import numpy as np
import pytest
from PIL import Image

from transfer import ablation


def _config():
  return ml_collections.ConfigDict({
      'model': {'arch': 'resnet18', 'style': 'torchvision', 'weights': 'w'},
      'data': {'name': 'digits', 'classes': '5-9', 'train_per_class': 5}})


def _rows(with_top5):
  rows = []
  for seed in (1, 2):
    for mode, top1 in (('scratch', 0.5), ('fine_tune', 0.8)):
      row = {'mode': mode, 'seed': seed, 'top1': top1 + 0.01 * seed, 'train_seconds': 2.0}
      if with_top5:
        row['top5'] = 0.9
      rows.append(row)
    rows.append({'mode': ablation.LINEAR_PROBE, 'seed': seed, 'top1': 0.7, 'train_seconds': 1.0})
  return rows


def _results(tmp_path, with_top5):
  modes = ['scratch', 'fine_tune', ablation.LINEAR_PROBE]
  table = ablation.aggregate(_rows(with_top5), modes)
  ablation.write_results(str(tmp_path), table, _config(), wall_seconds=1.0)
  lines = (tmp_path / 'results.md').read_text().splitlines()
  with open(tmp_path / 'results.csv') as f:
    columns = next(csv.reader(f))
  return table, [l for l in lines if l.startswith('|')], lines, columns


def test_no_top5_column_with_5_or_fewer_classes(tmp_path):
  table, rows, lines, columns = _results(tmp_path, with_top5=False)
  assert all('top5_mean' not in r for r in table)
  assert rows[0] == '| mode | n seeds | top-1 | gap vs scratch (top-1) | train s / run |'
  assert rows[1] == '|---|---|---|---|---|'
  assert rows[3].startswith('| fine_tune | 2 | 81.5 ± 0.7 | 30.0 ± 0.0 |')
  assert all(l.count('|') == 6 for l in rows)
  assert not any('top-5' in l or '100.0 ± 0.0' in l for l in lines)
  assert 'top5_mean' not in columns and 'top1_mean' in columns


def test_top5_column_where_runs_report_it(tmp_path):
  table, rows, _, columns = _results(tmp_path, with_top5=True)
  assert rows[0] == ('| mode | n seeds | top-1 | top-5 | gap vs scratch (top-1) | '
                     'train s / run |')
  assert rows[3].startswith('| fine_tune | 2 | 81.5 ± 0.7 | 90.0 ± 0.0 |')
  assert rows[4].startswith(f'| {ablation.LINEAR_PROBE} | 2 | 70.0 ± 0.0 | – |')
  assert np.isnan(table[2]['top5_mean'])
  assert 'top5_mean' in columns


def test_bar_plot_is_saved_at_150_dpi(tmp_path):
  _results(tmp_path, with_top5=False)
  dpi = Image.open(tmp_path / 'images' / 'ablation.png').info['dpi']
  assert min(dpi) == pytest.approx(150, abs=1)
