"""The launchers' shared plumbing: exit codes, and what an early stop says a rerun will do."""
import signal
import subprocess
import sys

import pytest

from common import cli, preemption
from common.config import REPO_ROOT

# An interruption leaves the process at once (os._exit), so it runs in a child process.
_INTERRUPTED = '''
import os, signal, sys
from common import cli
if sys.argv[1]:
  cli.note_workdir(sys.argv[1])
def interrupted():
  raise KeyboardInterrupt
def busy():
  os.kill(os.getpid(), signal.SIGTERM)
  print('after the signal')  # not reached: no loop is waiting for a chunk boundary
cli.main_guard(busy if sys.argv[2] == 'signal' else interrupted)
'''


def _interrupt(workdir: str, how: str = 'ctrl-c') -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-c', _INTERRUPTED, workdir, how], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


def test_interrupt_before_and_after_the_first_checkpoint(tmp_path):
  before = _interrupt(str(tmp_path))
  assert before.returncode == preemption.EXIT_PREEMPTED == 75
  assert before.stderr == ('interrupted before the first checkpoint; rerunning the same command '
                           'starts over\n')
  (tmp_path / 'checkpoints' / '40').mkdir(parents=True)
  (tmp_path / 'checkpoints' / '120').mkdir()
  (tmp_path / 'checkpoints' / '160.orbax-checkpoint-tmp-3').mkdir()  # half-written: not counted
  after = _interrupt(str(tmp_path))
  assert after.returncode == 75
  assert after.stderr == ('interrupted; rerun the same command to resume from the checkpoint at '
                          'step 120\n')
  anywhere = _interrupt('')  # a sweep: no single workdir
  assert anywhere.stderr == 'interrupted; rerun the same command to resume: finished work is kept\n'


def test_a_signal_outside_a_training_loop_stops_at_once_with_exit_75(tmp_path):
  proc = _interrupt(str(tmp_path), 'signal')
  assert proc.returncode == 75 and 'after the signal' not in proc.stdout
  assert proc.stderr.splitlines() == [
      'interrupted before the first checkpoint; rerunning the same command starts over']


def test_handlers_are_restored_after_a_command():
  cli.main_guard(lambda: None)
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


# Each error as a command meets it, in a child process. The error leaves behind what a library's
# failed write can: coroutines never awaited, collected as the exception is dropped and at
# interpreter shutdown, whose warnings must not join the one line.
_FAILING = '''
import sys
from common import cli, preemption
from common.diskspace import DiskFull
cli.note_workdir(sys.argv[1])
async def write_fragment():
  pass
def fail():
  global abandoned
  abandoned = write_fragment()
  error = eval(sys.argv[2])
  error.pending = write_fragment()
  raise error
cli.main_guard(fail)
'''


@pytest.mark.parametrize('error,code,line', [
    ("preemption.Preempted('preempted at step 300 (SIGTERM): checkpoint saved')", 75,
     'preempted at step 300 (SIGTERM): checkpoint saved'),
    ("DiskFull('no space left on the device')", 2, 'error: no space left on the device'),
    ("OSError(28, 'No space left on device', '/w/images/x.png')", 2,
     'error: no space left on the device of workdir {wd} while writing a file (/w/images/x.png); '
     'free space there and rerun the same command: the run starts over (no checkpoint was saved '
     'yet), and nothing written is lost'),
])
def test_exit_codes(tmp_path, error, code, line):
  proc = subprocess.run([sys.executable, '-c', _FAILING, str(tmp_path), error], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)
  assert proc.returncode == code
  assert proc.stderr.splitlines() == [line.format(wd=tmp_path)]
