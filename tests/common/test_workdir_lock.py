"""One run per workdir: a second launch on a busy workdir stops at once with one line naming the
holder; the lock of a killed run is taken over without a word."""
import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from common import workdir as workdir_lib
from common.errors import UserError
from common.writers import read_metrics

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = 'gan/configs/toy2d.py:ring8,quick'
# A process that takes the workdir's lock, says so, and holds it until it is killed.
HOLD = ('import sys, time; from common.workdir import lock_workdir; lock_workdir(sys.argv[1]); '
        'print("locked", flush=True); time.sleep(600)')


def _holder(workdir):
  proc = subprocess.Popen([sys.executable, '-c', HOLD, str(workdir)], cwd=REPO,
                          stdout=subprocess.PIPE, text=True)
  assert proc.stdout.readline().strip() == 'locked'
  return proc


def _launch(workdir, *extra):
  return subprocess.Popen([sys.executable, '-m', 'launch.gan', f'--config={TOY}',
                           f'--workdir={workdir}', '--config.eval.plots=False', *extra],
                          cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_held_workdir_is_refused_naming_the_holder_and_a_killed_holder_is_taken_over(tmp_path):
  wd = tmp_path / 'run'
  wd.mkdir()
  holder = _holder(wd)
  try:
    record = json.loads((wd / '.lock').read_text())
    assert record['pid'] == holder.pid and record['host'] == socket.gethostname()
    with pytest.raises(UserError) as e:
      workdir_lib.lock_workdir(str(wd))
    assert str(e.value) == (
        f"workdir '{wd}' is in use by another run (PID {holder.pid} on host "
        f"{record['host']}, started {record['started']}); wait for it to end or stop it, or "
        'choose another --workdir')
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()
  assert workdir_lib.lock_workdir(str(wd))  # stale: taken over
  try:
    assert json.loads((wd / '.lock').read_text())['pid'] == os.getpid()
    assert not workdir_lib.lock_workdir(str(wd))  # this process holds it already
  finally:
    workdir_lib.unlock_workdir(str(wd))


def test_a_second_launch_exits_2_at_once_with_one_line(tmp_path):
  wd = tmp_path / 'run'
  wd.mkdir()
  holder = _holder(wd)
  try:
    t0 = time.monotonic()
    second = _launch(wd)
    out, err = second.communicate(timeout=120)
    assert second.returncode == 2, err
    assert err.strip().splitlines() == [
        f"error: workdir '{wd}' is in use by another run (PID {holder.pid} on host "
        f"{socket.gethostname()}, started {json.loads((wd / '.lock').read_text())['started']}); "
        'wait for it to end or stop it, or choose another --workdir']
    assert time.monotonic() - t0 < 60
    assert sorted(os.listdir(wd)) == ['.lock']  # it wrote nothing
  finally:
    holder.send_signal(signal.SIGKILL)
    holder.wait()


@pytest.mark.slow
def test_two_concurrent_launches_one_runs_the_other_is_refused(tmp_path):
  wd = tmp_path / 'run'
  procs = [_launch(wd), _launch(wd)]
  results = [(p.returncode, out, err) for p in procs for out, err in [p.communicate(timeout=600)]]
  codes = sorted(r[0] for r in results)
  assert codes == [0, 2], [r[2][-2000:] for r in results]
  err = next(r[2] for r in results if r[0] == 2)
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith(f"error: workdir '{wd}' is in use by another "
                                                 'run (PID '), err
  rows = read_metrics(str(wd))
  # One writer: each logged step once (a step with an evaluation also has its own eval row).
  assert [r['step'] for r in rows if 'loss_d' in r] == [50, 100, 150, 200]
  evals = [r['step'] for r in rows if 'loss_d' not in r]
  assert evals and len(evals) == len(set(evals))
  assert json.load(open(wd / 'summary.json'))['step'] == 200
