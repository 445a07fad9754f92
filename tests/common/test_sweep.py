"""Sweeps: SPEC parsing, the grid, skip on rerun, failed and diverged points, progress lines as
points finish, the exit code, the mean ± std table and a plot per metric, the submitit executors,
--help, and a sweep killed mid-way picking up where it stopped.

Most tests run a stand-in launcher (FAKE, a few lines of Python) in place of launch.gan: the
sweep's own behaviour does not depend on what a point trains, and a real point takes ~30 s here."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import submitit  # noqa: F401
from PIL import Image

import launch.sweep
from common import cli, sweep, sweep_report
from common.errors import UserError
from common.writers import read_metrics

# submitit is imported above, at collection, on purpose: its import reconfigures logging, which
# closes the handlers that exist then (absl's too); inside a test's capsys that closed the
# captured stream.
TOY = 'gan/configs/toy2d.py:ring8,quick'
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# A stand-in for `python -m launch.gan`: optim.g_lr picks what the point does.
FAKE = r"""
import json, os, sys, time
args = dict(a[2:].split('=', 1) for a in sys.argv[1:])
wd, lr, seed = args['workdir'], args['config.optim.g_lr'], int(args.get('config.seed', 0))
def die(msg):
  sys.stderr.write('error: ' + msg + '\n'); sys.exit(2)
if lr == '-1':
  die('optim.g_lr must be positive, got -1.0')
if lr == '9':  # today's TrainingDiverged
  die('a loss became NaN/inf between rounds 0 and 50; lower the learning rates')
if lr == '8':  # the diverged guard: exit 2, no summary
  die('the run diverged at step 30 (loss_d=inf)')
summary = {'step': 20, 'modes': seed + 1, 'high_quality': 0.5 + 0.1 * seed}
if lr == '7':  # the diverged guard: summary.json says so
  summary = {'step': 30, 'diverged': True, 'diverged_reason': 'loss_g is inf at step 30'}
if lr == '0.4':  # runs until SIGTERM, then stops like a real run: a checkpoint, exit 75
  import signal
  def stop(*_):
    open(os.path.join(wd, 'preempted'), 'w').close()
    sys.exit(75)
  signal.signal(signal.SIGTERM, stop)
  open(os.path.join(wd, 'started'), 'w').close()
  while True:
    time.sleep(0.05)
if lr == '0.5':  # waits to be released, so a test can look at the sweep mid-way
  while not os.path.exists(os.path.join(wd, '..', '..', 'release')):
    time.sleep(0.05)
with open(os.path.join(wd, 'summary.json'), 'w') as f:
  json.dump(summary, f)
"""
HELP_FLAGS = ('config', 'workdir', 'sweep', 'parallel', 'metrics', 'executor', 'allow_failures',
              'slurm_partition', 'slurm_time_min', 'slurm_gpus_per_node', 'slurm_cpus_per_task',
              'slurm_mem_gb')


@pytest.fixture
def fake_launcher(tmp_path, monkeypatch):
  """Points run FAKE (module `fakelaunch`, found through PYTHONPATH by every child process)."""
  lib = tmp_path / 'lib'
  lib.mkdir()
  (lib / 'fakelaunch.py').write_text(FAKE)
  monkeypatch.setenv('PYTHONPATH', os.pathsep.join([str(lib), REPO]))
  monkeypatch.setattr(sweep, 'launcher_for', lambda spec: 'fakelaunch')


def _sweep(argv: list[str]) -> int:
  """launch.sweep as the command line runs it: its exit code."""
  try:
    cli.main_guard(lambda: launch.sweep.main(['launch.sweep', *argv]))
  except SystemExit as e:
    return e.code
  return 0


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
  metrics, rows = sweep_report.summarise(points, outcomes, None)
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
  with pytest.raises(SystemExit) as e:  # failed points: exit code 1, after the table is written
    launch.sweep.main(argv)
  assert e.value.code == 1
  out = capsys.readouterr().out
  assert '4 points: 2 ran, 0 skipped (finished before), 2 failed, 0 diverged' in out
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
  with pytest.raises(SystemExit):
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


def test_failed_and_diverged_points_exit_1_after_writing_the_table(tmp_path, capsys,
                                                                   fake_launcher):
  wd = str(tmp_path / 'sweep')
  argv = [f'--config={TOY}', f'--workdir={wd}', '--sweep=optim.g_lr=0.001,-1,9,8,7 seed=0:2',
          '--parallel=2', '--metrics=modes,high_quality']
  assert _sweep(argv) == 1
  out = capsys.readouterr().out.splitlines()
  assert out[-1] == ('exit code 1: 2 failed, 6 diverged '
                     '(rerun to retry them; --allow_failures exits 0)')
  assert any(l.startswith('10 points: 2 ran, 0 skipped (finished before), 2 failed, 6 diverged; '
                          'table in ') for l in out)
  assert '10 of 10 done, 2 failed, 6 diverged' in out
  assert any(l.startswith('[2/10] done optim.g_lr=0.001 seed=1 in ') and
             l.endswith(': modes=2 high_quality=0.6') for l in out)
  assert any(l.startswith('[3/10] FAILED optim.g_lr=-1 seed=0 in ') and
             l.endswith(': exit 2: error: optim.g_lr must be positive, got -1.0') for l in out)
  for i, lr, reason in [(5, 9, 'a loss became NaN/inf'), (7, 8, 'the run diverged at step 30'),
                        (9, 7, 'loss_g is inf at step 30')]:
    assert any(l.startswith(f'[{i}/10] DIVERGED optim.g_lr={lr} seed=0 in ') and
               f': diverged: {reason}' in l for l in out), (i, out)
  rows = {r['optim.g_lr']: r for r in csv.DictReader(open(os.path.join(wd, 'results.csv')))}
  assert (rows['0.001']['seeds'], rows['0.001']['modes_mean']) == ('2', '1.5')
  assert (rows['-1']['failed'], rows['-1']['diverged']) == ('2', '0')
  for lr in ('9', '8', '7'):  # diverged: counted, never averaged
    assert (rows[lr]['seeds'], rows[lr]['diverged'], rows[lr]['modes_mean']) == ('0', '2', '')
  table = open(os.path.join(wd, 'results.md')).read()
  body, diverged = table.split('## Diverged points')
  assert '| 0.001 | 2 | 1.5 ± 0.5 | 0.55 ± 0.05 |' in body
  assert '| 7 | 0 (2 diverged) | — | — |' in body
  assert '## Failed points' in body and 'optim.g_lr--1__seed-0' in body
  assert 'optim.g_lr-7__seed-1`: loss_g is inf at step 30' in diverged
  assert len(diverged.strip().splitlines()) == 6


def test_allow_failures_exits_0_and_a_rerun_reruns_only_the_failed(tmp_path, capsys,
                                                                    fake_launcher):
  wd = str(tmp_path / 'sweep')
  argv = [f'--config={TOY}', f'--workdir={wd}', '--sweep=optim.g_lr=0.001,-1,7 seed=0:1',
          '--allow_failures']
  assert _sweep(argv) == 0
  last = capsys.readouterr().out.splitlines()[-1]
  assert last == '1 failed, 1 diverged; exit code 0 (--allow_failures)'
  assert _sweep(argv) == 0
  out = capsys.readouterr().out
  # Finished points (the diverged one has its summary.json) are skipped; the failed one reruns.
  assert '[1/3] done optim.g_lr=0.001 seed=0 (finished before): high_quality=0.5 modes=1' in out
  assert '[3/3] DIVERGED optim.g_lr=7 seed=0 (finished before): diverged: loss_g is inf' in out
  assert '[2/3] start optim.g_lr=-1 seed=0' in out and '[1/3] start' not in out
  assert '3 points: 0 ran, 1 skipped (finished before), 1 failed, 1 diverged' in out


def _sweep_process(wd, *flags: str) -> subprocess.Popen:
  """`launch.sweep` on the toy config as a child process (pipes for stdout and stderr), its
  points run by the fake launcher. JAX starts first, as a config file may make it."""
  run = ('import sys, jax; jax.devices(); from common import cli, sweep; import launch.sweep; '
         'sweep.launcher_for = lambda spec: "fakelaunch"; '
         'cli.main_guard(lambda: launch.sweep.main(sys.argv))')
  return subprocess.Popen([sys.executable, '-c', run, f'--config={TOY}', f'--workdir={wd}', *flags],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          env={**os.environ, 'JAX_PLATFORMS': 'cpu'})


def test_progress_lines_stream_as_points_finish(tmp_path, fake_launcher):
  """Through a pipe (not a terminal): the first point's row arrives while the second runs."""
  wd = tmp_path / 'sweep'
  proc = _sweep_process(wd, '--sweep=optim.g_lr=0.001,0.5', '--metrics=modes')
  try:
    seen = []
    while not seen or not seen[-1].startswith('1 of 2 done'):
      line = proc.stdout.readline()
      assert line, (seen, proc.stderr.read())
      seen.append(line.rstrip('\n'))
    assert seen[0] == '[1/2] start optim.g_lr=0.001'
    assert seen[1].startswith('[1/2] done optim.g_lr=0.001 in ') and seen[1].endswith(': modes=1')
    assert seen[2:] == ['1 of 2 done, 0 failed, 0 diverged']
    assert proc.poll() is None  # the second point is still waiting
    (wd / 'release').touch()
    rest = proc.stdout.read().splitlines()
  finally:
    (wd / 'release').touch()
    proc.wait(timeout=60)
  assert proc.returncode == 0
  assert rest[0] == '[2/2] start optim.g_lr=0.5' and rest[2] == '2 of 2 done, 0 failed, 0 diverged'
  assert 'os.fork()' not in proc.stderr.read()  # JAX's fork warning does not apply to points


def test_one_plot_per_metric_at_150_dpi(tmp_path, fake_launcher):
  wd = str(tmp_path / 'sweep')
  out = sweep.run_sweep(TOY, wd, 'optim.g_lr=0.001,7 seed=0:2', parallel=2, report=lambda l: None)
  assert sorted(os.path.basename(p) for p in out['plots']) == ['results_high_quality.png',
                                                               'results_modes.png']
  for p in out['plots']:
    with Image.open(p) as im:
      assert im.info['dpi'][0] == pytest.approx(150, abs=1) and im.size[0] >= 600


def test_submitit_local_runs_points_as_jobs_and_skips_them_on_rerun(tmp_path, capsys,
                                                                    fake_launcher):
  wd = str(tmp_path / 'sweep')
  argv = [f'--config={TOY}', f'--workdir={wd}', '--sweep=optim.g_lr=0.001,-1 seed=0:2',
          '--executor=submitit_local', '--parallel=4', '--slurm_gpus_per_node=0']
  assert _sweep(argv) == 1
  out = capsys.readouterr().out
  assert '[1/4] start optim.g_lr=0.001 seed=0 (submitit_local job ' in out
  assert '4 points: 2 ran, 0 skipped (finished before), 2 failed, 0 diverged' in out
  assert 'exit 2: error: optim.g_lr must be positive' in out
  assert len(os.listdir(os.path.join(wd, 'submitit'))) >= 4  # a log folder per job
  assert '| 0.001 | 2 | 0.55 ± 0.05 | 1.5 ± 0.5 |' in open(os.path.join(wd, 'results.md')).read()
  assert _sweep(argv) == 1
  assert '4 points: 0 ran, 2 skipped (finished before), 2 failed' in capsys.readouterr().out


def test_a_job_that_fails_itself_is_a_failed_point(tmp_path, monkeypatch, fake_launcher):
  """A job with no result (here its command cannot start; on a cluster: time limit, preemption)
  is listed with its state and its log."""
  monkeypatch.setattr(sweep, 'point_command', lambda *a: [str(tmp_path / 'no-such-program')])
  lines = []
  out = sweep.run_sweep(TOY, str(tmp_path / 'sweep'), 'seed=0', executor='submitit_local',
                        slurm={'gpus_per_node': 0}, report=lines.append)
  assert out['failed'] == 1
  (name, err), = out['failures']
  assert re.fullmatch(r"job \d+ failed: FileNotFoundError: .*'.*/no-such-program'; "
                      r'its log: .*/submitit/\d+/\d+_0_log\.err', err), err
  assert lines[-1] == '1 of 1 done, 1 failed, 0 diverged'


def test_interrupting_a_sweep_cancels_its_jobs(tmp_path, fake_launcher):
  """SIGINT (Ctrl-C) ends the sweep with exit 75 at once, and its running jobs with it."""
  wd = tmp_path / 'sweep'
  proc = _sweep_process(wd, '--sweep=optim.g_lr=0.5 seed=0:2', '--executor=submitit_local',
                        '--parallel=2', '--slurm_gpus_per_node=0')
  running = lambda: subprocess.run(['pgrep', '-f', f'fakelaunch.*--workdir={wd}'],
                                   capture_output=True, text=True).stdout.split()
  try:
    deadline = time.monotonic() + 60
    while len(running()) < 2:
      assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
      time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
  finally:
    (wd / 'release').touch()  # whatever happens, no point waits forever
  assert proc.returncode == 75 and 'interrupted; rerun' in err
  assert 'done' not in out and 'FAILED' not in out  # cut-short points are not reported
  time.sleep(1)
  assert running() == []
  assert not (wd / 'points' / 'optim.g_lr-0.5__seed-0' / 'summary.json').exists()


def test_sigterm_reaches_the_local_points_and_the_sweep_exits_75(tmp_path, fake_launcher):
  """A preempted sweep forwards SIGTERM to its running points, waits for each to stop (with a
  checkpoint, in a real run) and exits 75; nothing is reported as done or failed."""
  wd = tmp_path / 'sweep'
  proc = _sweep_process(wd, '--sweep=optim.g_lr=0.4 seed=0:2', '--parallel=2')
  points = [wd / 'points' / f'optim.g_lr-0.4__seed-{s}' for s in (0, 1)]
  deadline = time.monotonic() + 60
  while not all((p / 'started').exists() for p in points):
    assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
    time.sleep(0.1)
  proc.send_signal(signal.SIGTERM)  # to the sweep alone, as `kill PID` or a scheduler would
  out, err = proc.communicate(timeout=60)
  assert proc.returncode == 75, err
  assert err.strip().splitlines()[-1] == ('interrupted; rerun the same command to resume: '
                                          'finished work is kept')
  assert all((p / 'preempted').exists() for p in points)
  assert 'done' not in out and 'FAILED' not in out


def test_slurm_flags_reach_submitit(tmp_path, monkeypatch):
  with pytest.raises(UserError, match='cannot reach SLURM.*--executor=local'):
    monkeypatch.setenv('PATH', str(tmp_path))  # no srun
    sweep.submitit_executor('slurm', str(tmp_path / 'submitit'))
  (tmp_path / 'srun').write_text('#!/bin/sh\n')
  (tmp_path / 'srun').chmod(0o755)
  ex = sweep.submitit_executor('slurm', str(tmp_path / 'submitit'), {
      'partition': 'gpu', 'time_min': 30, 'gpus_per_node': 2, 'cpus_per_task': 4, 'mem_gb': 16})
  assert ex._executor.parameters == {'job_name': 'advcnn-sweep', 'partition': 'gpu', 'time': 30,
                                     'gpus_per_node': 2, 'cpus_per_task': 4, 'mem': '16GB'}


def test_help_exits_0_and_names_every_flag(capsys):
  proc = subprocess.run([sys.executable, '-m', 'launch.sweep', '--help'], cwd=REPO,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == 0, proc.stderr
  assert _sweep(['-h']) == 0
  for text in (proc.stdout, capsys.readouterr().out):
    assert text.startswith('Sweep a config over a grid and seeds')
    assert 'Exit code 1 when any point failed or diverged' in text
    for name in HELP_FLAGS:
      assert f'--{name}' in text or f'--[no]{name}' in text, name


@pytest.mark.slow
def test_submitit_local_end_to_end_on_the_toy_gan(tmp_path, capsys):
  """The real launch.gan in submitit jobs: the table, then a rerun that runs nothing."""
  wd = str(tmp_path / 'sweep')
  argv = [f'--config={TOY}', f'--workdir={wd}', '--sweep=train.steps=20 seed=0:2',
          '--executor=submitit_local', '--parallel=2', '--metrics=modes,high_quality',
          '--slurm_gpus_per_node=0']
  assert _sweep(argv) == 0
  out = capsys.readouterr().out
  assert '2 points: 2 ran, 0 skipped (finished before), 0 failed, 0 diverged' in out
  points = [os.path.join(wd, 'points', f'train.steps-20__seed-{s}') for s in (0, 1)]
  summaries = [json.load(open(os.path.join(p, 'summary.json'))) for p in points]
  assert [s['step'] for s in summaries] == [20, 20]
  row = next(csv.DictReader(open(os.path.join(wd, 'results.csv'))))
  assert row['seeds'] == '2' and float(row['modes_mean']) == pytest.approx(
      np.mean([s['modes'] for s in summaries]))
  assert sorted(f for f in os.listdir(wd) if f.endswith('.png')) == ['results_high_quality.png',
                                                                    'results_modes.png']
  mtimes = [os.path.getmtime(os.path.join(p, 'summary.json')) for p in points]
  jobs = os.listdir(os.path.join(wd, 'submitit'))
  assert _sweep(argv) == 0
  assert '2 points: 0 ran, 2 skipped' in capsys.readouterr().out
  assert os.listdir(os.path.join(wd, 'submitit')) == jobs  # nothing submitted
  assert mtimes == [os.path.getmtime(os.path.join(p, 'summary.json')) for p in points]
