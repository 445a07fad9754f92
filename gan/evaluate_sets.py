"""Metrics between any two image sets (`python -m launch.evaluate --real=... --fake=...`).

A set is a folder of images (flat or in sub-folders), an .npz of images ('images', or its only
array: uint8 [N, H, W, C] or floats in [-1, 1]; what `launch.sample` writes), or an .npz of
statistics ('mu' [D], 'sigma' [D, D]): this project's, which name their feature network, or the
untagged files pytorch-fid writes (`--save-stats`), taken as its InceptionV3's pool features.
Statistics give FID only; KID, precision/recall and density/coverage need images on both sides,
the Inception Score images on the fake side. Features: the FID InceptionV3 (`--features=
inception`, pytorch-fid's weights) or the digits CNN (`--features=digits`, 8x8 grey images).
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable, Iterator

import numpy as np

from common.errors import UserError
from common.metrics import feature_metrics as fm
from common.metrics import fid as fid_lib
from common.writers import to_uint8
from gan import evaluation
from gan import folder as folder_lib

CHUNK = 500
SET_METRICS = ('fid', 'kid', 'is', 'pr', 'dc')


@dataclasses.dataclass
class ImageSet:
  """One side of a comparison: image chunks [b, H, W, C] in [-1, 1], or statistics."""
  path: str
  count: int
  chunks: Callable[[], Iterator[np.ndarray]] | None = None
  stats: fid_lib.FeatureStats | None = None


def _folder_set(path: str, image_size: int) -> ImageSet:
  found = folder_lib.scan(path)
  first = folder_lib.read_image(found.files[0], found.channels)

  def chunks():
    for start in range(0, len(found.files), CHUNK):
      batch = []
      for f in found.files[start:start + CHUNK]:
        image = folder_lib.read_image(f, found.channels)
        if image_size:
          image = folder_lib.fit_square(image, image_size)
        elif image.shape != first.shape:
          raise UserError(f'{f} is {image.shape[1]}x{image.shape[0]} but {found.files[0]} is '
                          f'{first.shape[1]}x{first.shape[0]}; pass --image_size=S to resize '
                          'and centre-crop every image to S x S')
        batch.append(image)
      yield np.stack(batch).astype(np.float32) / 127.5 - 1.0

  return ImageSet(path, len(found.files), chunks=chunks)


def _image_array(path: str, arrays: dict[str, np.ndarray]) -> np.ndarray:
  x = arrays['images'] if 'images' in arrays else next(iter(arrays.values()))
  if x.ndim == 4 and x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
    x = x.transpose(0, 2, 3, 1)  # NCHW, as torch code saves it
  if x.ndim != 4 or x.shape[-1] not in (1, 3) or not len(x):
    raise UserError(f'{path} holds an array of shape {x.shape}; expected images [N, H, W, C] '
                    'with C = 1 or 3')
  if x.dtype == np.uint8:
    return x
  if not np.issubdtype(x.dtype, np.floating) or x.min() < -1.001 or x.max() > 1.001:
    raise UserError(f'{path} holds {x.dtype} images in [{x.min():.3g}, {x.max():.3g}]; save '
                    'uint8 images or floats in [-1, 1]')
  return x


def _npz_set(path: str, image_size: int) -> ImageSet:
  try:
    with np.load(path, allow_pickle=False) as data:
      keys = list(data.files)
      if 'mu' in keys and 'sigma' in keys:
        return ImageSet(path, 0, stats=fid_lib.load_stats(path))
      arrays = {k: data[k] for k in keys}
  except UserError:
    raise
  except Exception as e:  # numpy raises several types for a corrupt or non-npz file
    raise UserError(f'cannot read {path} ({type(e).__name__}); pass a folder of images or an '
                    '.npz of images or statistics') from None
  if not arrays:
    raise UserError(f'{path} holds no arrays; pass an .npz of images or of mu and sigma')
  x = _image_array(path, arrays)

  def chunks():
    for start in range(0, len(x), CHUNK):
      part = x[start:start + CHUNK]
      if image_size:
        pixels = part if part.dtype == np.uint8 else to_uint8(part)
        part = np.stack([folder_lib.fit_square(i, image_size) for i in pixels])
      yield (part.astype(np.float32) / 127.5 - 1.0 if part.dtype == np.uint8
             else part.astype(np.float32))

  return ImageSet(path, len(x), chunks=chunks)


def open_set(path: str, image_size: int = 0) -> ImageSet:
  """The set at `path`: a folder, or an .npz of images or statistics."""
  if not path:
    raise UserError('pass both --real and --fake (a folder, or an .npz of images or statistics)')
  if os.path.isdir(path):
    return _folder_set(path, image_size)
  if not os.path.isfile(path):
    raise UserError(f'{path} does not exist; pass a folder of images or an .npz file')
  if not path.endswith('.npz'):
    raise UserError(f'{path} is not a folder or an .npz file; pass one of those')
  return _npz_set(path, image_size)


def _check_stats(s: ImageSet, net: evaluation.FeatureNet) -> fid_lib.FeatureStats:
  """The set's statistics if `net` could have made them: tagged with its name, or untagged
  (pytorch-fid's files) with the InceptionV3's dimension when `net` is it."""
  stats = s.stats
  if stats.feature_net is None:
    if net.suffix or stats.mu.shape != (net.dim,):
      raise UserError(f'{s.path} holds untagged statistics of dimension {stats.mu.shape[0]}; '
                      f'only pytorch-fid\'s {net.dim}-d InceptionV3 statistics are taken '
                      'untagged: use --features=inception or recompute them here')
    return stats
  if stats.feature_net != net.name:
    raise UserError(f'{s.path} holds statistics of {stats.feature_net!r}, not {net.name!r}; '
                    'compare statistics of one feature network')
  return stats


def _features(s: ImageSet, net: evaluation.FeatureNet) -> tuple[np.ndarray, np.ndarray]:
  feats, probs = [], []
  for x in s.chunks():
    f, p = net.apply(x)
    feats.append(np.asarray(f, np.float32))
    probs.append(np.asarray(p))
  return np.concatenate(feats), np.concatenate(probs)


def evaluate_sets(real_path: str, fake_path: str, metrics: list[str],
                  features: str = 'inception', inception_weights: str = '', image_size: int = 0,
                  save_stats: str = '') -> dict[str, float]:
  """The named metrics (SET_METRICS) of the fake set against the real one. `save_stats` writes
  the real set's statistics (readable by pytorch-fid too) to that path."""
  unknown = [m for m in metrics if m not in SET_METRICS]
  if unknown or not metrics:
    raise UserError(f'metrics between two sets are any of {", ".join(SET_METRICS)}; got '
                    f'{",".join(metrics) or "none"}')
  real, fake = open_set(real_path, image_size), open_set(fake_path, image_size)
  for m in metrics:
    if m != 'fid' and (fake.stats is not None or (m != 'is' and real.stats is not None)):
      side = fake if fake.stats is not None else real
      raise UserError(f'{m} needs images, but {side.path} holds only statistics; pass images '
                      'or ask for fid alone')
  if save_stats and real.stats is not None:
    raise UserError(f'--save_stats writes statistics of images; {real.path} holds statistics '
                    'already')
  net = evaluation.feature_net_by_name(features, inception_weights)
  sfx, out = net.suffix, {}
  sides = {}
  for name, s in (('real', real), ('fake', fake)):
    sides[name] = None if s.stats is not None else _features(s, net)
  if 'fid' in metrics or save_stats:
    stats = {}
    for name, s in (('real', real), ('fake', fake)):
      stats[name] = (_check_stats(s, net) if s.stats is not None else fid_lib.FeatureStats(
          *fid_lib.compute_stats(sides[name][0]), net.name, os.path.basename(s.path.rstrip('/')),
          '', s.count))
    if save_stats:
      fid_lib.save_stats(save_stats, stats['real'])
    if 'fid' in metrics:
      out[f'fid{sfx}'] = fid_lib.frechet_distance(stats['real'].mu, stats['real'].sigma,
                                                  stats['fake'].mu, stats['fake'].sigma)
  if 'kid' in metrics:
    out[f'kid{sfx}'], out[f'kid{sfx}_std'] = fm.kid(sides['real'][0], sides['fake'][0])
  if 'is' in metrics:
    out[f'is{sfx}'], out[f'is{sfx}_std'] = fm.inception_score(sides['fake'][1])
  if 'pr' in metrics:
    out[f'precision{sfx}'], out[f'recall{sfx}'] = fm.precision_recall(
        sides['real'][0], sides['fake'][0], k=evaluation.PR_K)
  if 'dc' in metrics:
    out[f'density{sfx}'], out[f'coverage{sfx}'] = fm.density_coverage(
        sides['real'][0], sides['fake'][0], k=evaluation.DC_K)
  for name, s in (('real', real), ('fake', fake)):
    out[f'num_{name}'] = s.count if s.stats is None else s.stats.num_samples
  return out
