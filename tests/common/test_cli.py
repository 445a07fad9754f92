"""The launchers' shared plumbing: exit codes, and what an early stop says a rerun will do."""
import os
import signal

import pytest

from common import cli, preemption
from common.diskspace import DiskFull


def test_interrupt_before_and_after_the_first_checkpoint(tmp_path, capsys):
  cli.note_workdir(str(tmp_path))

  def interrupted():
    raise KeyboardInterrupt

  with pytest.raises(SystemExit) as e:
    cli.main_guard(interrupted)
  assert e.value.code == preemption.EXIT_PREEMPTED == 75
  assert 'before the first checkpoint; rerunning the same command starts over' in \
      capsys.readouterr().err
  (tmp_path / 'checkpoints' / '40').mkdir(parents=True)
  (tmp_path / 'checkpoints' / '120').mkdir()
  (tmp_path / 'checkpoints' / '160.orbax-checkpoint-tmp-3').mkdir()  # half-written: not counted
  with pytest.raises(SystemExit):
    cli.main_guard(interrupted)
  assert 'interrupted; rerun the same command to resume from the checkpoint at step 120' in \
      capsys.readouterr().err


def test_a_signal_outside_a_training_loop_stops_at_once_with_exit_75(tmp_path, capsys):
  cli.note_workdir(str(tmp_path))
  seen = []

  def busy():
    os.kill(os.getpid(), signal.SIGTERM)
    seen.append('after the signal')  # not reached: no loop is waiting for a chunk boundary

  with pytest.raises(SystemExit) as e:
    cli.main_guard(busy)
  assert e.value.code == 75 and not seen
  assert capsys.readouterr().err.splitlines() == [
      'interrupted before the first checkpoint; rerunning the same command starts over']
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored afterwards


@pytest.mark.parametrize('error,code,line', [
    (preemption.Preempted('preempted at step 300 (SIGTERM): checkpoint saved'), 75,
     'preempted at step 300 (SIGTERM): checkpoint saved'),
    (DiskFull('no space left on the device'), 2, 'error: no space left on the device'),
    (OSError(28, 'No space left on device', '/w/images/x.png'), 2,
     'error: no space left on the device of workdir {wd} while writing a file (/w/images/x.png); '
     'free space there and rerun the same command: the run starts over (no checkpoint was saved '
     'yet), and nothing written is lost'),
])
def test_exit_codes(tmp_path, capsys, error, code, line):
  cli.note_workdir(str(tmp_path))

  def fail():
    raise error

  with pytest.raises(SystemExit) as e:
    cli.main_guard(fail)
  assert e.value.code == code
  assert capsys.readouterr().err.splitlines() == [line.format(wd=tmp_path)]
