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


def _backbones(per_arch):
  from common.config import load_config
  c = load_config('transfer/configs/digits.py:backbones')
  c.ablation.per_arch = per_arch
  return c


def test_per_arch_settings_reach_only_their_arch():
  c = _backbones((('inception_v3', 'pretrain.lr', 1e-3), ('inception_v3', 'train.epochs', 7),
                  ('vgg16', 'data.augment', True)))
  ablation.validate(c)
  inc, vgg, res = (ablation.arch_config(c, a, 'w') for a in ('inception_v3', 'vgg16', 'resnet18'))
  assert (inc.pretrain.lr, inc.train.epochs, inc.data.augment) == (1e-3, 7, False)
  assert (vgg.pretrain.lr, vgg.train.epochs, vgg.data.augment) == (c.pretrain.lr, 15, True)
  assert (res.pretrain.lr, res.train.epochs, res.data.augment) == (c.pretrain.lr, 15, False)
  assert inc.ablation.per_arch == () and c.ablation.per_arch[0][0] == 'inception_v3'


def test_pretrain_optimizer_changes_only_the_source_run():
  from transfer.validation import pretrain_config
  c = _backbones((('vgg16', 'pretrain.optimizer', 'sgd'), ('vgg16', 'pretrain.lr', 1e-2)))
  ablation.validate(c)
  vgg, res = (ablation.arch_config(c, a, 'w') for a in ('vgg16', 'resnet18'))
  assert (vgg.optim.name, vgg.optim.lr) == ('adamw', 3e-4)  # the target runs keep theirs
  assert (pretrain_config(vgg).optim.name, pretrain_config(vgg).optim.lr) == ('sgd', 1e-2)
  assert pretrain_config(res).optim.name == 'adamw'  # '' is optim.name's
  res.optim.name = 'sgd'
  assert pretrain_config(res).optim.name == 'sgd'


def test_unknown_pretrain_optimizer_is_named():
  from common.errors import UserError
  c = _backbones((('vgg16', 'pretrain.optimizer', 'rmsprop'),))
  with pytest.raises(UserError, match="unknown pretrain.optimizer 'rmsprop'; choose one of: "
                                      "adam, adamw, sgd, or '' for optim.name's"):
    ablation.validate(c)


@pytest.mark.parametrize('entry, message', [
    (('vgg19', 'pretrain.lr', 1e-3), "names 'vgg19', which is not in ablation.archs"),
    (('vgg16', 'pretrain.lrr', 1e-3), "the config has no key 'pretrain.lrr'"),
    (('vgg16', 'pretrain.epochs', 2.5), 'pretrain.epochs takes type int, got 2.5'),
    (('vgg16', 'pretrain', 1), "'pretrain' is a group of keys"),
    (('vgg16', 'model.arch', 'vgg19'), 'cannot set model.arch'),
    (('vgg16', 'ablation.seeds', 2), 'cannot set ablation.seeds'),
    (('vgg16', 'pretrain.lr'), 'must be (arch, key, value) triples'),
    (('vgg16', 'pretrain.epochs', 0), 'pretrain.epochs'),  # in range only for the arch's runs
])
def test_bad_per_arch_entries_are_named(entry, message):
  from common.errors import UserError
  with pytest.raises(UserError) as e:
    ablation.validate(_backbones((entry,)))
  assert message in str(e.value) and '\n' not in str(e.value)


def test_results_list_the_per_arch_settings(tmp_path):
  c = _backbones((('inception_v3', 'pretrain.lr', 1e-3), ('vgg16', 'pretrain.epochs', 9),
                  ('inception_v3', 'pretrain.epochs', 30)))
  rows = [{'arch': a, **r} for a in ('vgg16', 'inception_v3') for r in _rows(False)
          if r['mode'] != ablation.LINEAR_PROBE]
  ablation.write_results(str(tmp_path), ablation.aggregate(rows, ['scratch', 'fine_tune']), c, 1.0)
  text = (tmp_path / 'results.md').read_text()
  assert ('Per-arch settings (all else as the config): vgg16: `pretrain.epochs=9`; inception_v3: '
          '`pretrain.lr=0.001`, `pretrain.epochs=30`.') in text
