"""Image datasets for GANs: scikit-learn's bundled digits (offline), prepared TFDS datasets and
any folder of images (`gan.folder`).

Records come out as {'image': float32 [S, S, C] in [-1, 1] (the generator's tanh range),
'label': int32 (-1 where the dataset has none)}. `data.image_size` > 0 resizes every dataset to
S x S (shorter side to S, centre crop); 0 keeps a dataset's own size where it has one.
"""
from __future__ import annotations

import dataclasses

import ml_collections
import numpy as np

from common import data
from common.errors import UserError, unknown_name
from gan import folder as folder_lib


@dataclasses.dataclass(frozen=True)
class TfdsImages:
  shape: tuple[int, int, int]  # as stored
  split: str  # what unconditional runs train on
  num_classes: int  # 0: no class labels
  labelled_split: str = 'train'  # what conditional runs train on


TFDS_IMAGE_DATASETS = {
  'mnist': TfdsImages((28, 28, 1), 'train', 10),
  'fashion_mnist': TfdsImages((28, 28, 1), 'train', 10),
  'cifar10': TfdsImages((32, 32, 3), 'train', 10),
  'celeb_a': TfdsImages((218, 178, 3), 'train', 0),
  # SNGAN's STL-10 trains on the 100,000 unlabelled images; conditional runs on the labelled 5,000.
  'stl10': TfdsImages((96, 96, 3), 'unlabelled', 10),
}
IMAGE_DATASETS = ('digits', 'folder', *TFDS_IMAGE_DATASETS)
DIGITS_SHAPE = (8, 8, 1)


def digits_arrays(classes=None) -> tuple[np.ndarray, np.ndarray]:
  """scikit-learn's 1,797 8×8 digits as ([N, 8, 8, 1] float32 in [-1, 1], labels [N])."""
  from sklearn.datasets import load_digits
  d = load_digits()
  x = (d.images.astype(np.float32) / 16.0) * 2.0 - 1.0
  y = d.target.astype(np.int32)
  if classes is not None:
    keep = np.isin(y, classes)
    x, y = x[keep], y[keep]
  return x[..., None], y


def _to_uint8(x: np.ndarray) -> np.ndarray:
  return np.clip(np.round((x + 1.0) * 127.5), 0, 255).astype(np.uint8)


def _to_float(x: np.ndarray) -> np.ndarray:
  return x.astype(np.float32) / 127.5 - 1.0


def image_size(data_cfg: ml_collections.ConfigDict) -> int:
  size = int(data_cfg.get('image_size', 0))
  if size < 0 or (size and size < 4):
    raise UserError(f'data.image_size must be 0 (the dataset\'s own size) or at least 4, got '
                    f'{size}')
  return size


def num_classes(name: str) -> int | None:
  """Classes of the labelled image dataset `name` (0: no labels); None for a folder (known once
  it is scanned)."""
  if name == 'digits':
    return 10
  if name in TFDS_IMAGE_DATASETS:
    return TFDS_IMAGE_DATASETS[name].num_classes
  return None


def train_split(data_cfg: ml_collections.ConfigDict, conditional: bool = False) -> str:
  """The split a GAN trains on: data.split, else the dataset's own choice ('all' for digits
  and folders, which have no splits)."""
  name = data_cfg.name
  if name in TFDS_IMAGE_DATASETS:
    spec = TFDS_IMAGE_DATASETS[name]
    return data_cfg.get('split') or (spec.labelled_split if conditional else spec.split)
  if data_cfg.get('split'):
    raise UserError(f'data.split={data_cfg.split!r} applies to TFDS datasets; {name} has no '
                    'splits: leave data.split empty')
  return 'all'


def image_source(data_cfg: ml_collections.ConfigDict, conditional: bool = False):
  """(grain-ready source of float records, image shape (S, S, C)) for the train split."""
  name, size = data_cfg.name, image_size(data_cfg)
  if name == 'digits':
    x, y = digits_arrays()
    if size and size != DIGITS_SHAPE[0]:
      x = _to_float(np.stack([folder_lib.fit_square(i, size) for i in _to_uint8(x)]))
    return data.ArraySource({'image': x, 'label': y}), x.shape[1:]
  if name == 'folder':
    if not size:
      raise UserError('data.name=folder needs data.image_size: the side its images are resized '
                      'and centre-cropped to (the model\'s resolution, e.g. 32 or 64)')
    found = folder_lib.scan(data_cfg.get('path', ''))
    return folder_lib.FolderSource(found, size), (size, size, found.channels)
  if name in TFDS_IMAGE_DATASETS:
    spec = TFDS_IMAGE_DATASETS[name]
    if not size and spec.shape[0] != spec.shape[1]:
      raise UserError(f'{name} images are {spec.shape[0]}x{spec.shape[1]}: set data.image_size '
                      '(e.g. 64) to resize and centre-crop them to squares')
    src = data.tfds_source(name, train_split(data_cfg, conditional), data_cfg.data_dir or None)
    fit = bool(size) and size != spec.shape[0]

    def decode(record):
      image = data.decode_image(record['image'])
      image = folder_lib.fit_square(image, size) if fit else image
      return {'image': _to_float(image), 'label': np.int32(record.get('label', -1))}

    side = size or spec.shape[0]
    return data.RecordSource(src, decode), (side, side, spec.shape[2])
  raise unknown_name('image dataset', name, IMAGE_DATASETS)


def image_shape(data_cfg: ml_collections.ConfigDict) -> tuple[int, int, int]:
  """The (S, S, C) a config's image data has, without reading it (folders: a header scan)."""
  name, size = data_cfg.name, image_size(data_cfg)
  if name == 'digits':
    return (size or 8, size or 8, 1)
  if name in TFDS_IMAGE_DATASETS:
    spec = TFDS_IMAGE_DATASETS[name].shape
    return (size or spec[0], size or spec[0], spec[2])
  return tuple(image_source(data_cfg)[1])


def dataset_key(data_cfg: ml_collections.ConfigDict) -> str:
  """Names the images a run trains on, for cached statistics: dataset, size and, for a folder,
  a digest of its listing."""
  name, size = data_cfg.name, image_size(data_cfg)
  if name == 'folder':
    return f'folder-{folder_lib.scan(data_cfg.path).digest()}-{size}px'
  return f'{name}-{size}px' if size else name
