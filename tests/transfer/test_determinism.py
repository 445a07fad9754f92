"""The same transfer config and seed gives bitwise the same run; another seed does not."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from common.config import load_config
from common.writers import read_metrics
from tests.transfer.test_train import DIGITS, REPO, _leaves
from transfer import loop

SPEC = f'{DIGITS}:fine_tune,quick'
# Fine-tuning with BatchNorm training and on-device augmentation (the rng path), 4 steps.
OVERRIDES = ['model.weights=', 'data.augment=True', 'data.crop_scale=0.5', 'train.epochs=4',
             'train.log_every=1', 'data.test_limit=50']
TIMING = ('train_seconds', 'train_images_per_sec')  # wall-clock fields of summary.json


def _summary(workdir: str) -> dict:
  with open(os.path.join(workdir, 'summary.json')) as f:
    return {k: v for k, v in json.load(f).items() if k not in TIMING}


@pytest.mark.slow
def test_same_seed_is_bitwise_identical_and_another_seed_differs(tmp_path):
  first, second, other = (str(tmp_path / name) for name in ('first', 'second', 'other'))
  # Once through the command line in its own process, once through the library here.
  proc = subprocess.run([sys.executable, '-m', 'launch.transfer', f'--config={SPEC}',
                         f'--workdir={first}', *[f'--config.{o}' for o in OVERRIDES]],
                        cwd=REPO, capture_output=True, text=True, timeout=900)
  assert proc.returncode == 0, proc.stderr[-3000:]
  loop.run(load_config(SPEC, OVERRIDES), second)
  loop.run(load_config(SPEC, [*OVERRIDES, 'seed=1']), other)

  step_a, a = _leaves(first)
  step_b, b = _leaves(second)
  assert step_a == step_b == 4 and a.keys() == b.keys()
  for k in a:
    assert a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]), k
  rows = read_metrics(first)
  assert [r['step'] for r in rows if 'loss' in r] == [1, 2, 3, 4]
  assert not any(k in r for r in rows for k in TIMING)
  assert rows == read_metrics(second)
  assert _summary(first) == _summary(second)

  _, c = _leaves(other)
  assert c.keys() == a.keys()
  params = [k for k in a if k.startswith("['params']")]
  assert params and all(not np.array_equal(a[k], c[k]) for k in params)
  assert read_metrics(other) != rows
