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
  """Train and test sources plus what a model and a feature cache need to know."""
  train: Any
  test: Any
  num_classes: int
  class_names: list[str]
  image_size: int
  train_key: str  # identifies the train records' content, for the feature cache
  test_key: str


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


def parse_classes(spec: str) -> list[int]:
  """'0-4' or '5,7,9' -> sorted digit classes."""
  out = set()
  try:
    for part in str(spec).split(','):
      lo, _, hi = part.strip().partition('-')
      out.update(range(int(lo), int(hi or lo) + 1))
  except ValueError:
    raise UserError(f'data.classes {spec!r} is not like "0-4" or "5,7,9"; fix it') from None
  if not out or min(out) < 0 or max(out) > 9:
    raise UserError(f'data.classes {spec!r} must name digits 0..9')
  return sorted(out)


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


def per_class_split(labels: np.ndarray, num_classes: int, rng: np.random.Generator,
                    train_per_class: int = 0, test_fraction: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) indices: `train_per_class` per class (or all but `test_fraction`)."""
  train, test = [], []
  for c in range(num_classes):
    idx = rng.permutation(np.flatnonzero(labels == c))
    if train_per_class:
      if train_per_class >= len(idx):
        raise UserError(f'data.train_per_class={train_per_class} leaves no test examples of '
                        f'class {c} ({len(idx)} in all); lower it')
      k = train_per_class
    else:
      k = len(idx) - int(round(len(idx) * test_fraction))
    train.append(idx[:k])
    test.append(idx[k:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _digits(cfg: ml_collections.ConfigDict, seed: int) -> TransferData:
  classes = parse_classes(cfg.classes)
  images, labels = digits_images(classes, cfg.image_size)
  rng = np.random.default_rng(seed)
  train, test = per_class_split(labels, len(classes), rng, cfg.train_per_class, cfg.test_fraction)
  if cfg.test_limit:
    test = np.sort(rng.permutation(test)[:cfg.test_limit])
  source = common_data.ArraySource({'image': images, 'label': labels})
  key = f'digits-{cfg.classes}-{cfg.image_size}-' + _digest(train, test)
  return TransferData(SubsetSource(source, train), SubsetSource(source, test), len(classes),
                      [str(c) for c in classes], cfg.image_size, key + '-train', key + '-test')


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
  files, labels, classes = scan_folder(cfg.path)
  train_tf = square_transform(cfg.image_size, cfg.resize_size, cfg.augment)
  test_tf = square_transform(cfg.image_size, cfg.resize_size, False)
  if cfg.test_path:
    test_files, test_labels, test_classes = scan_folder(cfg.test_path)
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
  train = ImageFolderSource([files[i] for i in train_idx], labels[train_idx], train_tf)
  test = ImageFolderSource(test_files, test_labels, test_tf)
  sizes = f'{cfg.image_size}-{cfg.resize_size}'
  return TransferData(train, test, len(classes), classes, cfg.image_size,
                      f'folder-{sizes}-{int(cfg.augment)}-' + _digest(np.asarray(train.files), train.labels),
                      f'folder-{sizes}-' + _digest(np.asarray(test.files), test.labels))


# --- TFDS --------------------------------------------------------------------------------------


def _tfds(cfg: ml_collections.ConfigDict, seed: int) -> TransferData:
  spec = TFDS_DATASETS[cfg.name]
  data_dir = cfg.data_dir or None
  train_split, test_split = cfg.train_split or spec.train, cfg.test_split or spec.test
  raw_train = common_data.tfds_source(cfg.name, train_split, data_dir)
  raw_test = common_data.tfds_source(cfg.name, test_split, data_dir)
  label = raw_train.dataset_info.features['label']
  names = list(label.names)

  def decoder(transform):
    return lambda r: {'image': transform(common_data.decode_image(r['image'])),
                      'label': np.int32(r['label'])}

  train = common_data.RecordSource(
      raw_train, decoder(square_transform(cfg.image_size, cfg.resize_size, cfg.augment)))
  test = common_data.RecordSource(raw_test, decoder(square_transform(cfg.image_size,
                                                                     cfg.resize_size, False)))
  key = f'tfds-{cfg.name}-{cfg.image_size}-{cfg.resize_size}'
  if cfg.train_per_class:
    # Reading every label decodes no image but touches every record once.
    labels = np.asarray([raw_train[i]['label'] for i in range(len(raw_train))])
    idx, _ = per_class_split(labels, len(names), np.random.default_rng(seed), cfg.train_per_class)
    train = SubsetSource(train, idx)
    key += '-' + _digest(idx)
  return TransferData(train, test, len(names), names, cfg.image_size,
                      f'{key}-{train_split}-{int(cfg.augment)}', f'{key}-{test_split}')


def load_data(cfg: ml_collections.ConfigDict, seed: int) -> TransferData:
  """The dataset `cfg.name` (a config's `data` section); `seed` draws few-label subsets."""
  if cfg.name not in DATASETS:
    raise unknown_name('dataset', cfg.name, DATASETS)
  if cfg.image_size < 8 or (cfg.name != 'digits' and cfg.resize_size < cfg.image_size):
    raise UserError(f'data.image_size must be >= 8 and data.resize_size >= image_size; got '
                    f'{cfg.image_size} and {cfg.resize_size}')
  if cfg.train_per_class < 0 or not 0 <= cfg.test_fraction < 1:
    raise UserError('data.train_per_class must be >= 0 and data.test_fraction in [0, 1)')
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
