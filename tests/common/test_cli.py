"""The launchers' shared plumbing: the Ctrl-C message says what a rerun will do."""
import subprocess
import sys

from common.config import REPO_ROOT

_INTERRUPTED = '''
import sys
from common import cli
if sys.argv[1]:
  cli.note_workdir(sys.argv[1])
def interrupted():
  raise KeyboardInterrupt
cli.main_guard(interrupted)
'''


def _interrupt(workdir: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-c', _INTERRUPTED, workdir], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=120)


def test_interrupt_before_and_after_the_first_checkpoint(tmp_path):
  before = _interrupt(str(tmp_path))
  assert before.returncode == 130
  assert before.stderr == ('interrupted before the first checkpoint; rerunning the same command '
                           'starts over\n')
  (tmp_path / 'checkpoints' / '40').mkdir(parents=True)
  (tmp_path / 'checkpoints' / '120').mkdir()
  after = _interrupt(str(tmp_path))
  assert after.returncode == 130 and 'resume from the checkpoint at step 120' in after.stderr
  anywhere = _interrupt('')  # a sweep: no single workdir
  assert anywhere.stderr == 'interrupted; rerun the same command to resume where it stopped\n'
