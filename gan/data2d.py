"""2D distributions: GAN Lab's toys in [0,1]², the mode-collapse benchmarks, and user points.

Every source samples on device (`sample(key, n) -> [n, 2]`), so a fused
`lax.scan` over many rounds never leaves the accelerator. Sources with
modes carry their centres and per-axis σ for the PacGAN metrics.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from common.errors import UserError, unknown_name


@dataclasses.dataclass(frozen=True)
class Source2D:
  name: str
  sample: Callable[[jax.Array, int], jax.Array]  # (key, n) -> [n, 2] float32
  bounds: tuple[float, float, float, float]  # (xmin, xmax, ymin, ymax) for plots and histograms
  modes: np.ndarray | None = None  # [K, 2] mode centres, when the distribution has modes
  sigma: float | None = None  # per-axis standard deviation of each mode
  num_points: int | None = None  # size of a user's point set


def _mixture(centres, sigma: float, name: str, bounds) -> Source2D:
  centres = np.asarray(centres, np.float32)
  c = jnp.asarray(centres)

  def sample(key, n):
    kc, kn = jax.random.split(key)
    idx = jax.random.randint(kc, (n,), 0, len(centres))
    return c[idx] + sigma * jax.random.normal(kn, (n, 2))

  return Source2D(name, sample, bounds, centres, sigma)


def ring8() -> Source2D:
  k = np.arange(8)
  centres = np.stack([np.cos(2 * np.pi * k / 8), np.sin(2 * np.pi * k / 8)], 1)
  return _mixture(centres, 0.01, 'ring8', (-1.5, 1.5, -1.5, 1.5))


def grid25() -> Source2D:
  v = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
  centres = np.stack(np.meshgrid(v, v, indexing='ij'), -1).reshape(-1, 2)
  return _mixture(centres, 0.05, 'grid25', (-5.5, 5.5, -5.5, 5.5))


_UNIT = (0.0, 1.0, 0.0, 1.0)


def line() -> Source2D:
  """Uniform along the segment (0.2, 0.3)-(0.8, 0.7) with σ 0.01 perpendicular noise."""
  a, b = jnp.array([0.2, 0.3]), jnp.array([0.8, 0.7])
  normal = jnp.array([-0.4, 0.6]) / jnp.sqrt(0.52)

  def sample(key, n):
    kt, kn = jax.random.split(key)
    t = jax.random.uniform(kt, (n, 1))
    return a + t * (b - a) + 0.01 * jax.random.normal(kn, (n, 1)) * normal

  return Source2D('line', sample, _UNIT)


def gaussians() -> Source2D:
  """Two equal-weight components: isotropic at (0.3, 0.7) (σ 0.06), and at (0.65, 0.35)
  stretched along the diagonal (σ 0.12 along, 0.03 across)."""
  rot = np.array([[1.0, -1.0], [1.0, 1.0]]) / np.sqrt(2.0)
  chol = [np.diag([0.06, 0.06]), rot @ np.diag([0.12, 0.03])]
  chol = jnp.asarray(np.stack(chol), jnp.float32)
  mean = jnp.array([[0.3, 0.7], [0.65, 0.35]])

  def sample(key, n):
    kc, kn = jax.random.split(key)
    idx = jax.random.randint(kc, (n,), 0, 2)
    eps = jax.random.normal(kn, (n, 2))
    return mean[idx] + jnp.einsum('nij,nj->ni', chol[idx], eps)

  return Source2D('gaussians', sample, _UNIT)


def ring() -> Source2D:
  """Ellipse centred at (0.5, 0.45), radii 0.3 (x) and 0.25 (y), σ 0.025 isotropic noise."""

  def sample(key, n):
    ka, kn = jax.random.split(key)
    angle = jax.random.uniform(ka, (n,), maxval=2 * jnp.pi)
    centre = jnp.stack([0.5 + 0.3 * jnp.cos(angle), 0.45 + 0.25 * jnp.sin(angle)], 1)
    return centre + 0.025 * jax.random.normal(kn, (n, 2))

  return Source2D('ring', sample, _UNIT)


def disjoint() -> Source2D:
  """Three separated clusters, σ 0.025."""
  return _mixture([[0.25, 0.3], [0.5, 0.75], [0.75, 0.3]], 0.025, 'disjoint', _UNIT)


def load_points(path: str) -> np.ndarray:
  """A user's own 2D points from `.csv` (x,y per line), `.txt` (x y per line) or `.npy`; a
  text file may start with a header line."""
  if not path:
    raise UserError('data.name=points needs data.path=FILE (.csv, .txt or .npy with 2 columns)')
  if not os.path.isfile(path):
    raise UserError(f'points file {path!r} not found; pass data.path=FILE (.csv, .txt or .npy)')
  try:
    if path.endswith('.npy'):
      pts = np.load(path, allow_pickle=False)
    elif path.endswith(('.csv', '.txt')):
      sep = ',' if path.endswith('.csv') else None
      with open(path) as f:
        first = f.readline()
      skip = 0 if _is_number_row(first, sep) else 1
      pts = np.loadtxt(path, delimiter=sep, skiprows=skip, ndmin=2)
    else:
      raise UserError(f'points file {path!r} must end in .csv, .txt or .npy')
  except UserError:
    raise
  except Exception as e:
    raise UserError(f'cannot read points file {path!r} ({type(e).__name__}: '
                    f'{str(e).splitlines()[0] if str(e) else ""}); expect rows of x,y numbers') from None
  pts = np.asarray(pts, np.float64)
  if pts.ndim != 2 or pts.shape[1] != 2:
    raise UserError(f'points file {path!r} has shape {pts.shape}; expect [N, 2] (x, y per row)')
  if len(pts) < 2 or not np.isfinite(pts).all():
    raise UserError(f'points file {path!r} needs at least 2 finite points, got {len(pts)} rows')
  return pts.astype(np.float32)


def _is_number_row(line: str, sep: str | None = ',') -> bool:
  try:
    [float(v) for v in line.strip().split(sep)]
    return True
  except ValueError:
    return False


def points(path: str) -> Source2D:
  """Uniform draws (with replacement) from the user's points."""
  pts = load_points(path)
  arr = jnp.asarray(pts)
  lo, hi = pts.min(0), pts.max(0)
  margin = 0.1 * np.maximum(hi - lo, 1e-3)
  bounds = (float(lo[0] - margin[0]), float(hi[0] + margin[0]),
            float(lo[1] - margin[1]), float(hi[1] + margin[1]))

  def sample(key, n):
    return arr[jax.random.randint(key, (n,), 0, len(pts))]

  return Source2D('points', sample, bounds, num_points=len(pts))


DISTRIBUTIONS: dict[str, Callable[[], Source2D]] = {
    'line': line, 'gaussians': gaussians, 'ring': ring, 'disjoint': disjoint,
    'ring8': ring8, 'grid25': grid25,
}


def get_source(name: str, path: str = '') -> Source2D:
  if name == 'points':
    return points(path)
  if name not in DISTRIBUTIONS:
    raise unknown_name('2D distribution', name, list(DISTRIBUTIONS) + ['points'])
  return DISTRIBUTIONS[name]()
