"""2D distributions: GAN Lab's toys in [0,1]², the mode-collapse benchmarks, and user points.

Every source samples on device (`sample(key, n) -> [n, 2]`), so a fused
`lax.scan` over many rounds never leaves the accelerator. Sources with
modes carry their centres and per-axis σ for the PacGAN metrics.
"""
from __future__ import annotations

import dataclasses
import os
import re
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from common.errors import UserError, first_line, unknown_name


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


def divergence_floor(source: Source2D, key: jax.Array, n: int, draws: int = 5
                     ) -> dict[str, float]:
  """KL and JS between two independent draws of `n` real points (mean of `draws` pairs): what a
  generator that matched the distribution would still show with `n` samples."""
  from gan.metrics import histogram_divergences
  sample = jax.jit(source.sample, static_argnums=1)
  rows = []
  for i in range(draws):
    a, b = (np.asarray(sample(jax.random.fold_in(key, 2 * i + j), n)) for j in (0, 1))
    rows.append(histogram_divergences(a, b, source.bounds))
  return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


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


POINTS_SUFFIXES = ('.csv', '.txt', '.npy')
_SHOWN_ROWS = 5


def load_points(path: str) -> np.ndarray:
  """A user's own 2D points, [N, 2] float32, from `.csv`/`.txt` or `.npy`.

  Text files hold one point per line, x and y separated by a comma or whitespace; '#' starts a
  comment, blank lines are skipped and the first line may be a header. Rows that are not finite
  are refused with their line numbers rather than dropped: a NaN usually means the export went
  wrong, and silently training on the rest would hide that.
  """
  if not path:
    raise UserError('data.name=points needs data.path=FILE (.csv, .txt or .npy with 2 columns)')
  if not os.path.isfile(path):
    raise UserError(f'points file {path!r} not found; pass data.path=FILE (.csv, .txt or .npy)')
  suffix = os.path.splitext(path)[1].lower()
  if suffix not in POINTS_SUFFIXES:
    raise UserError(f'points file {path!r} must end in .csv, .txt or .npy')
  header = ''
  if suffix == '.npy':
    pts = _read_npy(path)
    numbers, where, base = np.arange(len(pts)), 'row', ' (0-based)'
  else:
    pts, numbers, header = _read_text(path)
    where, base = 'line', ''
  if len(pts) < 2:
    found = {0: 'no points', 1: 'only 1 point'}[len(pts)]
    after = f' after the header line {header[:40]!r}' if header else ''
    raise UserError(f'points file {path!r} has {found}{after}; it needs at least 2 rows of '
                    'x, y numbers')
  bad = numbers[~np.isfinite(pts).all(1)]
  if len(bad):
    shown = ', '.join(map(str, bad[:_SHOWN_ROWS])) + (', ...' if len(bad) > _SHOWN_ROWS else '')
    many = 's' if len(bad) > 1 else ''
    raise UserError(f'points file {path!r} has {len(bad)} of {len(pts)} rows with NaN or inf, '
                    f'at {where}{many} {shown}{base}; fix or remove them')
  return pts.astype(np.float32)


def _read_npy(path: str) -> np.ndarray:
  try:
    pts = np.asarray(np.load(path, allow_pickle=False), np.float64)
  except Exception as e:  # numpy reports damaged files with several exception types
    raise UserError(f'cannot read points file {path!r} ({type(e).__name__}: {first_line(e)}); '
                    'save an [N, 2] float array with np.save') from None
  if pts.ndim != 2 or pts.shape[1] != 2:
    raise UserError(f'points file {path!r} has shape {pts.shape}; expect [N, 2] (x, y per row)')
  return pts


def _read_text(path: str) -> tuple[np.ndarray, np.ndarray, str]:
  """([N, 2] float64 points, [N] their 1-based line numbers, the header line or '')."""
  rows, numbers, header = [], [], ''
  try:
    with open(path, encoding='utf-8') as f:
      lines = list(f)
  except (UnicodeDecodeError, OSError) as e:
    raise UserError(f'cannot read points file {path!r} ({type(e).__name__}: {first_line(e)}); '
                    'expect a text file with rows of x, y numbers') from None
  for number, line in enumerate(lines, 1):
    text = line.split('#', 1)[0].strip()
    if not text:
      continue
    try:
      values = [float(v) for v in re.split(r'[,\s]+', text)]
    except ValueError:
      if not rows and not header:  # a header line before the first point
        header = text
        continue
      raise UserError(f'cannot read points file {path!r}: line {number} is not numbers '
                      f'({text[:40]!r}); expect rows of x, y numbers') from None
    if len(values) != 2:
      raise UserError(f'points file {path!r} has {len(values)} values on line {number}; '
                      'expect [N, 2] (x, y per row)')
    rows.append(values)
    numbers.append(number)
  return np.array(rows, np.float64).reshape(-1, 2), np.array(numbers, np.int64), header


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
