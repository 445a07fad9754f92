"""Image datasets for GANs: scikit-learn's bundled digits (offline) and prepared TFDS datasets.

Images come out as float32 [H, W, C] in [-1, 1], the generator's tanh range.
"""
from __future__ import annotations

import numpy as np

from common import data
from common.errors import unknown_name

TFDS_IMAGE_DATASETS = {'mnist': (28, 28, 1), 'fashion_mnist': (28, 28, 1), 'cifar10': (32, 32, 3)}
IMAGE_DATASETS = ('digits', *TFDS_IMAGE_DATASETS)


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


def _tfds_decode(record: dict) -> dict:
  image = data.decode_image(record['image']).astype(np.float32) / 127.5 - 1.0
  return {'image': image, 'label': np.int32(record['label'])}


def image_source(name: str, split: str = 'train', data_dir: str | None = None):
  """(grain-ready source with 'image' and 'label', image shape (H, W, C))."""
  if name == 'digits':
    x, y = digits_arrays()
    return data.ArraySource({'image': x, 'label': y}), x.shape[1:]
  if name in TFDS_IMAGE_DATASETS:
    src = data.tfds_source(name, split, data_dir)
    return data.RecordSource(src, _tfds_decode), TFDS_IMAGE_DATASETS[name]
  raise unknown_name('image dataset', name, IMAGE_DATASETS)
