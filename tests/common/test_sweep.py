"""Sweeps: SPEC parsing, the grid, skip on rerun, failed points, the mean ± std table."""
import csv
import json
import os
import sys

import pytest

import launch.sweep
from common import cli, sweep
from common.errors import UserError

TOY = 'gan/configs/toy2d.py:ring8,quick'


def test_parse_spec_values_and_ranges():
  terms = sweep.parse_spec('loss.name=ns,hinge  train.n_d=1,5 seed=0:3')
  assert terms == [('loss.name', ['ns', 'hinge']), ('train.n_d', ['1', '5']), ('seed', ['0', '1', '2'])]
  points = sweep.grid(terms)
  assert len(points) == 12 and points[0] == {'loss.name': 'ns', 'train.n_d': '1', 'seed': '0'}
  assert sweep.point_name(points[-1]) == 'loss.name-hinge__train.n_d-5__seed-2'


@pytest.mark.parametrize('spec,match', [
    ('', 'empty'), ('seed=3:3', 'no values'), ('seed', 'is not FIELD'), ('=1', 'is not FIELD'),
    ('seed=0:2 seed=4', 'appears twice'),
])
def test_bad_specs(spec, match):
  with pytest.raises(UserError, match=match):
    sweep.grid(sweep.parse_spec(spec))


@pytest.mark.parametrize('spec,match', [
    ('train.nd=1,2', 'unknown config key'), ('train.n_d=one', 'train.n_d=one is invalid.*invalid literal'),
])
def test_unknown_field_and_wrong_type_are_refused_before_running(tmp_path, spec, match):
  with pytest.raises(UserError, match=match):
    sweep.run_sweep(TOY, str(tmp_path / 's'), spec)
  assert not os.path.exists(tmp_path / 's' / 'points')


def test_summarise_mean_std_over_seeds():
  points = sweep.grid(sweep.parse_spec('loss.name=a,b seed=0:2'))
  outcomes = [{'status': 'ran', 'summary': {'modes': m, 'step': 5}} for m in (8, 6, 4, 4)]
  metrics, rows = sweep.summarise(points, outcomes, None)
  assert metrics == ['modes']
  assert rows[0]['loss.name'] == 'a' and rows[0]['modes'] == (7.0, 1.0, 2) and rows[0]['seeds'] == 2
  assert rows[1]['modes'] == (4.0, 0.0, 2)


@pytest.mark.slow
def test_sweep_runs_skips_on_rerun_and_lists_failures(tmp_path, capsys):
  wd = str(tmp_path / 'sweep')
  # train.g_lr=-1 fails validation in its own process; the other points still run.
  spec = 'train.g_lr=0.001,-1 seed=0:2'
  argv = ['launch.sweep', f'--config={TOY}', f'--workdir={wd}', f'--sweep={spec}', '--parallel=2',
          '--metrics=modes,high_quality']
  launch.sweep.main(argv)
  out = capsys.readouterr().out
  assert '4 points: 2 ran, 0 skipped (finished before), 2 failed' in out
  assert 'train.g_lr must be positive' in out
  table = open(os.path.join(wd, 'results.md')).read()
  assert '| train.g_lr | seeds | modes | high_quality |' in table and '## Failed points' in table
  rows = list(csv.DictReader(open(os.path.join(wd, 'results.csv'))))
  ok = [r for r in rows if r['train.g_lr'] == '0.001'][0]
  summaries = [json.load(open(os.path.join(wd, 'points', f'train.g_lr-0.001__seed-{s}', 'summary.json')))
               for s in (0, 1)]
  assert float(ok['modes_mean']) == pytest.approx(sum(s['modes'] for s in summaries) / 2)
  assert ok['seeds'] == '2' and ok['failed'] == '0'
  assert os.path.exists(os.path.join(wd, 'results_modes.png'))
  mtimes = {s: os.path.getmtime(os.path.join(wd, 'points', f'train.g_lr-0.001__seed-{s}', 'summary.json'))
            for s in (0, 1)}
  launch.sweep.main(argv)
  assert '4 points: 0 ran, 2 skipped' in capsys.readouterr().out
  for s, t in mtimes.items():
    assert os.path.getmtime(os.path.join(wd, 'points', f'train.g_lr-0.001__seed-{s}', 'summary.json')) == t
  with pytest.raises(UserError, match='different sweep'):
    sweep.run_sweep(TOY, wd, 'seed=0:3')


def test_cli_bad_sweep_exits_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main_guard(lambda: launch.sweep.main(['launch.sweep', f'--config={TOY}',
                                              f'--workdir={tmp_path}/s', '--sweep=']))
  assert e.value.code == 2
  assert capsys.readouterr().err.count('\n') == 1
