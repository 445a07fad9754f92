"""The README's own-folder transfer command runs end to end on a folder the test builds."""
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common.config import REPO_ROOT


def _class_folders(root, classes=('red', 'green', 'blue'), per_class=10, size=24):
  """One sub-folder per class of small PNGs whose colour says the class."""
  rng = np.random.default_rng(0)
  for c, name in enumerate(classes):
    os.makedirs(os.path.join(root, name))
    for i in range(per_class):
      img = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
      img[..., c] += 180
      Image.fromarray(img).save(os.path.join(root, name, f'{i}.png'))


def _readme_command() -> list[str]:
  with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    line = re.search(r'^python -m launch\.transfer --config=transfer/configs/folder\.py .*$',
                     f.read(), re.M).group(0)
  return shlex.split(line)


@pytest.mark.slow
def test_readme_own_folder_command_runs_end_to_end(tmp_path):
  images, workdir = str(tmp_path / 'my_images'), str(tmp_path / 'runs' / 'my_images')
  _class_folders(images)
  argv = _readme_command()
  assert argv[:3] == ['python', '-m', 'launch.transfer']
  # The README's command as written, on the test's folder and workdir, in its quick variant.
  argv = [a.replace('=my_images', f'={images}').replace('=runs/my_images', f'={workdir}')
          .replace('folder.py', 'folder.py:quick') for a in argv[3:]]
  proc = subprocess.run([sys.executable, '-m', 'launch.transfer', *argv], cwd=REPO_ROOT,
                        capture_output=True, text=True, timeout=600)
  assert proc.returncode == 0, proc.stderr
  summary = json.load(open(os.path.join(workdir, 'summary.json')))
  assert summary['num_train'] == 24 and summary['num_test'] == 6  # every image, 20% held out
  assert 'top5' not in summary  # three classes: top-5 means nothing
  assert os.path.exists(os.path.join(workdir, 'images', 'confusion.png'))
  assert f'results in {workdir}' in proc.stdout
