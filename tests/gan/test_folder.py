"""Image folders as GAN datasets: flat and class layouts, squares of the model's size, one-line
errors naming the file, a resumable grain pipeline, and a ResNet GAN trained on one."""
import os

import ml_collections
import numpy as np
import pytest
from PIL import Image

from common.config import load_config
from common.errors import UserError
from gan import folder, images
from gan.data import build_data


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def _colour(seed, shape=(20, 30, 3)):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


@pytest.fixture
def class_folder(tmp_path):
  root = tmp_path / 'classes'
  for c, name in enumerate(('b_dogs', 'a_cats')):
    for i in range(6):
      _save(str(root / name / f'{i}.png'), _colour(10 * c + i))
  _save(str(root / 'a_cats' / 'nested' / 'deep.jpg'), _colour(99))
  (root / 'a_cats' / 'notes.txt').write_text('not an image')
  return str(root)


def test_scan_reads_classes_sorted_and_nested(class_folder):
  found = folder.scan(class_folder)
  assert found.classes == ('a_cats', 'b_dogs') and found.channels == 3
  assert len(found.files) == 13 and list(found.labels).count(0) == 7
  assert all(f.endswith(('.png', '.jpg')) for f in found.files)


def test_scan_flat_and_grey(tmp_path):
  for i in range(3):
    _save(str(tmp_path / 'flat' / f'{i}.png'), _colour(i, (12, 12)))
  found = folder.scan(str(tmp_path / 'flat'))
  assert found.classes == () and found.channels == 1 and list(found.labels) == [-1] * 3


def test_bad_folders_name_the_file(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    folder.scan(str(tmp_path / 'nope'))
  (tmp_path / 'empty').mkdir()
  with pytest.raises(UserError, match=r'holds no images \(.bmp'):
    folder.scan(str(tmp_path / 'empty'))
  bad = tmp_path / 'bad'
  _save(str(bad / 'a.png'), _colour(0))
  (bad / 'b.png').write_bytes(b'this is not a png')
  with pytest.raises(UserError, match=f'cannot read image {bad}/b.png'):
    folder.scan(str(bad))
  mixed = tmp_path / 'mixed'
  _save(str(mixed / 'a.png'), _colour(0))
  _save(str(mixed / 'b.png'), _colour(1, (20, 30)))
  with pytest.raises(UserError, match=f'mixes grey and colour images: {mixed}/b.png is grey'):
    folder.scan(str(mixed))
  empty_class = tmp_path / 'cls'
  _save(str(empty_class / 'x' / 'a.png'), _colour(0))
  (empty_class / 'y').mkdir()
  with pytest.raises(UserError, match=f'class folder {empty_class}/y holds no images'):
    folder.scan(str(empty_class))


def test_truncated_image_is_named_when_decoded(tmp_path):
  root = tmp_path / 'trunc'
  _save(str(root / 'a.png'), _colour(0, (64, 64, 3)))
  data = (root / 'a.png').read_bytes()
  (root / 'a.png').write_bytes(data[:len(data) // 2])
  found = folder.scan(str(root))  # the header is intact
  with pytest.raises(UserError, match=f'cannot decode image {root}/a.png'):
    folder.FolderSource(found, 16).gather(np.array([0]))


def test_fit_square_resizes_the_shorter_side_and_crops_the_centre():
  image = np.zeros((20, 40, 3), np.uint8)
  image[:, :20] = (255, 0, 0)
  image[:, 20:] = (0, 0, 255)
  out = folder.fit_square(image, 16)  # 20x40 -> 16x32 -> centre 16 columns: 8 red, 8 blue
  assert out.shape == (16, 16, 3)
  assert (out[:, :7, 0] > 250).all() and (out[:, 9:, 2] > 250).all()
  grey = np.full((9, 7, 1), 77, np.uint8)
  np.testing.assert_array_equal(folder.fit_square(grey, 32), np.full((32, 32, 1), 77))


def _data_cfg(**kw):
  return ml_collections.ConfigDict(dict(dict(name='folder', path='', data_dir='', split='',
                                             image_size=16, batch_size=4), **kw))


def test_folder_source_gives_float_squares_and_labels(class_folder):
  src, shape = images.image_source(_data_cfg(path=class_folder))
  assert shape == (16, 16, 3) and len(src) == 13
  batch = src.gather(np.array([0, 12]))
  assert batch['image'].shape == (2, 16, 16, 3) and batch['image'].dtype == np.float32
  assert -1 <= batch['image'].min() and batch['image'].max() <= 1
  assert list(batch['label']) == [0, 1]
  with pytest.raises(UserError, match='needs data.image_size'):
    images.image_source(_data_cfg(path=class_folder, image_size=0))
  with pytest.raises(UserError, match='needs data.path'):
    images.image_source(_data_cfg())


def _gan_config(path, overrides=()):
  return load_config('gan/configs/sngan_folder.py:32,quick',
                     [f'data.path={path}', *overrides])


def test_pipeline_resumes_from_its_state(class_folder):
  config = _gan_config(class_folder)
  gdata = build_data(config)
  assert gdata.shape == (32, 32, 3) and gdata.num_examples == 13
  gdata.iterator.take(5)
  state = gdata.iterator.get_state()
  want = gdata.iterator.take(3)
  again = build_data(config)
  again.iterator.set_state(state)
  got = again.iterator.take(3)
  np.testing.assert_array_equal(got['image'], want['image'])
  np.testing.assert_array_equal(got['index'], want['index'])


def test_conditional_folders_need_matching_classes(class_folder, tmp_path):
  cond = _gan_config(class_folder, ['model.num_classes=2'])
  assert build_data(cond).labels
  with pytest.raises(UserError, match='model.num_classes=3 but .* has 2 class folders'):
    build_data(_gan_config(class_folder, ['model.num_classes=3']))
  for i in range(4):
    _save(str(tmp_path / 'flat' / f'{i}.png'), _colour(i))
  with pytest.raises(UserError, match='needs class sub-folders'):
    build_data(_gan_config(str(tmp_path / 'flat'), ['model.num_classes=2']))


@pytest.mark.slow
def test_conditional_sngan_with_diffaugment_trains_on_a_folder(class_folder, tmp_path):
  from gan import train
  config = _gan_config(class_folder, ['model.num_classes=2', 'augment.name=diffaug'])
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['step'] == 4 and np.isfinite(summary['loss_d'])
  assert os.path.exists(tmp_path / 'run' / 'images' / 'samples.png')


def test_subset_trains_on_the_same_fixed_images_whatever_the_seed():
  def indices(seed, subset):
    gdata = build_data(load_config('gan/configs/digits_few.py:quick',
                                   [f'seed={seed}', f'data.subset={subset}']))
    x = gdata.iterator.take(20)['image']  # 1,280 draws: every image of the subset
    return gdata.num_examples, np.unique(x.reshape(-1, 64), axis=0)

  n, seen = indices(0, 180)
  n1, seen1 = indices(1, 180)
  assert n == n1 == 180 and 170 < len(seen) <= 180 and np.array_equal(seen, seen1)
  assert indices(0, 0)[0] == 1797
  with pytest.raises(UserError, match='data.subset=2000 must be in 0..1797'):
    indices(0, 2000)
