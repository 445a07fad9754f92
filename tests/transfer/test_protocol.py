"""The tutorial's protocol: validation split, selection and early stopping, heads with dropout,
Keras-style augmentation, class subsets; and predictions on new images from a finished run."""
import json
import os

import jax
import jax.numpy as jnp
import flax.linen as nn
import numpy as np
import pytest
from PIL import Image

from common.config import load_config
from common.errors import UserError
from launch import predict as predict_cli
from transfer import augment, create_model, heads, predict, selection, splits
from transfer import data as data_lib
from transfer import loop

DIGITS = 'transfer/configs/digits.py:fine_tune,quick'


# ----------------------------------------------------------------------------------------------
# Splits.


def test_validation_split_is_per_class_and_deterministic_per_seed():
  labels = np.repeat(np.arange(3), 10)
  train = np.arange(30)
  a = splits.split_validation(labels, train, 0.2, 0, ['a', 'b', 'c'])
  b = splits.split_validation(labels, train, 0.2, 0, ['a', 'b', 'c'])
  c = splits.split_validation(labels, train, 0.2, 1, ['a', 'b', 'c'])
  np.testing.assert_array_equal(a[1], b[1])
  assert not np.array_equal(a[1], c[1])
  assert np.bincount(labels[a[1]]).tolist() == [2, 2, 2]
  assert sorted(np.concatenate(a).tolist()) == list(range(30))


def test_validation_split_refuses_a_class_without_validation_examples():
  labels = np.asarray([0] * 10 + [1] * 2)
  with pytest.raises(UserError) as info:
    splits.split_validation(labels, np.arange(12), 0.2, 0, ['cat', 'dog'])
  assert str(info.value) == (
      "data.val_fraction=0.2 leaves class 'dog' with no validation example (it has 2 training "
      'example(s), 2 x 0.2 rounds to 0); change data.val_fraction or use more training examples '
      'per class')


def test_class_subsets_by_name_and_index_range():
  names = ['apple_pie', 'baklava', 'churros', 'donuts']
  assert splits.select_classes('', names) == [0, 1, 2, 3]
  assert splits.select_classes('0-1,donuts', names) == [0, 1, 3]
  with pytest.raises(UserError, match="'pizza', which is neither a class"):
    splits.select_classes('pizza', names)
  with pytest.raises(UserError, match='outside the 4 classes'):
    splits.select_classes('0-9', names)


def _folder(root, classes, per_class, size=20, start=0):
  rng = np.random.default_rng(start)
  for c in classes:
    os.makedirs(root / c, exist_ok=True)
    for i in range(per_class):
      pixels = rng.integers(0, 255, (size, size + 4, 3), dtype=np.uint8)
      Image.fromarray(pixels).save(root / c / f'{start + i}.png')
  return root


def test_folder_class_subset_and_validation_split(tmp_path):
  root = _folder(tmp_path / 'images', ['a', 'b', 'c'], 10)
  config = load_config(DIGITS, ['data.name=folder', f'data.path={root}', 'data.class_subset=a,c',
                                'data.val_fraction=0.2', 'data.train_per_class=0',
                                'data.test_fraction=0.2'])
  data = data_lib.load_data(config.data, seed=0)
  assert data.class_names == ['a', 'c'] and data.num_classes == 2
  assert (len(data.train), len(data.val), len(data.test)) == (12, 4, 4)
  val = data_lib.read_all(data.val)
  assert sorted(val['label'].tolist()) == [0, 0, 1, 1]
  assert val['image'].shape[1:] == (16, 16, 3)
  assert not set(data.val.files) & set(data.train.files)


# ----------------------------------------------------------------------------------------------
# Selection.


def test_selection_keeps_the_best_and_stops_after_patience():
  sel = selection.Selection('val_loss', patience=2, min_delta=0.01)
  assert sel.update({'val_loss': 1.0}, 10)
  assert not sel.update({'val_loss': 0.995}, 20)  # within min_delta: no improvement
  assert not sel.should_stop()
  assert not sel.update({'val_loss': 1.2}, 30)
  assert sel.should_stop() and (sel.best, sel.best_step) == (1.0, 10)
  copy = selection.Selection('val_loss')
  copy.restore(sel.state())
  assert copy.state() == sel.state()


# ----------------------------------------------------------------------------------------------
# Heads and augmentation.


class _TinyBackbone(nn.Module):
  """A 1-conv stand-in: the head code is the same for every family."""

  @nn.compact
  def __call__(self, x, dropout=False):
    x = nn.Conv(4, (3, 3), strides=(2, 2), name='block1')(x)
    feats = heads.pooled_features(x, 'flatten')
    return heads.classifier(feats, 3, (8, 6), 0.5, dropout), feats


def test_flatten_head_with_dropout_and_its_cached_twin():
  model = _TinyBackbone()
  x = jax.random.normal(jax.random.key(0), (2, 6, 6, 3))
  variables = model.init(jax.random.key(1), x)
  assert sorted(heads.top_params(variables['params'])) == ['fc1', 'fc2', 'head']
  out, feats = model.apply(variables, x)
  assert feats.shape == (2, 3 * 3 * 4)
  np.testing.assert_allclose(heads.head_logits(heads.top_params(variables['params']), feats),
                             out, rtol=1e-5, atol=1e-6)
  dropped, _ = model.apply(variables, x, dropout=True, rngs={'dropout': jax.random.key(2)})
  assert not np.allclose(dropped, out)
  np.testing.assert_array_equal(model.apply(variables, x)[0], out)  # no dropout in inference


def test_models_take_the_head_options():
  model = create_model('vgg16', 4, 'keras', head='flatten', head_hidden=(4096, 1072),
                       head_dropout=0.2)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))['params']
  assert params['fc1']['kernel'].shape == (7 * 7 * 512, 4096)
  assert params['head']['kernel'].shape == (1072, 4) and 'fc3' not in params
  with pytest.raises(UserError, match="unknown head 'avg'"):
    create_model('inception_v3', 4, head='avg')


def test_keras_augmentation_is_deterministic_per_key():
  images = np.random.default_rng(0).integers(0, 255, (4, 12, 10, 3), dtype=np.uint8)
  aug = augment.KerasAugment(rotation=30, width_shift=0.2, height_shift=0.2, zoom=0.2,
                             brightness=(0.5, 1.5), horizontal_flip=True, vertical_flip=True)
  a = augment.preview(images, aug, seed=1)
  assert a.dtype == np.uint8 and a.shape == images.shape
  np.testing.assert_array_equal(a, augment.preview(images, aug, seed=1))
  assert not np.array_equal(a, augment.preview(images, aug, seed=2))
  np.testing.assert_array_equal(augment.preview(images, augment.KerasAugment(), 1), images)


def test_flips_alone_mirror_exactly():
  images = np.random.default_rng(0).integers(0, 255, (16, 6, 5, 3), dtype=np.uint8)
  out = augment.preview(images, augment.KerasAugment(horizontal_flip=True), seed=3)
  for image, got in zip(images, out):
    assert np.array_equal(got, image) or np.array_equal(got, image[:, ::-1])
  assert any(not np.array_equal(g, i) for g, i in zip(out, images))


def test_bad_augmentation_ranges_are_refused():
  config = load_config(DIGITS, ['data.brightness_range=(1.5, 0.5)'])
  with pytest.raises(UserError, match='data.brightness_range must be'):
    loop.validate(config)


# ----------------------------------------------------------------------------------------------
# Predictions: error paths (no model needed).


def _fake_finished_run(workdir):
  weights = workdir / 'weights'
  weights.mkdir(parents=True)
  (weights / 'metadata.json').write_text(json.dumps(
      {'format_version': 1, 'arch': 'resnet18', 'style': 'torchvision', 'include_top': True,
       'num_classes': 2, 'class_names': ['a', 'b'], 'image_size': 16}))
  return workdir


def _one_line(call):
  with pytest.raises(UserError) as info:
    call()
  assert '\n' not in str(info.value)
  return str(info.value)


def test_predict_refuses_a_workdir_without_a_finished_run(tmp_path):
  (tmp_path / 'run').mkdir()
  message = _one_line(lambda: predict.predict_paths(str(tmp_path / 'run'), [str(tmp_path)]))
  assert message.startswith(f'workdir {tmp_path / "run"} has no finished run')


def test_predict_refuses_an_unreadable_image_and_an_empty_folder(tmp_path):
  workdir = str(_fake_finished_run(tmp_path / 'run'))
  (tmp_path / 'broken.png').write_bytes(b'not a png')
  message = _one_line(lambda: predict.predict_paths(workdir, [str(tmp_path / 'broken.png')]))
  assert message.startswith(f'image {tmp_path / "broken.png"} is unreadable')
  (tmp_path / 'empty').mkdir()
  message = _one_line(lambda: predict.predict_paths(workdir, [str(tmp_path / 'empty')]))
  assert message.startswith(f'folder {tmp_path / "empty"} has no images')


# ----------------------------------------------------------------------------------------------
# End to end.


def _digit_folders(root, classes=('5', '6', '7', '8', '9'), per_class=2):
  images, labels = data_lib.digits_images([int(c) for c in classes], 16)
  for c in range(len(classes)):
    os.makedirs(root / classes[c], exist_ok=True)
    for i, j in enumerate(np.flatnonzero(labels == c)[:per_class]):
      Image.fromarray(images[j]).save(root / classes[c] / f'{i}.png')
  return root


@pytest.mark.slow
def test_run_selects_on_validation_stops_early_and_predicts(tmp_path, capsys):
  """Evaluations during training are on validation only, the test split is scored once with
  the selected weights, and launch.predict reads them back."""
  workdir = tmp_path / 'run'
  config = load_config(DIGITS, ['data.train_per_class=10', 'data.val_fraction=0.2',
                                'train.patience=1', 'train.epochs=6', 'data.batch_size=10',
                                'train.log_every=1', 'optim.lr=0.3'])
  summary, _ = loop.run(config, str(workdir), lambda: '')
  rows = [json.loads(l) for l in open(workdir / 'metrics.jsonl')]
  test_rows = [r for r in rows if 'test_top1' in r]
  assert len(test_rows) == 1 and test_rows[0] is rows[-1]
  val_rows = [r for r in rows if 'val_top1' in r]
  assert val_rows and summary['selected_step'] in [r['step'] for r in val_rows]
  assert summary['num_val'] == 10 and summary['num_train'] == 40
  assert summary['selected_val_top1'] == max(r['val_top1'] for r in val_rows)
  folder = _digit_folders(tmp_path / 'new')
  predict_cli.main(['predict', f'--workdir={workdir}', str(folder), '--top_k=3'])
  out = capsys.readouterr().out
  assert '10 images, accuracy' in out
  lines = open(workdir / 'predictions' / 'predictions.csv').read().splitlines()
  assert lines[0] == 'image,true,top1,p1,top2,p2,top3,p3' and len(lines) == 11
  assert os.path.getsize(workdir / 'predictions' / 'predictions.png') > 0


class _FakeTfds:
  """A prepared TFDS split as `tfds.data_source` returns it: records with 'image' and 'label'."""

  def __init__(self, labels, names):
    self.labels = labels
    label = type('Label', (), {'names': names})()
    self.dataset_info = type('Info', (), {'features': {'label': label}})()

  def __len__(self):
    return len(self.labels)

  def __getitem__(self, i):
    return {'image': np.full((12, 14, 3), i % 255, np.uint8), 'label': int(self.labels[i])}


def test_tfds_class_subset_and_validation_split(monkeypatch):
  names = [f'food{i:02d}' for i in range(12)]
  splits_ = {'train': _FakeTfds(np.arange(240) % 12, names),
             'validation': _FakeTfds(np.arange(60) % 12, names)}
  monkeypatch.setattr(data_lib.common_data, 'tfds_source',
                      lambda name, split, data_dir=None: splits_[split])
  config = load_config('transfer/configs/food101_vgg16.py:quick', [])
  data = data_lib.load_data(config.data, seed=0)
  assert data.class_names == names[:10]
  assert (len(data.train), len(data.val), len(data.test)) == (170, 30, 50)
  labels = data_lib.read_all(data.val)['label']
  assert np.bincount(labels).tolist() == [3] * 10
  assert data_lib.read_all(data.test)['label'].max() == 9


@pytest.mark.slow
def test_backbones_quick_compares_every_arch(tmp_path):
  """digits.py:backbones,quick (plus vgg16_bn, as documented): each arch pretrained here and
  adapted, in one table."""
  config = load_config('transfer/configs/digits.py:backbones,quick',
                       ["ablation.archs=('resnet18','vgg16','vgg16_bn','inception_v3')"])
  from transfer import ablation  # pylint: disable=g-import-not-at-top
  summary = ablation.run_ablation(config, str(tmp_path))
  table = (tmp_path / 'results.md').read_text()
  for arch in ('resnet18', 'vgg16', 'vgg16_bn', 'inception_v3'):
    assert f'| {arch} | fine_tune | 1 |' in table, table
    assert f'{arch}_fine_tune_top1_mean' in summary
    assert (tmp_path / 'pretrain' / arch / 'weights' / 'metadata.json').exists()
  meta = json.loads((tmp_path / 'pretrain' / 'inception_v3' / 'weights' / 'metadata.json')
                    .read_text())
  assert meta['image_size'] == 75
  # The per-arch source recipes reached the source runs: VGG16's SGD, the others' AdamW.
  optims = {arch: json.loads((tmp_path / 'pretrain' / arch / 'run' / 'config.json').read_text())
            ['config']['optim'] for arch in ('resnet18', 'vgg16', 'vgg16_bn')}
  assert (optims['vgg16']['name'], optims['vgg16']['weight_decay']) == ('sgd', 5e-3)
  assert optims['resnet18']['name'] == optims['vgg16_bn']['name'] == 'adamw'
