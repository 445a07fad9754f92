"""SIGTERM/SIGINT stop a run at the end of its chunk with a checkpoint there, 'preempted at step N'
and exit code 75; the rerun ends bitwise equal to an uninterrupted run (both trainers)."""
import os
import signal
import subprocess
import sys
import time

import pytest

from common import preemption
from common.config import load_config
from common.writers import read_metrics
from gan import train
from gan.steps import GanSteps
from tests.gan.test_train import RESUME, REPO, TOY, assert_same_finished_run

QUICK = [f'--config={TOY}:ring8,quick', '--config.eval.plots=False']


def test_a_signal_mid_chunk_saves_at_the_chunk_end_and_stops(tmp_path, monkeypatch):
  """SIGTERM during the second chunk (rounds 50-100): the chunk ends, a checkpoint is saved at
  round 100 although checkpoint_every says only at the end, and the run stops."""
  real_init = GanSteps.__init__
  chunks = []

  def patched_init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    inner = self.train_chunk

    def chunk(state, batches, k, *rest):
      chunks.append(k)
      if len(chunks) == 2:
        os.kill(os.getpid(), signal.SIGTERM)
      return inner(state, batches, k, *rest)

    self.train_chunk = chunk

  monkeypatch.setattr(GanSteps, '__init__', patched_init)
  config = load_config(f'{TOY}:ring8,quick', ['eval.plots=False', 'train.checkpoint_every=0'])
  wd = str(tmp_path / 'run')
  with preemption.installed(), pytest.raises(preemption.Preempted) as e:
    train.train_and_evaluate(config, wd)
  assert str(e.value) == ('preempted at step 100 (SIGTERM): checkpoint saved; rerun the same '
                          'command to resume from step 100')
  assert chunks == [50, 50]
  assert sorted(os.listdir(os.path.join(wd, 'checkpoints'))) == ['100']
  assert [r['step'] for r in read_metrics(wd) if 'loss_d' in r] == [50, 100]
  assert not os.path.exists(os.path.join(wd, 'summary.json'))
  assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _stop_mid_run(cmd, workdir, sig, after_checkpoint):
  """Start `cmd`, send `sig` once checkpoints/`after_checkpoint` exists; (returncode, stderr)."""
  proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                          text=True)
  deadline = time.time() + 300
  while not os.path.exists(os.path.join(workdir, 'checkpoints', str(after_checkpoint))):
    assert proc.poll() is None, proc.communicate()[1][-3000:]
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(sig)
  _, err = proc.communicate(timeout=300)
  return proc.returncode, err


@pytest.mark.slow
def test_sigterm_then_rerun_is_bitwise_equal_to_uninterrupted(tmp_path):
  stopped = str(tmp_path / 'stopped')
  args = [f'--config={TOY}:ring8', f'--workdir={stopped}'] + [f'--config.{o}' for o in RESUME]
  code, err = _stop_mid_run([sys.executable, '-m', 'launch.gan', *args], stopped,
                            signal.SIGTERM, after_checkpoint=100)
  assert code == 75, err[-3000:]
  last = err.strip().splitlines()[-1]
  step = int(last.split()[3])
  assert last == (f'preempted at step {step} (SIGTERM): checkpoint saved; rerun the same '
                  f'command to resume from step {step}'), err
  assert 100 < step < 600 and step % 50 == 0
  assert max(int(d) for d in os.listdir(os.path.join(stopped, 'checkpoints'))) == step
  resumed = subprocess.run([sys.executable, '-m', 'launch.gan', *args], cwd=REPO,
                           capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr
  straight = str(tmp_path / 'straight')
  train.train_and_evaluate(load_config(TOY + ':ring8', RESUME), straight)
  assert_same_finished_run(stopped, straight, 600)


@pytest.mark.slow
def test_transfer_sigint_then_rerun_is_bitwise_equal_to_uninterrupted(tmp_path):
  """Fine-tuning from a random backbone, 4 epochs of 5 steps, 2 steps a call; Ctrl-C (SIGINT)
  after the checkpoint of step 4."""
  spec = 'transfer/configs/digits.py:fine_tune,quick'
  overrides = ['model.weights=', 'data.train_per_class=8', 'data.batch_size=8', 'train.epochs=4',
               'train.log_every=2', 'train.steps_per_call=2', 'train.checkpoint_every=4',
               'data.test_limit=50']
  stopped = str(tmp_path / 'stopped')
  cmd = [sys.executable, '-m', 'launch.transfer', f'--config={spec}', f'--workdir={stopped}',
         *[f'--config.{o}' for o in overrides]]
  code, err = _stop_mid_run(cmd, stopped, signal.SIGINT, after_checkpoint=4)
  assert code == 75, err[-3000:]
  assert err.strip().splitlines()[-1].startswith('preempted at step '), err
  resumed = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
  assert resumed.returncode == 0, resumed.stderr
  straight = str(tmp_path / 'straight')
  from transfer import train as transfer_train
  transfer_train.train_and_evaluate(load_config(spec, overrides), straight)
  assert_same_finished_run(stopped, straight, timing=('seconds', 'per_sec'))
