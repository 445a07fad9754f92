"""Image classification data for transfer learning, as grain-ready sources.

Every source yields records `{'image': uint8 [S, S, 3], 'label': int32}` with
`len()` and `gather(indices)` (see `common.data`); `preprocess` for the
weights' style runs later, on device. Datasets by `data.name`:

- 'digits': scikit-learn's bundled 8x8 digits, upsampled to `image_size`,
  gray -> RGB (offline; the embedded default). `data.classes` picks digits,
  `data.train_per_class` labelled examples each, the rest are the test split.
- 'folder': one sub-folder per class under `data.path`, like Keras'
  `image_dataset_from_directory` (classes sorted by name); the test split is
  `data.test_path` or a per-class `data.test_fraction` held out.
- any name in `TFDS_DATASETS`: a prepared TFDS dataset through
  `common.data.tfds_source`.

Train records are `resize_size` squares when `data.augment` (the device crops
them to `image_size` with `random_resized_crop_flip`), else centre crops like
the test records.

`data.val_fraction` > 0 holds out that part of each class of the training split
as a validation split (centre crops, like the test records), drawn with the
seed; `data.class_subset` keeps some of a folder's or TFDS dataset's classes
(names or index ranges; digits have `data.classes`, e.g. '0-4').
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import warnings
from typing import Any, Callable

import ml_collections
import numpy as np

from common import data as common_data
from common.data import SubsetSource
from common.errors import UserError, unknown_name
from transfer import preprocessing
from transfer.splits import (_relabel, parse_classes, per_class_split, select_classes,
                             split_validation)


@dataclasses.dataclass(frozen=True)
class TfdsSpec:
  train: str
  test: str


# Splits for datasets that have no test split hold out the last 20% of train.
TFDS_DATASETS = {
    'tf_flowers': TfdsSpec('train[:80%]', 'train[80%:]'),
    'oxford_iiit_pet': TfdsSpec('train', 'test'),
    'cats_vs_dogs': TfdsSpec('train[:80%]', 'train[80%:]'),
    'cifar10': TfdsSpec('train', 'test'),
    'cifar100': TfdsSpec('train', 'test'),
    'oxford_flowers102': TfdsSpec('train', 'test'),
    'caltech_birds2011': TfdsSpec('train', 'test'),
    'stanford_dogs': TfdsSpec('train', 'test'),
    'food101': TfdsSpec('train', 'validation'),
    'beans': TfdsSpec('train', 'test'),
    'dtd': TfdsSpec('train', 'test'),
}
DATASETS = ('digits', 'folder', *TFDS_DATASETS)
# What Keras' image_dataset_from_directory reads, plus TIFF and WebP.
IMAGE_EXTENSIONS = ('.bmp', '.gif', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')


@dataclasses.dataclass
class TransferData:
  """Train, test (and validation) sources plus what a model and a feature cache need to know."""
  train: Any
  test: Any
  num_classes: int
  class_names: list[str]
  image_size: int
  train_key: str  # identifies the train records' content, for the feature cache
  test_key: str
  val: Any = None  # data.val_fraction > 0: held out of the training split
  val_key: str = ''


def to_rgb(image: np.ndarray) -> np.ndarray:
  """uint8 [H, W], [H, W, 1|2|3|4] -> [H, W, 3]: gray repeated, alpha dropped."""
  image = np.asarray(image)
  if image.ndim == 2:
    image = image[..., None]
  if image.shape[-1] in (1, 2):
    image = np.repeat(image[..., :1], 3, axis=-1)
  return np.ascontiguousarray(image[..., :3])


def square_transform(image_size: int, resize_size: int, augment: bool
                     ) -> Callable[[np.ndarray], np.ndarray]:
  """uint8 RGB [H, W, 3] -> a square: `resize_size` for augmented training
  (cropped later on device), else the eval centre crop of `image_size`."""
  crop = resize_size if augment else image_size

  def transform(image):
    image = to_rgb(image)
    if image.shape[:2] == (crop, crop) and resize_size == crop:
      return image
    return preprocessing.resize_center_crop(image[None], resize_size, crop)[0]
  return transform


# --- scikit-learn digits ---------------------------------------------------------------------


def digits_images(classes: list[int], image_size: int) -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn digits of `classes` as uint8 RGB [N, S, S, 3] and labels 0..len(classes)-1."""
  from PIL import Image
  from sklearn.datasets import load_digits
  d = load_digits()
  keep = np.isin(d.target, classes)
  small = np.clip(d.images[keep] * (255.0 / 16.0) + 0.5, 0, 255).astype(np.uint8)
  big = np.stack([np.asarray(Image.fromarray(x).resize((image_size, image_size),
                                                       Image.BILINEAR)) for x in small])
  labels = np.searchsorted(np.asarray(classes), d.target[keep]).astype(np.int32)
  return np.repeat(big[..., None], 3, axis=-1), labels


def _digits(cfg: ml_collections.ConfigDict, seed: int) -> TransferData:
  classes = parse_classes(cfg.classes)
  images, labels = digits_images(classes, cfg.image_size)
  rng = np.random.default_rng(seed)
  names = [str(c) for c in classes]
  train, test = per_class_split(labels, len(classes), rng, cfg.train_per_class, cfg.test_fraction)
  if cfg.test_limit:
    test = np.sort(rng.permutation(test)[:cfg.test_limit])
  train, val = split_validation(labels, train, cfg.val_fraction, seed, names)
  source = common_data.ArraySource({'image': images, 'label': labels})
  key = f'digits-{cfg.classes}-{cfg.image_size}-' + _digest(train, test)
  data = TransferData(SubsetSource(source, train), SubsetSource(source, test), len(classes),
                      names, cfg.image_size, key + '-train', key + '-test')
  if len(val):
    data.val, data.val_key = SubsetSource(source, val), f'{key}-val-{_digest(val)}'
  return data


def _digest(*arrays) -> str:
  h = hashlib.sha256()
  for a in arrays:
    h.update(np.ascontiguousarray(a).tobytes())
  return h.hexdigest()[:12]


# --- image folders ---------------------------------------------------------------------------


class ImageFolderSource:
  """Images listed in `files` with `labels`, decoded with pillow and made square."""

  def __init__(self, files: list[str], labels: np.ndarray,
               transform: Callable[[np.ndarray], np.ndarray]):
    self.files = list(files)
    self.labels = np.asarray(labels, np.int32)
    self.transform = transform

  def __len__(self) -> int:
    return len(self.files)

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    images = [self.transform(_read_image(self.files[int(i)])) for i in indices]
    return {'image': np.stack(images), 'label': self.labels[np.asarray(indices)]}


def _read_image(path: str) -> np.ndarray:
  from PIL import Image
  with Image.open(path) as im:
    return np.asarray(im.convert('RGB'))


def _readable(path: str) -> bool:
  from PIL import Image
  try:
    with Image.open(path) as im:
      im.load()  # decode fully: a truncated file passes Image.open alone
    return True
  except Exception:  # pillow raises many types for a bad file
    return False


def scan_folder(root: str) -> tuple[list[str], np.ndarray, list[str]]:
  """(files, labels, class names) of a one-sub-folder-per-class tree.

  Classes are the sub-folders sorted by name. Unreadable images are skipped
  with one warning that counts them; no class folders, or a class without a
  readable image, is a UserError.
  """
  if not os.path.isdir(root):
    raise UserError(f'image folder {root!r} does not exist; set data.path to a folder with one '
                    'sub-folder per class')
  classes = sorted(d for d in os.listdir(root)
                   if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))
  if not classes:
    raise UserError(f'image folder {root!r} has no class sub-folders; put the images of each '
                    'class in their own sub-folder')
  files, labels, skipped = [], [], []
  for c, name in enumerate(classes):
    found = 0
    for dirpath, dirnames, filenames in sorted(os.walk(os.path.join(root, name))):
      dirnames.sort()
      for f in sorted(filenames):
        if f.startswith('.') or not f.lower().endswith(IMAGE_EXTENSIONS):
          continue
        path = os.path.join(dirpath, f)
        if _readable(path):
          files.append(path)
          labels.append(c)
          found += 1
        else:
          skipped.append(os.path.relpath(path, root))
    if not found:
      raise UserError(f'class folder {os.path.join(root, name)!r} has no readable images; add '
                      'images or remove the folder')
  if skipped:
    warnings.warn(f'skipped {len(skipped)} unreadable image(s) in {root}: '
                  f'{", ".join(skipped[:5])}{", ..." if len(skipped) > 5 else ""}')
  return files, np.asarray(labels, np.int32), classes


def _folder(cfg: ml_collections.ConfigDict, seed: int) -> TransferData:
  if not cfg.path:
    raise UserError('data.name=folder needs data.path: a folder with one sub-folder per class')
  files, labels, classes = _select_files(*scan_folder(cfg.path), cfg.class_subset)
  train_tf = square_transform(cfg.image_size, cfg.resize_size, cfg.augment)
  test_tf = square_transform(cfg.image_size, cfg.resize_size, False)
  if cfg.test_path:
    test_files, test_labels, test_classes = scan_folder(cfg.test_path)
    test_files, test_labels, test_classes = _select_files(test_files, test_labels, test_classes,
                                                          cfg.class_subset)
    if test_classes != classes:
      raise UserError(f'data.test_path classes {test_classes} differ from data.path classes '
                      f'{classes}; use the same sub-folder names')
    train_idx = np.arange(len(files))
    if cfg.train_per_class:
      train_idx, _ = per_class_split(labels, len(classes), np.random.default_rng(seed),
                                     cfg.train_per_class)
  else:
    if not cfg.train_per_class and not 0 < cfg.test_fraction < 1:
      raise UserError('an image folder without data.test_path needs data.test_fraction in (0, 1) '
                      'or data.train_per_class')
    train_idx, test_idx = per_class_split(labels, len(classes), np.random.default_rng(seed),
                                          cfg.train_per_class, cfg.test_fraction)
    test_files, test_labels = [files[i] for i in test_idx], labels[test_idx]
  train_idx, val_idx = split_validation(labels, train_idx, cfg.val_fraction, seed, classes)
  train = ImageFolderSource([files[i] for i in train_idx], labels[train_idx], train_tf)
  test = ImageFolderSource(test_files, test_labels, test_tf)
  sizes = f'{cfg.image_size}-{cfg.resize_size}'
  data = TransferData(train, test, len(classes), classes, cfg.image_size,
                      f'folder-{sizes}-{int(cfg.augment)}-' + _digest(np.asarray(train.files),
                                                                      train.labels),
                      f'folder-{sizes}-' + _digest(np.asarray(test.files), test.labels))
  if len(val_idx):
    val = ImageFolderSource([files[i] for i in val_idx], labels[val_idx], test_tf)
    data.val, data.val_key = val, f'folder-{sizes}-val-' + _digest(np.asarray(val.files))
  return data


def _select_files(files: list[str], labels: np.ndarray, classes: list[str], spec: str
                  ) -> tuple[list[str], np.ndarray, list[str]]:
  """The files of the classes `spec` selects (`select_classes`), relabelled 0.. in order."""
  selected = select_classes(spec, classes)
  if len(selected) == len(classes):
    return files, labels, classes
  mapping = _relabel(selected, len(classes))
  keep = np.flatnonzero(mapping[labels] >= 0)
  return ([files[i] for i in keep], mapping[labels[keep]].astype(np.int32),
          [classes[c] for c in selected])


# --- TFDS --------------------------------------------------------------------------------------


def _tfds(cfg: ml_collections.ConfigDict, seed: int) -> TransferData:
  spec = TFDS_DATASETS[cfg.name]
  data_dir = cfg.data_dir or None
  train_split, test_split = cfg.train_split or spec.train, cfg.test_split or spec.test
  raw_train = common_data.tfds_source(cfg.name, train_split, data_dir)
  raw_test = common_data.tfds_source(cfg.name, test_split, data_dir)
  label = raw_train.dataset_info.features['label']
  all_names = list(label.names)
  selected = select_classes(cfg.class_subset, all_names)
  mapping = _relabel(selected, len(all_names))
  names = [all_names[c] for c in selected]

  def decoder(transform):
    return lambda r: {'image': transform(common_data.decode_image(r['image'])),
                      'label': np.int32(mapping[r['label']])}

  train_tf = square_transform(cfg.image_size, cfg.resize_size, cfg.augment)
  test_tf = square_transform(cfg.image_size, cfg.resize_size, False)
  train = common_data.RecordSource(raw_train, decoder(train_tf))
  test = common_data.RecordSource(raw_test, decoder(test_tf))
  key = f'tfds-{cfg.name}-{cfg.image_size}-{cfg.resize_size}'
  idx, val_idx = None, np.zeros((0,), np.int64)
  if cfg.train_per_class or cfg.val_fraction or len(selected) < len(all_names):
    # Reading every label decodes no image but touches every record once.
    labels = mapping[np.asarray([raw_train[i]['label'] for i in range(len(raw_train))])]
    idx = np.flatnonzero(labels >= 0)
    if cfg.train_per_class:
      idx, _ = per_class_split(np.where(labels >= 0, labels, len(names)), len(names),
                               np.random.default_rng(seed), cfg.train_per_class)
    idx, val_idx = split_validation(labels, idx, cfg.val_fraction, seed, names)
    train = SubsetSource(train, idx)
    key += '-' + _digest(idx)
  if len(selected) < len(all_names):
    test_labels = mapping[np.asarray([raw_test[i]['label'] for i in range(len(raw_test))])]
    test = SubsetSource(test, np.flatnonzero(test_labels >= 0))
    key += '-classes-' + _digest(np.asarray(selected))
  data = TransferData(train, test, len(names), names, cfg.image_size,
                      f'{key}-{train_split}-{int(cfg.augment)}', f'{key}-{test_split}')
  if len(val_idx):
    data.val = SubsetSource(common_data.RecordSource(raw_train, decoder(test_tf)), val_idx)
    data.val_key = f'{key}-{train_split}-val-{_digest(val_idx)}'
  return data


def load_data(cfg: ml_collections.ConfigDict, seed: int) -> TransferData:
  """The dataset `cfg.name` (a config's `data` section); `seed` draws few-label subsets."""
  if cfg.name not in DATASETS:
    raise unknown_name('dataset', cfg.name, DATASETS)
  if cfg.image_size < 8 or (cfg.name != 'digits' and cfg.resize_size < cfg.image_size):
    raise UserError(f'data.image_size must be >= 8 and data.resize_size >= image_size; got '
                    f'{cfg.image_size} and {cfg.resize_size}')
  if cfg.train_per_class < 0 or not 0 <= cfg.test_fraction < 1:
    raise UserError('data.train_per_class must be >= 0 and data.test_fraction in [0, 1)')
  if not 0 <= cfg.val_fraction < 1:
    raise UserError(f'data.val_fraction must be in [0, 1) (0: no validation split), got '
                    f'{cfg.val_fraction}')
  if cfg.name == 'digits':
    return _digits(cfg, seed)
  if cfg.name == 'folder':
    return _folder(cfg, seed)
  return _tfds(cfg, seed)


def read_all(source, batch_size: int = 256) -> dict[str, np.ndarray]:
  """Every record of a (small) source, in order."""
  parts = [source.gather(np.arange(i, min(i + batch_size, len(source))))
           for i in range(0, len(source), batch_size)]
  return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
