"""TensorBoard event files: scalars and pictures, and no step twice after a resume."""
import os
import shutil

import pytest

from common.config import load_config
from gan import train

event_accumulator = pytest.importorskip('tensorboard.backend.event_processing.event_accumulator')


@pytest.mark.slow
def test_gan_lab_pictures_and_scalars_once_per_step_after_a_resume(tmp_path):
  wd = str(tmp_path / 'run')
  config = load_config('gan/configs/toy2d.py:ring8,quick', ['train.steps=150',
                                                            'train.eval_every=50'])
  train.train_and_evaluate(config, wd)
  # Lose everything after the checkpoint at 100 (as a kill would), then resume.
  shutil.rmtree(os.path.join(wd, 'checkpoints', '150'))
  os.remove(os.path.join(wd, 'summary.json'))
  train.train_and_evaluate(config, wd)
  # The resumed run's events file starts with a purge of steps after 100: TensorBoard drops
  # the first attempt's step 150 and shows each step once, with the GAN Lab picture of each.
  acc = event_accumulator.EventAccumulator(os.path.join(wd, 'tensorboard'),
                                           size_guidance={'images': 0, 'scalars': 0})
  acc.Reload()
  assert [e.step for e in acc.Scalars('loss_d')] == [50, 100, 150]
  assert [e.step for e in acc.Images('gan_lab')] == [50, 100, 150]
