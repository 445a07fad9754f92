"""The launchers' shared plumbing: the Ctrl-C message says what a rerun will do."""
import pytest

from common import cli


def test_interrupt_before_and_after_the_first_checkpoint(tmp_path, capsys):
  cli.note_workdir(str(tmp_path))

  def interrupted():
    raise KeyboardInterrupt

  with pytest.raises(SystemExit) as e:
    cli.main_guard(interrupted)
  assert e.value.code == 130
  assert 'before the first checkpoint; rerunning the same command starts over' in \
      capsys.readouterr().err
  (tmp_path / 'checkpoints' / '40').mkdir(parents=True)
  (tmp_path / 'checkpoints' / '120').mkdir()
  with pytest.raises(SystemExit):
    cli.main_guard(interrupted)
  assert 'resume from the checkpoint at step 120' in capsys.readouterr().err
