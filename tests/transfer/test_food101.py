"""The tutorial's config (transfer/configs/food101_vgg16.py:quick) end to end, on images and Keras
weights the test makes: a folder of 12 classes (the class subset keeps the first 10) and a
legacy-layout Keras VGG16 notop file converted with launch.convert."""
import os

import h5py
import jax
import numpy as np
import pytest
from PIL import Image

from launch import convert as convert_cli
from launch import transfer as transfer_cli
from transfer import layouts, models
from flax import traverse_util


def _keras_vgg16_notop(path):
  """A file in the published notop layout (layer_names, weight_names) with random values."""
  variables = models.abstract_variables('vgg16', 'keras', None, False)
  rng = np.random.default_rng(0)
  layers = {}
  for key, leaf in traverse_util.flatten_dict(variables).items():
    name = layouts.keras_name('vgg16', key)
    scale = np.sqrt(2.0 / np.prod(leaf.shape[:-1])) if len(leaf.shape) == 4 else 0.01
    layers.setdefault(name.split('/')[0], {})[name] = (rng.normal(size=leaf.shape) * scale
                                                       ).astype(np.float32)
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [n.encode() for n in layers]
    for layer, weights in layers.items():
      group = f.create_group(layer)
      group.attrs['weight_names'] = [f'{n}:0'.encode() for n in weights]
      for n, value in weights.items():
        group.create_dataset(f'{n}:0', data=value)


def _food_folder(root):
  rng = np.random.default_rng(1)
  for c in range(12):
    os.makedirs(root / f'food{c:02d}')
    for i in range(12):
      base = np.full((40, 44, 3), 18 * c, np.uint8)
      noise = rng.integers(0, 40, base.shape, dtype=np.uint8)
      Image.fromarray(base + noise).save(root / f'food{c:02d}' / f'{i}.jpg')
  return root


@pytest.mark.slow
def test_food101_vgg16_quick_ablation(tmp_path, capsys):
  _keras_vgg16_notop(tmp_path / 'vgg16_notop.h5')
  convert_cli.main(['convert', '--source=keras', '--arch=vgg16', '--include_top=false',
                    f'--input={tmp_path / "vgg16_notop.h5"}', f'--output={tmp_path / "w"}'])
  folder = _food_folder(tmp_path / 'food')
  workdir = tmp_path / 'run'
  transfer_cli.main(['transfer', '--config=transfer/configs/food101_vgg16.py:quick',
                     f'--workdir={workdir}', '--config.data.name=folder',
                     f'--config.data.path={folder}', '--config.data.test_fraction=0.2',
                     f'--config.model.weights={tmp_path / "w"}'])
  out = capsys.readouterr().out
  results = (workdir / 'results.md').read_text()
  assert 'selected on the validation split (0.15 of each class)' in results
  for mode in ('scratch', 'feature_extraction', 'partial'):
    assert f'| {mode} | 1 |' in results, results
    assert (workdir / 'runs' / f'{mode}-seed0' / 'images' / 'confusion.png').exists()
  assert 'results in' in out
  jax.clear_caches()
