"""Sweeps: SPEC parsing, the grid, skip on rerun, failed points, the mean ± std table, and a
sweep killed mid-way picking up where it stopped."""
import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import launch.sweep
from common import cli, sweep
from common.errors import UserError
from common.writers import read_metrics

TOY = 'gan/configs/toy2d.py:ring8,quick'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
  # optim.g_lr=-1 fails validation in its own process; the other points still run.
  spec = 'optim.g_lr=0.001,-1 seed=0:2'
  argv = ['launch.sweep', f'--config={TOY}', f'--workdir={wd}', f'--sweep={spec}', '--parallel=2',
          '--metrics=modes,high_quality']
  launch.sweep.main(argv)
  out = capsys.readouterr().out
  assert '4 points: 2 ran, 0 skipped (finished before), 2 failed' in out
  assert 'optim.g_lr must be positive' in out
  table = open(os.path.join(wd, 'results.md')).read()
  assert '| optim.g_lr | seeds | modes | high_quality |' in table and '## Failed points' in table
  rows = list(csv.DictReader(open(os.path.join(wd, 'results.csv'))))
  ok = [r for r in rows if r['optim.g_lr'] == '0.001'][0]
  summaries = [json.load(open(os.path.join(wd, 'points', f'optim.g_lr-0.001__seed-{s}', 'summary.json')))
               for s in (0, 1)]
  assert float(ok['modes_mean']) == pytest.approx(sum(s['modes'] for s in summaries) / 2)
  assert ok['seeds'] == '2' and ok['failed'] == '0'
  assert os.path.exists(os.path.join(wd, 'results_modes.png'))
  mtimes = {s: os.path.getmtime(os.path.join(wd, 'points', f'optim.g_lr-0.001__seed-{s}', 'summary.json'))
            for s in (0, 1)}
  launch.sweep.main(argv)
  assert '4 points: 0 ran, 2 skipped' in capsys.readouterr().out
  for s, t in mtimes.items():
    assert os.path.getmtime(os.path.join(wd, 'points', f'optim.g_lr-0.001__seed-{s}', 'summary.json')) == t
  with pytest.raises(UserError, match='different sweep'):
    sweep.run_sweep(TOY, wd, 'seed=0:3')


def test_cli_bad_sweep_exits_2(tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    cli.main_guard(lambda: launch.sweep.main(['launch.sweep', f'--config={TOY}',
                                              f'--workdir={tmp_path}/s', '--sweep=']))
  assert e.value.code == 2
  assert capsys.readouterr().err.count('\n') == 1


def _files(root: str) -> dict[str, tuple[bytes, int]]:
  """Every file under `root`: (contents, mtime in ns), by relative path."""
  out = {}
  for d, _, names in os.walk(root):
    for n in names:
      path = os.path.join(d, n)
      with open(path, 'rb') as f:
        out[os.path.relpath(path, root)] = (f.read(), os.stat(path).st_mtime_ns)
  return out


@pytest.mark.slow
def test_killed_sweep_reruns_only_what_did_not_finish(tmp_path):
  """SIGKILL a whole sweep (its process group) once a point has finished and the next has a
  checkpoint; the rerun skips finished points untouched, resumes the interrupted one from its
  checkpoint, runs the rest, and tables every point."""
  wd = str(tmp_path / 'sweep')
  spec = 'loss.name=ns,hinge seed=0:2'
  cmd = [sys.executable, '-m', 'launch.sweep', f'--config={TOY}', f'--workdir={wd}',
         f'--sweep={spec}', '--parallel=1', '--metrics=modes,high_quality']
  env = {**os.environ, 'JAX_PLATFORMS': 'cpu'}
  env.pop('XLA_FLAGS', None)
  names = [sweep.point_name(p) for p in sweep.grid(sweep.parse_spec(spec))]
  dirs = {n: os.path.join(wd, 'points', n) for n in names}
  finished = lambda: [n for n in names if os.path.exists(os.path.join(dirs[n], 'summary.json'))]
  checkpointed = lambda: [n for n in names if n not in finished()
                          and os.path.isdir(os.path.join(dirs[n], 'checkpoints', '100'))]
  with open(tmp_path / 'first.log', 'w') as log:
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
      deadline = time.monotonic() + 900
      while not (finished() and checkpointed()):
        assert proc.poll() is None, 'the sweep ended before it could be interrupted'
        assert time.monotonic() < deadline, 'no point finished in time'
        time.sleep(0.2)
    finally:
      os.killpg(proc.pid, signal.SIGKILL)  # the sweep and the point it is running
      proc.wait()
  done, interrupted = finished(), checkpointed()
  assert 1 <= len(done) < len(names) and len(interrupted) == 1
  before = {n: _files(dirs[n]) for n in done}
  resumed = interrupted[0]
  ckpt_100 = _files(os.path.join(dirs[resumed], 'checkpoints', '100'))
  early_rows = [r for r in read_metrics(dirs[resumed]) if r['step'] <= 100]
  assert early_rows

  rerun = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
  assert rerun.returncode == 0, rerun.stderr[-3000:]
  assert (f'{len(names)} points: {len(names) - len(done)} ran, {len(done)} skipped '
          '(finished before), 0 failed') in rerun.stdout
  for n in done:  # not rerun: every file byte-for-byte, with its old mtime
    assert _files(dirs[n]) == before[n], n
  # Resumed from its checkpoint, not started over: checkpoint 100 and the rows up to it stay.
  assert _files(os.path.join(dirs[resumed], 'checkpoints', '100')) == ckpt_100
  assert [r for r in read_metrics(dirs[resumed]) if r['step'] <= 100] == early_rows
  summaries = {n: json.load(open(os.path.join(dirs[n], 'summary.json'))) for n in names}
  assert all(s['step'] == 200 for s in summaries.values())
  rows = list(csv.DictReader(open(os.path.join(wd, 'results.csv'))))
  assert sorted(r['loss.name'] for r in rows) == ['hinge', 'ns']
  for r in rows:
    assert r['seeds'] == '2' and r['failed'] == '0'
    mine = [s['modes'] for n, s in summaries.items() if n.startswith(f'loss.name-{r["loss.name"]}__')]
    assert len(mine) == 2 and float(r['modes_mean']) == pytest.approx(np.mean(mine))
  table = open(os.path.join(wd, 'results.md')).read()
  assert '| ns | 2 |' in table and '| hinge | 2 |' in table and 'Failed points' not in table
