"""Samples from a trained generator (`python -m launch.sample`): many images, a grid, latent
interpolations, truncated noise, chosen classes.

Truncation (`psi` > 0) draws Gaussian noise from the normal truncated to [-psi, psi] per
coordinate (BigGAN's trick: fidelity for variety) and uniform noise from [-psi, psi]. Spherical
interpolation (slerp) follows the great circle between two codes, which keeps Gaussian codes at
a typical norm; linear interpolation (lerp) cuts through the lower-norm interior.
"""
from __future__ import annotations

import functools
import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from common import distributed
from common.errors import UserError
from common.writers import image_grid, save_png, to_uint8
from gan.steps import GanSteps

BATCH = 500
INTERPOLATIONS = ('linear', 'spherical')


def noise(steps: GanSteps, key: jax.Array, n: int, psi: float = 0.0) -> jax.Array:
  """Latent codes [n, Z] as the run draws them, truncated to [-psi, psi] when psi > 0."""
  m = steps.cfg.model
  if not psi:
    return steps.noise(key, n)
  if psi < 0 or (m.noise == 'uniform' and psi > 1):
    raise UserError(f'--truncation must be > 0 (and <= 1 for uniform noise), got {psi}')
  if m.noise == 'uniform':
    return jax.random.uniform(key, (n, m.noise_dim), jnp.float32, -psi, psi)
  return jax.random.truncated_normal(key, -psi, psi, (n, m.noise_dim), jnp.float32)


def lerp(a: jax.Array, b: jax.Array, t: jax.Array) -> jax.Array:
  """Codes [T, Z] on the segment from a [Z] to b [Z] at fractions t [T]."""
  return a[None] + t[:, None] * (b - a)[None]


def slerp(a: jax.Array, b: jax.Array, t: jax.Array) -> jax.Array:
  """Codes [T, Z] on the arc from a [Z] to b [Z] at fractions t [T] (White 2016):
  sin((1 - t) w) / sin w * a + sin(t w) / sin w * b, w the angle between them; lerp where
  they are (anti)parallel."""
  cos = jnp.dot(a, b) / (jnp.linalg.norm(a) * jnp.linalg.norm(b))
  omega = jnp.arccos(jnp.clip(cos, -1.0, 1.0))
  so = jnp.sin(omega)
  safe = so > 1e-6
  so = jnp.where(safe, so, 1.0)
  wa, wb = jnp.sin((1 - t) * omega) / so, jnp.sin(t * omega) / so
  arc = wa[:, None] * a[None] + wb[:, None] * b[None]
  return jnp.where(safe, arc, lerp(a, b, t))


def class_labels(steps: GanSteps, n: int, classes: list[int] | None) -> np.ndarray | None:
  """Labels [n] for a conditional run: `classes` cycled, else every class in turn; None for an
  unconditional run (where naming classes is an error)."""
  if not steps.conditional:
    if classes:
      raise UserError('--classes needs a conditional run (model.num_classes > 0); this run is '
                      'unconditional')
    return None
  k = steps.num_classes
  classes = classes or list(range(k))
  bad = [c for c in classes if not 0 <= c < k]
  if bad:
    raise UserError(f'--classes {bad} are out of range: this run has classes 0..{k - 1}')
  return np.asarray([classes[i % len(classes)] for i in range(n)], np.int32)


@functools.lru_cache(maxsize=8)
def _apply_fn(steps: GanSteps):
  def apply(g_vars, z, labels):
    y = () if labels is None else (labels,)
    return steps.G.apply(g_vars, z, *y, train=False)
  return jax.jit(apply)


def render(steps: GanSteps, g_vars: dict, z: jax.Array, labels: np.ndarray | None) -> np.ndarray:
  """G(z[, labels]) in batches of one shape (one compilation): float images [n, H, W, C]."""
  n, out = z.shape[0], []
  b = min(BATCH, n)
  pad = (-n) % b
  z = jnp.concatenate([z, jnp.zeros((pad, z.shape[1]), z.dtype)])
  y = None if labels is None else np.concatenate([labels, np.zeros(pad, np.int32)])
  for i in range(0, n + pad, b):
    yi = None if y is None else jnp.asarray(y[i:i + b])
    out.append(distributed.to_host(_apply_fn(steps)(g_vars, z[i:i + b], yi)))
  return np.concatenate(out)[:n].astype(np.float32)


def sample(steps: GanSteps, g_vars: dict, key: jax.Array, n: int, psi: float = 0.0,
           classes: list[int] | None = None) -> tuple[np.ndarray, np.ndarray | None]:
  """n images [n, H, W, C] in [-1, 1] and their labels [n] (None when unconditional)."""
  if n < 1:
    raise UserError(f'--num must be at least 1, got {n}')
  labels = class_labels(steps, n, classes)
  return render(steps, g_vars, noise(steps, key, n, psi), labels), labels


def interpolate(steps: GanSteps, g_vars: dict, key: jax.Array, rows: int, frames: int,
                method: str, psi: float = 0.0, classes: list[int] | None = None) -> np.ndarray:
  """[rows, frames, H, W, C]: each row walks from one code to another (one class per row in a
  conditional run), by `method` ('linear' or 'spherical')."""
  if method not in INTERPOLATIONS:
    raise UserError(f'unknown interpolation {method!r}; choose one of: {", ".join(INTERPOLATIONS)}')
  ends = noise(steps, key, 2 * rows, psi)
  t = jnp.linspace(0.0, 1.0, frames)
  path = lerp if method == 'linear' else slerp
  z = jnp.concatenate([path(ends[2 * r], ends[2 * r + 1], t) for r in range(rows)])
  labels = class_labels(steps, rows, classes)
  labels = None if labels is None else np.repeat(labels, frames)
  x = render(steps, g_vars, z, labels)
  return x.reshape(rows, frames, *x.shape[1:])


def _scale(images: np.ndarray) -> int:
  return max(1, 128 // images.shape[-3])


def save_images(path: str, images: np.ndarray, labels: np.ndarray | None = None) -> str:
  """Images [N, H, W, C] in [-1, 1] to a folder of PNGs (000000.png, ...) or, for a path ending
  in .npz, one file with 'images' (uint8 [N, H, W, C]) and, when conditional, 'labels' [N]."""
  pixels = to_uint8(images)
  if path.endswith('.npz'):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    extra = {} if labels is None else {'labels': np.asarray(labels, np.int32)}
    np.savez(path, images=pixels, **extra)
    return path
  if os.path.exists(path) and not os.path.isdir(path):
    raise UserError(f'--out {path} is a file; name a folder for PNGs or a path ending in .npz')
  os.makedirs(path, exist_ok=True)
  digits = max(6, len(str(len(pixels) - 1)))
  for i, image in enumerate(pixels):
    save_png(os.path.join(path, f'{i:0{digits}d}.png'), image)
  return path


def save_strip(path: str, rows: np.ndarray) -> None:
  """Interpolations [R, T, H, W, C] as one PNG: a row per walk, frames left to right."""
  r, t = rows.shape[:2]
  save_png(path, image_grid(rows.reshape(r * t, *rows.shape[2:]), ncol=t),
           scale=_scale(rows))


def save_interpolation_gif(path: str, rows: np.ndarray, duration_ms: int = 80) -> None:
  """Interpolations [R, T, H, W, C] as a looping GIF: frame i shows every walk at its step i,
  there and back."""
  from PIL import Image
  r, t = rows.shape[:2]
  ncol = math.ceil(math.sqrt(r))
  order = list(range(t)) + list(range(t - 2, 0, -1))
  scale = _scale(rows)
  frames = []
  for i in order:
    grid = image_grid(rows[:, i], ncol=ncol)
    grid = grid.repeat(scale, 0).repeat(scale, 1)
    frames.append(Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).convert('RGB'))
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)


def parse_classes(text: str) -> list[int] | None:
  """'3' or '1,5,7' -> [1, 5, 7]; '' -> None (every class)."""
  if not text:
    return None
  try:
    return [int(w) for w in text.split(',') if w.strip()]
  except ValueError:
    raise UserError(f'--classes takes class indices like 3 or 1,5,7, got {text!r}') from None


def sample_workdir(workdir: str, num: int, out: str, step: int | None = None, psi: float = 0.0,
                   classes: list[int] | None = None, seed: int = 0, grid: int = 64,
                   rows: int = 8, frames: int = 16, pictures: str = '') -> dict:
  """Everything `launch.sample` writes, from the EMA generator of `workdir` at `step` (default:
  the latest checkpoint). Returns {'step': ..., what: path}."""
  from common import rng as rng_lib
  from gan.state import restore_run
  if not out:
    raise UserError('--out is missing: a folder for PNGs or a path ending in .npz')
  if grid < 1 or rows < 1 or frames < 2:
    raise UserError(f'--grid and --interpolations must be at least 1 and --frames at least 2, '
                    f'got {grid}, {rows} and {frames}')
  run = restore_run(workdir, step)
  steps, g_vars = run.steps, run.state['ema']
  key = rng_lib.stream(rng_lib.root_key(seed), 'sample')
  x, labels = sample(steps, g_vars, rng_lib.stream(key, 'images'), num, psi, classes)
  written = {'step': run.step, 'samples': save_images(out, x, labels)}
  if not distributed.is_main():
    return written
  tag = f'sample-{run.step}' + (f'-psi{psi:g}' if psi else '')
  pictures = pictures or os.path.join(workdir, 'images', tag)
  os.makedirs(pictures, exist_ok=True)
  g, _ = sample(steps, g_vars, rng_lib.stream(key, 'grid'), grid, psi, classes)
  # Labels cycle through the classes, so with one column per class each column is one class.
  ncol = steps.num_classes if steps.conditional and not classes else None
  written['grid'] = os.path.join(pictures, 'grid.png')
  save_png(written['grid'], image_grid(g, ncol=ncol), scale=_scale(g))
  for method in INTERPOLATIONS:
    walk = interpolate(steps, g_vars, rng_lib.stream(key, 'interpolate'), rows, frames, method,
                       psi, classes)
    written[f'{method}_strip'] = os.path.join(pictures, f'interpolation_{method}.png')
    written[f'{method}_gif'] = os.path.join(pictures, f'interpolation_{method}.gif')
    save_strip(written[f'{method}_strip'], walk)
    save_interpolation_gif(written[f'{method}_gif'], walk)
  return written
