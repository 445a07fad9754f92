"""Fréchet distance between feature distributions, and the statistics it is computed from.

The distance follows pytorch-fid's `calculate_frechet_distance` step for step, so numbers are
comparable with published FIDs. Statistics (mean, covariance) are accumulated in float64 over
batches and saved to `.npz` with the feature network's name, so a dataset's reference
statistics are computed once and never compared with features from another network.
"""
from __future__ import annotations

import dataclasses
import os
import warnings

import numpy as np
from scipy import linalg

from common.errors import UserError

_STATS_KEYS = ('mu', 'sigma')


def _sqrtm(m: np.ndarray) -> np.ndarray:
  """scipy's matrix square root, quietly: a singular input is handled by the caller's check.

  (`disp=False`, pytorch-fid's way to silence it, is deprecated in SciPy 1.16 and gone in 1.18.)
  """
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', linalg.LinAlgWarning)
    return linalg.sqrtm(m)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray,
                     eps: float = 1e-6) -> float:
  """d² = ‖μ1−μ2‖² + Tr Σ1 + Tr Σ2 − 2 Tr √(Σ1Σ2) for means [D] and covariances [D, D]."""
  mu1 = np.atleast_1d(np.asarray(mu1, np.float64))
  mu2 = np.atleast_1d(np.asarray(mu2, np.float64))
  sigma1 = np.atleast_2d(np.asarray(sigma1, np.float64))
  sigma2 = np.atleast_2d(np.asarray(sigma2, np.float64))
  if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
    raise UserError(f'statistics do not match: means {mu1.shape} vs {mu2.shape}, covariances '
                    f'{sigma1.shape} vs {sigma2.shape}; compute both with the same feature network')
  for name, a in (('mu1', mu1), ('sigma1', sigma1), ('mu2', mu2), ('sigma2', sigma2)):
    if not np.all(np.isfinite(a)):
      raise UserError(f'{name} holds NaN or inf; recompute the statistics from finite features')

  diff = mu1 - mu2
  covmean = _sqrtm(sigma1.dot(sigma2))
  if not np.isfinite(covmean).all():
    # A singular product has no finite square root; a tiny ridge makes it well posed, as in
    # pytorch-fid.
    offset = np.eye(sigma1.shape[0]) * eps
    covmean = _sqrtm((sigma1 + offset).dot(sigma2 + offset))
  if np.iscomplexobj(covmean):
    # Round-off can leave a small imaginary part; a large one means the covariances are not
    # positive semi-definite.
    imag = np.max(np.abs(covmean.diagonal().imag))
    if not np.allclose(covmean.diagonal().imag, 0, atol=1e-3):
      raise UserError(f'sqrt(sigma1 @ sigma2) has imaginary component {imag:.3g} on its diagonal; '
                      'the covariances are not positive semi-definite, use more samples')
    covmean = covmean.real
  return float(diff.dot(diff) + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


class StatsAccumulator:
  """Streams features [B, D] into their mean [D] and covariance [D, D] in float64.

  Batches merge by Chan et al.'s parallel update (count, mean, centred sum of squares), which
  keeps the covariance accurate where sums of raw outer products would cancel.
  """

  def __init__(self):
    self.count = 0
    self._mean = None
    self._m2 = None

  def update(self, features) -> None:
    x = np.asarray(features, np.float64)
    if x.ndim != 2:
      raise UserError(f'features must be [batch, dim]; got shape {x.shape}, flatten them first')
    if self._mean is not None and x.shape[1] != self._mean.shape[0]:
      raise UserError(f'features have dim {x.shape[1]} but earlier batches had '
                      f'{self._mean.shape[0]}; use one feature network throughout')
    if not np.all(np.isfinite(x)):
      raise UserError('features hold NaN or inf; check the images and the feature network')
    n_b = x.shape[0]
    if n_b == 0:
      return
    mean_b = x.mean(axis=0)
    centred = x - mean_b
    m2_b = centred.T @ centred
    if self._mean is None:
      self.count, self._mean, self._m2 = n_b, mean_b, m2_b
      return
    n = self.count + n_b
    delta = mean_b - self._mean
    self._mean = self._mean + delta * (n_b / n)
    self._m2 = self._m2 + m2_b + np.outer(delta, delta) * (self.count * n_b / n)
    self.count = n

  def result(self) -> tuple[np.ndarray, np.ndarray]:
    """(mu [D], sigma [D, D]); sigma is unbiased, like `np.cov(features, rowvar=False)`."""
    if self._mean is None:
      raise UserError('no features were accumulated; call update() with at least one batch')
    dim = self._mean.shape[0]
    if self.count <= dim:
      raise UserError(f'{self.count} samples cannot give a full-rank {dim}x{dim} covariance; '
                      f'use at least {dim + 1} samples (D+1), ideally many more')
    return self._mean.copy(), self._m2 / (self.count - 1)


def compute_stats(features) -> tuple[np.ndarray, np.ndarray]:
  """Mean [D] and covariance [D, D] of features [N, D], in float64."""
  acc = StatsAccumulator()
  acc.update(features)
  return acc.result()


@dataclasses.dataclass(frozen=True)
class FeatureStats:
  """A dataset's feature statistics and where they came from."""
  mu: np.ndarray  # [D]
  sigma: np.ndarray  # [D, D]
  feature_net: str | None  # None for files that do not record it (e.g. pytorch-fid's)
  dataset: str = ''
  split: str = ''
  num_samples: int = 0


def save_stats(path: str, stats: FeatureStats) -> None:
  """Writes `stats` to `path` (.npz) exactly, without numpy appending a suffix."""
  if not stats.feature_net:
    raise UserError('FeatureStats.feature_net is empty; name the feature network so the file '
                    'cannot be compared with features from another one')
  tmp = f'{path}.tmp'
  with open(tmp, 'wb') as f:
    np.savez(f, mu=np.asarray(stats.mu, np.float64), sigma=np.asarray(stats.sigma, np.float64),
             feature_net=np.str_(stats.feature_net), dataset=np.str_(stats.dataset),
             split=np.str_(stats.split), num_samples=np.int64(stats.num_samples))
  os.replace(tmp, path)  # a crash mid-write leaves the old file, not a truncated one


def load_stats(path: str, expected_feature_net: str | None = None) -> FeatureStats:
  """Reads a `.npz` written by `save_stats` (or pytorch-fid's `mu`/`sigma` files).

  With `expected_feature_net`, statistics from any other (or an unrecorded) network are refused:
  their FID would be meaningless.
  """
  if not os.path.isfile(path):
    raise UserError(f'statistics file {path} does not exist; compute it first or fix the path')
  try:
    with np.load(path, allow_pickle=False) as data:
      arrays = {k: data[k] for k in data.files}
  except Exception as e:  # numpy raises several types for a corrupt or non-npz file
    raise UserError(f'cannot read statistics file {path} ({type(e).__name__}: {e}); '
                    'recompute it') from None
  missing = [k for k in _STATS_KEYS if k not in arrays]
  if missing:
    raise UserError(f'statistics file {path} lacks {missing}; it holds {sorted(arrays)}, expected '
                    'mu and sigma; recompute it with save_stats')
  feature_net = str(arrays['feature_net']) if 'feature_net' in arrays else None
  if expected_feature_net is not None and feature_net != expected_feature_net:
    if feature_net is None:
      raise UserError(f'statistics file {path} does not record its feature network; pass '
                      'expected_feature_net=None if you know it was '
                      f'{expected_feature_net!r}')
    raise UserError(f'statistics file {path} was computed with {feature_net!r}, not '
                    f'{expected_feature_net!r}; recompute it with {expected_feature_net!r}')
  return FeatureStats(
      mu=arrays['mu'].astype(np.float64), sigma=arrays['sigma'].astype(np.float64),
      feature_net=feature_net, dataset=str(arrays.get('dataset', '')),
      split=str(arrays.get('split', '')), num_samples=int(arrays.get('num_samples', 0)))
