"""Sample-quality metrics on feature arrays [N, D] from any feature network.

- `kid`: kernel inception distance (Bińkowski et al. 2018), unbiased MMD² with a cubic
  polynomial kernel, mean and std over random subsets.
- `inception_score`: exp(E KL(p(y|x) || p(y))) from class probabilities, mean and std over splits.
- `precision_recall`: improved precision and recall (Kynkäänniemi et al. 2019).
- `density_coverage`: density and coverage (Naeem et al. 2020).

Nearest-neighbour metrics stream pairwise distances in row blocks through jitted functions, so
10k x 10k sets fit in memory and run on an accelerator when there is one.
"""
from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from scipy import special

from common.errors import UserError
from common.sharding import pad_shard_unpad


def _check_features(name: str, x) -> np.ndarray:
  x = np.asarray(x)
  if x.ndim != 2:
    raise UserError(f'{name} must be features [N, D]; got shape {x.shape}, flatten them first')
  if not np.all(np.isfinite(x)):
    raise UserError(f'{name} hold NaN or inf; check the images and the feature network')
  return x.astype(np.float64)


def _check_pair(real, fake) -> tuple[np.ndarray, np.ndarray]:
  real, fake = _check_features('real features', real), _check_features('fake features', fake)
  if real.shape[1] != fake.shape[1]:
    raise UserError(f'real features have dim {real.shape[1]} but fake features {fake.shape[1]}; '
                    'extract both with the same feature network')
  return real, fake


# --- KID ---------------------------------------------------------------------------------------


def _unbiased_mmd2(x: np.ndarray, y: np.ndarray) -> float:
  """Unbiased MMD² of x [m, D] and y [m, D] under k(a, b) = (a·b / D + 1)³."""
  m, d = x.shape
  k_xx = (x @ x.T / d + 1) ** 3
  k_yy = (y @ y.T / d + 1) ** 3
  k_xy = (x @ y.T / d + 1) ** 3
  # The diagonal (each sample with itself) is what makes the plain estimate biased.
  within = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(within - 2 * k_xy.sum() / (m * m))


def kid(real, fake, num_subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> tuple[float, float]:
  """Kernel inception distance: (mean, std) of unbiased MMD² over random subsets.

  real: [N_r, D], fake: [N_f, D]. Each subset draws min(subset_size, N_r, N_f) samples from each
  set without replacement; `seed` fixes the draws so the number is reproducible.
  """
  real, fake = _check_pair(real, fake)
  m = min(subset_size, len(real), len(fake))
  if m < 2:
    raise UserError(f'KID needs at least 2 samples per set; got {len(real)} real and {len(fake)} '
                    'fake')
  if num_subsets < 1:
    raise UserError(f'num_subsets must be at least 1; got {num_subsets}')
  rng = np.random.default_rng(seed)
  values = np.array([
      _unbiased_mmd2(real[rng.choice(len(real), m, replace=False)],
                     fake[rng.choice(len(fake), m, replace=False)])
      for _ in range(num_subsets)])
  return float(values.mean()), float(values.std())


# --- Inception score ---------------------------------------------------------------------------


def inception_score(probs, num_splits: int = 10) -> tuple[float, float]:
  """(mean, std) over splits of exp(E_x KL(p(y|x) || p(y))) for class probabilities [N, K].

  Splits are consecutive and differ in size by at most one, so every sample counts.
  """
  p = np.asarray(probs, np.float64)
  if p.ndim != 2:
    raise UserError(f'probs must be [N, num_classes]; got shape {p.shape}')
  if not np.all(np.isfinite(p)):
    raise UserError('probs hold NaN or inf; check the images and the classifier')
  if p.min() < 0 or not np.allclose(p.sum(axis=1), 1, atol=1e-3):
    raise UserError('probs are not probabilities (rows must be >= 0 and sum to 1); if they are '
                    'logits, apply a softmax first')
  if num_splits < 1 or len(p) < num_splits:
    raise UserError(f'need at least num_splits={num_splits} samples (and num_splits >= 1); got '
                    f'{len(p)}')
  scores = []
  for part in np.array_split(p, num_splits):
    marginal = part.mean(axis=0, keepdims=True)
    # xlogy gives 0 for p = 0 where p * log p would be nan.
    kl = (special.xlogy(part, part) - special.xlogy(part, marginal)).sum(axis=1)
    scores.append(np.exp(kl.mean()))
  return float(np.mean(scores)), float(np.std(scores))


# --- Nearest-neighbour manifolds ---------------------------------------------------------------


def _sq_dists(q: jax.Array, ref: jax.Array) -> jax.Array:
  """Squared euclidean distances [b, N] between q [b, D] and ref [N, D]."""
  # 'highest' keeps float32 on GPUs that would otherwise use TF32 for the product.
  cross = jnp.dot(q, ref.T, precision=jax.lax.Precision.HIGHEST)
  d2 = jnp.sum(q * q, axis=1)[:, None] + jnp.sum(ref * ref, axis=1)[None, :] - 2 * cross
  return jnp.maximum(d2, 0.0)


@functools.partial(jax.jit, static_argnames='k')
def _kth_neighbour_sq(q: jax.Array, ref: jax.Array, k: int) -> jax.Array:
  """[b] squared distance from each q to its k-th neighbour in ref, where q is part of ref."""
  # Index 0 of the sorted row is the point itself, so index k is its k-th neighbour.
  return jnp.partition(_sq_dists(q, ref), k, axis=1)[:, k]


@functools.partial(jax.jit, static_argnames='strict')
def _ball_counts(q: jax.Array, ref: jax.Array, radii_sq: jax.Array, strict: bool) -> jax.Array:
  """[b] how many balls (centres ref [N, D], squared radii [N]) contain each q."""
  d2 = _sq_dists(q, ref)
  inside = d2 < radii_sq[None, :] if strict else d2 <= radii_sq[None, :]
  return inside.sum(axis=1)


@jax.jit
def _nearest_sq(q: jax.Array, ref: jax.Array) -> jax.Array:
  """[b] squared distance from each q to its nearest point of ref."""
  return _sq_dists(q, ref).min(axis=1)


def _map_blocks(fn: Callable, queries: np.ndarray, *args, block_size: int) -> np.ndarray:
  """fn over row blocks of queries; the last block is padded so fn compiles once."""
  b = min(block_size, len(queries))
  return np.concatenate([pad_shard_unpad(lambda q: fn(q, *args), queries[start:start + b], b)
                         for start in range(0, len(queries), b)])


def _prepare(real: np.ndarray, fake: np.ndarray, k: int, block_size: int):
  """float32 copies centred on the real mean, plus the validated sizes."""
  if k < 1:
    raise UserError(f'k must be at least 1; got {k}')
  if block_size < 1:
    raise UserError(f'block_size must be at least 1; got {block_size}')
  for name, x in (('real', real), ('fake', fake)):
    if len(x) <= k:
      raise UserError(f'{name} features have {len(x)} samples; k={k} nearest neighbours need at '
                      f'least {k + 1}')
  # Centring shrinks the norms, so |a|² + |b|² - 2a·b loses less to cancellation in float32.
  centre = real.mean(axis=0)
  return (real - centre).astype(np.float32), (fake - centre).astype(np.float32)


def _radii_sq(x: np.ndarray, k: int, block_size: int) -> np.ndarray:
  x_dev = jnp.asarray(x)
  return _map_blocks(lambda q: _kth_neighbour_sq(q, x_dev, k), x, block_size=block_size)


def precision_recall(real, fake, k: int = 3, block_size: int = 1024) -> tuple[float, float]:
  """Improved precision and recall of fake [N_f, D] against real [N_r, D].

  Each set's manifold is the union of balls around its samples, of radius the distance to the
  sample's k-th nearest neighbour within the same set. Precision: share of fake samples inside
  the real manifold; recall: share of real samples inside the fake manifold.
  """
  real, fake = _check_pair(real, fake)
  real, fake = _prepare(real, fake, k, block_size)
  real_dev, fake_dev = jnp.asarray(real), jnp.asarray(fake)
  real_r2 = jnp.asarray(_radii_sq(real, k, block_size))
  fake_r2 = jnp.asarray(_radii_sq(fake, k, block_size))
  in_real = _map_blocks(lambda q: _ball_counts(q, real_dev, real_r2, strict=False), fake,
                        block_size=block_size) > 0
  in_fake = _map_blocks(lambda q: _ball_counts(q, fake_dev, fake_r2, strict=False), real,
                        block_size=block_size) > 0
  return float(in_real.mean()), float(in_fake.mean())


def density_coverage(real, fake, k: int = 5, block_size: int = 1024) -> tuple[float, float]:
  """Density and coverage of fake [N_f, D] against real [N_r, D].

  Density: average over fake samples of how many real k-NN balls contain it, divided by k (about
  1 when the distributions match; unbounded above). Coverage: share of real samples whose ball
  holds at least one fake sample. Balls are open (strict <), as in the authors' code.
  """
  real, fake = _check_pair(real, fake)
  real, fake = _prepare(real, fake, k, block_size)
  real_dev, fake_dev = jnp.asarray(real), jnp.asarray(fake)
  real_r2 = _radii_sq(real, k, block_size)
  real_r2_dev = jnp.asarray(real_r2)
  counts = _map_blocks(lambda q: _ball_counts(q, real_dev, real_r2_dev, strict=True), fake,
                       block_size=block_size)
  nearest_fake = _map_blocks(lambda q: _nearest_sq(q, fake_dev), real, block_size=block_size)
  return float(counts.mean() / k), float((nearest_fake < real_r2).mean())
