"""Transfer data: digits few-label splits, image folders (odd and broken files), TFDS errors."""
import os

import numpy as np
import pytest
from PIL import Image

from common.config import load_config
from common.errors import UserError
from transfer import data as data_lib

DIGITS = 'transfer/configs/digits.py'


def _cfg(overrides=()):
  return load_config(f'{DIGITS}:fine_tune,quick', list(overrides)).data


def test_digits_few_label_split():
  d = data_lib.load_data(_cfg(['data.test_limit=0']), seed=0)
  train, test = data_lib.read_all(d.train), data_lib.read_all(d.test)
  assert d.num_classes == 5 and d.class_names == ['5', '6', '7', '8', '9']
  assert train['image'].shape == (25, 16, 16, 3) and train['image'].dtype == np.uint8
  assert np.array_equal(np.bincount(train['label']), [5] * 5)
  assert set(d.train.indices).isdisjoint(d.test.indices)
  assert len(d.train) + len(d.test) == 896  # scikit-learn has 896 images of digits 5-9
  # Gray digits become RGB with equal channels, and the subset follows the seed.
  assert np.array_equal(train['image'][..., 0], train['image'][..., 2])
  other = data_lib.load_data(_cfg(['data.test_limit=0']), seed=1)
  assert not np.array_equal(d.train.indices, other.train.indices)


def _png(path, mode, size=(20, 12)):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  channels = {'L': 1, 'RGB': 3, 'RGBA': 4}[mode]
  pixels = np.random.default_rng(len(path)).integers(0, 255, (size[1], size[0], channels), np.uint8)
  Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode).save(path)


def _folder(root):
  _png(f'{root}/dog/rgb.png', 'RGB')
  _png(f'{root}/dog/gray.png', 'L')
  _png(f'{root}/cat/rgba.png', 'RGBA')
  _png(f'{root}/cat/sub/nested.png', 'RGB', size=(9, 30))
  with open(f'{root}/cat/broken.png', 'wb') as f:
    f.write(b'\x89PNG\r\n\x1a\n' + b'not really a png' * 4)
  with open(f'{root}/cat/notes.txt', 'w') as f:
    f.write('not an image, ignored')
  return root


def test_image_folder_reads_odd_images_and_skips_broken_ones(tmp_path):
  root = _folder(str(tmp_path / 'imgs'))
  with pytest.warns(UserWarning, match=r'skipped 1 unreadable image.*broken\.png'):
    files, labels, classes = data_lib.scan_folder(root)
  assert classes == ['cat', 'dog']  # sorted by name, like Keras
  assert [os.path.basename(f) for f in files] == ['rgba.png', 'nested.png', 'gray.png', 'rgb.png']
  assert labels.tolist() == [0, 0, 1, 1]
  source = data_lib.ImageFolderSource(files, labels, data_lib.square_transform(8, 10, False))
  batch = source.gather(np.arange(4))
  assert batch['image'].shape == (4, 8, 8, 3) and batch['image'].dtype == np.uint8
  gray = batch['image'][2]
  assert np.array_equal(gray[..., 0], gray[..., 1])


def test_image_folder_dataset_with_test_path(tmp_path):
  root = _folder(str(tmp_path / 'train'))
  test_root = str(tmp_path / 'test')
  _png(f'{test_root}/cat/a.png', 'RGB')
  _png(f'{test_root}/dog/b.jpg', 'RGB')
  cfg = _cfg(['data.name=folder', f'data.path={root}', f'data.test_path={test_root}',
              'data.image_size=8', 'data.resize_size=12', 'data.augment=True',
              'data.train_per_class=0'])
  with pytest.warns(UserWarning):
    d = data_lib.load_data(cfg, seed=0)
  assert (len(d.train), len(d.test), d.num_classes) == (4, 2, 2)
  assert d.train.gather(np.arange(2))['image'].shape == (2, 12, 12, 3)  # cropped on device later
  assert d.test.gather(np.arange(2))['image'].shape == (2, 8, 8, 3)


def test_image_folder_without_classes_or_with_an_empty_class_is_an_error(tmp_path):
  empty = tmp_path / 'empty'
  empty.mkdir()
  (empty / 'loose.png').write_bytes(b'')
  with pytest.raises(UserError, match='no class sub-folders'):
    data_lib.scan_folder(str(empty))
  root = _folder(str(tmp_path / 'imgs'))
  os.makedirs(f'{root}/zebra')
  with pytest.raises(UserError, match='zebra.*no readable images'):
    data_lib.scan_folder(root)
  with pytest.raises(UserError, match='does not exist'):
    data_lib.scan_folder(str(tmp_path / 'missing'))


def test_unprepared_tfds_dataset_names_the_build_command(tmp_path):
  cfg = load_config('transfer/configs/tf_flowers.py:quick', [f'data.data_dir={tmp_path}']).data
  with pytest.raises(UserError, match='tfds build tf_flowers --file_format=array_record'):
    data_lib.load_data(cfg, seed=0)


def test_unknown_dataset_lists_the_choices():
  with pytest.raises(UserError, match="unknown dataset 'mnist_m'.*tf_flowers"):
    data_lib.load_data(_cfg(['data.name=mnist_m']), seed=0)
