"""A full disk stops a run with exit code 2 and one line naming the workdir, what was being
written and the checkpoint a rerun resumes from; nothing already written is lost, half-written
checkpoints are removed, and the rerun after freeing space finishes the run bitwise.

The end-to-end test mounts a 3 MB tmpfs (as root); where mounting is not permitted it injects
the failure orbax reports instead."""
import errno
import json
import os
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

from common import diskspace, writers
from common.checkpoint import Checkpointer
from common.config import load_config
from common.diskspace import DiskFull
from common.writers import MetricWriter, read_metrics, save_png
from gan import train
from tests.gan.test_train import REPO, TOY, _final_state, _flat

NO_SPACE = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
# What orbax raises when tensorstore cannot write (it is not an OSError).
ORBAX_NO_SPACE = ValueError('RESOURCE_EXHAUSTED: Error writing "g.params/0" in OCDBT database: '
                            'Failed to write 317105 bytes to file 20: No space left on device '
                            "[os_error_code='28']")


def _fail(*args, **kwargs):
  raise NO_SPACE


def test_a_metrics_row_that_does_not_fit_leaves_the_file_as_it_was(tmp_path, monkeypatch):
  w = MetricWriter(str(tmp_path), tensorboard=False)
  w.write(10, {'loss': 1.0})
  before = (tmp_path / 'metrics.jsonl').read_bytes()
  monkeypatch.setattr(writers.os, 'write', _fail)
  with pytest.raises(DiskFull) as e:
    w.write(20, {'loss': 0.5})
  assert str(e.value) == (
      f'no space left on the device of workdir {tmp_path} while writing the metrics of step 20 '
      f'({tmp_path}/metrics.jsonl); free space there and rerun the same command: the run starts '
      'over (no checkpoint was saved yet), and nothing written is lost')
  # A write cut short by the device filling up is cut back too.
  monkeypatch.setattr(writers.os, 'write', lambda fd, data: os.pwrite(fd, data[:5], 0) * 0 + 5)
  with pytest.raises(DiskFull):
    w.write(20, {'loss': 0.5})
  assert (tmp_path / 'metrics.jsonl').read_bytes() == before


def test_summary_and_pictures_are_replaced_whole_or_not_at_all(tmp_path, monkeypatch):
  (tmp_path / 'checkpoints' / '300').mkdir(parents=True)
  w = MetricWriter(str(tmp_path), tensorboard=False)
  w.write_summary({'step': 1})
  png = str(tmp_path / 'images' / 'samples.png')
  save_png(png, np.zeros((4, 4, 3), np.uint8))
  old_png, old_summary = open(png, 'rb').read(), (tmp_path / 'summary.json').read_text()
  real_open = open

  def full_open(path, mode='r', *args, **kwargs):
    f = real_open(path, mode, *args, **kwargs)
    if 'w' in mode:
      f.write = _fail
    return f

  monkeypatch.setattr(diskspace, 'open', full_open, raising=False)
  monkeypatch.setattr(writers, 'open', full_open, raising=False)
  with pytest.raises(DiskFull, match=r'while writing summary.json .*resumes from the checkpoint '
                                     r'at step 300, and nothing written is lost'):
    w.write_summary({'step': 2})
  with pytest.raises(DiskFull, match=f'workdir {tmp_path} while writing the picture samples.png'):
    save_png(png, np.ones((4, 4, 3), np.uint8))
  assert open(png, 'rb').read() == old_png
  assert (tmp_path / 'summary.json').read_text() == old_summary
  assert sorted(os.listdir(tmp_path)) == ['checkpoints', 'images', 'summary.json']  # no .tmp
  assert os.listdir(tmp_path / 'images') == ['samples.png']


def test_a_full_disk_under_tensorboard_is_reported_instead_of_blocking(tmp_path):
  """tensorboardX writes on its own thread; a write error there used to end the thread, after
  which the queue filled and the run blocked."""
  w = MetricWriter(str(tmp_path))
  events = w._tb._get_file_writer().event_writer._ev_writer
  events._py_recordio_writer.write = _fail
  events._py_recordio_writer.flush = _fail
  with pytest.raises(DiskFull, match='while writing TensorBoard events'):
    for step in range(1, 400):
      w.write(step, {'loss': 1.0})
      time.sleep(0.01)  # the event thread takes each row in turn
  w.close()


def test_torn_last_line_is_dropped_on_resume(tmp_path):
  path = tmp_path / 'metrics.jsonl'
  path.write_text('{"step": 50, "a": 1}\n{"step": 100, "a": 2}\n{"step": 150, "a"')
  assert [r['step'] for r in read_metrics(str(tmp_path))] == [50, 100]
  MetricWriter(str(tmp_path), start_step=100, tensorboard=False).close()
  assert path.read_text() == '{"step": 50, "a": 1}\n{"step": 100, "a": 2}\n'


def test_a_failed_checkpoint_is_removed_and_the_earlier_ones_kept(tmp_path, monkeypatch):
  ckpt = Checkpointer(str(tmp_path), keep=3)
  state = {'w': np.arange(4.0)}
  ckpt.save(100, state)
  real_save = ocp.CheckpointManager.save

  def fail_midway(self, step, *args, **kwargs):
    os.makedirs(os.path.join(self.directory, f'{step}.orbax-checkpoint-tmp-17', 'state'))
    raise ORBAX_NO_SPACE

  monkeypatch.setattr(ocp.CheckpointManager, 'save', fail_midway)
  with pytest.raises(DiskFull) as e:
    ckpt.save(200, state)
  assert str(e.value) == (
      f'no space left on the device of workdir {tmp_path} while writing the checkpoint at step '
      f'200 ({tmp_path}/checkpoints); free space there and rerun the same command: the run '
      'resumes from the checkpoint at step 100, and nothing written is lost')
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['100']
  monkeypatch.setattr(ocp.CheckpointManager, 'save', real_save)
  ckpt.close()
  # A run killed mid-save leaves its temporary directory: the next run removes it.
  (tmp_path / 'checkpoints' / '300.orbax-checkpoint-tmp-9' / 'state').mkdir(parents=True)
  ckpt = Checkpointer(str(tmp_path), keep=3)
  assert ckpt.latest_step() == 100
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['100']
  ckpt.close()


def _mount_tmpfs(path, size):
  cmd = ['mount', '-t', 'tmpfs', '-o', f'size={size}', 'tmpfs', str(path)]
  try:
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0
  except (OSError, subprocess.SubprocessError):
    return False


# The ring with 3 x 128 MLPs (its default before 2 x 64): checkpoints of about 1 MB.
RING = ['train.steps=1000', 'train.checkpoint_every=200', 'eval.plots=False', 'model.depth=3',
        'model.hidden=128', 'data.batch_size=256', 'model.d_fourier=0']


@pytest.mark.slow
def test_full_disk_stops_with_one_line_then_resumes_once_space_is_freed(tmp_path, monkeypatch):
  """The toy ring on a 3 MB filesystem: three checkpoints of ~1 MB fit, the fourth does not."""
  mnt = tmp_path / 'mnt'
  mnt.mkdir()
  mounted = _mount_tmpfs(mnt, '3m')
  wd = str(mnt / 'ring')
  args = [f'--config={TOY}:ring', f'--workdir={wd}', *[f'--config.{o}' for o in RING]]
  try:
    if mounted:
      proc = subprocess.run([sys.executable, '-m', 'launch.gan', *args], cwd=REPO,
                            capture_output=True, text=True, timeout=600)
      code, err = proc.returncode, proc.stderr
    else:  # no mount permitted: orbax fails the same way at the fourth checkpoint
      code, err = _injected_run(wd, monkeypatch, fail_at=800)
    assert code == 2, err[-3000:]
    assert 'Traceback' not in err
    errors = [l for l in err.splitlines() if l.startswith('error:')]
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err[-3000:]
    steps = sorted(int(d) for d in os.listdir(os.path.join(wd, 'checkpoints')))
    assert errors[0] == (
        f'error: no space left on the device of workdir {wd} while writing the checkpoint at '
        f'step {steps[-1] + 200} ({wd}/checkpoints); free space there and rerun the same '
        f'command: the run resumes from the checkpoint at step {steps[-1]}, and nothing '
        'written is lost')
    assert sorted(os.listdir(os.path.join(wd, 'checkpoints'))) == sorted(map(str, steps))  # no tmp
    rows = read_metrics(wd)
    assert rows and rows[-1]['step'] <= steps[-1] + 200
    if mounted:
      assert subprocess.run(['mount', '-o', 'remount,size=64m', str(mnt)]).returncode == 0
    resumed = subprocess.run([sys.executable, '-m', 'launch.gan', *args], cwd=REPO,
                             capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    straight = str(tmp_path / 'straight')
    train.train_and_evaluate(load_config(f'{TOY}:ring', RING), straight)
    fa, fb = _flat(_final_state(wd)[1]), _flat(_final_state(straight)[1])
    for k in fa:
      assert np.array_equal(fa[k], fb[k]), k
    assert read_metrics(wd) == read_metrics(straight)
    assert json.load(open(os.path.join(wd, 'summary.json')))['step'] == 1000
  finally:
    if mounted:
      subprocess.run(['umount', str(mnt)])


def _injected_run(wd, monkeypatch, fail_at):
  """launch.gan in this process, its checkpoint at `fail_at` failing as on a full disk:
  (exit code, stderr)."""
  import io

  import launch.gan
  from common import cli
  real_save = ocp.CheckpointManager.save

  def save(self, step, *args, **kwargs):
    if step == fail_at:
      os.makedirs(os.path.join(self.directory, f'{step}.orbax-checkpoint-tmp-1', 'state'))
      raise ORBAX_NO_SPACE
    return real_save(self, step, *args, **kwargs)

  err = io.StringIO()
  with monkeypatch.context() as m:
    m.setattr(ocp.CheckpointManager, 'save', save)
    m.setattr(sys, 'stderr', err)
    args = [f'--config={TOY}:ring', f'--workdir={wd}', *[f'--config.{o}' for o in RING]]
    with pytest.raises(SystemExit) as e:
      cli.main_guard(lambda: launch.gan.main(['launch.gan', *args]))
  return e.value.code, err.getvalue()
