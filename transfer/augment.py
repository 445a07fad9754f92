"""Keras-style image augmentation on device: random rotation, shifts, zoom, brightness and flips.

The transforms of Keras' `ImageDataGenerator` (rotation_range, width_shift_range,
height_shift_range, zoom_range, brightness_range, horizontal_flip, vertical_flip) as one jitted
function of a key and a batch: every image gets its own draw, so a run is deterministic per seed
and step. Geometry is one affine map per image about its centre, sampled bilinearly with the
edge pixels repeated (Keras' fill_mode='nearest'); brightness scales the pixel values (PIL's
ImageEnhance.Brightness) and clips them to [0, 255].
"""
from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy import ndimage

from common.errors import UserError


@dataclasses.dataclass(frozen=True)
class KerasAugment:
  """Ranges of each transform (all 0 / off: no augmentation)."""
  rotation: float = 0.0  # degrees, uniform in [-rotation, rotation]
  width_shift: float = 0.0  # fraction of the width
  height_shift: float = 0.0
  zoom: float = 0.0  # scale uniform in [1 - zoom, 1 + zoom], per axis
  brightness: tuple[float, ...] = ()  # (low, high) factor, () off
  horizontal_flip: bool = False
  vertical_flip: bool = False

  @property
  def active(self) -> bool:
    return bool(self.rotation or self.width_shift or self.height_shift or self.zoom
                or self.brightness or self.horizontal_flip or self.vertical_flip)


def from_config(data: Any) -> KerasAugment:
  """The KerasAugment of a config's `data` section, checked (one-line UserErrors)."""
  for name in ('rotation_range', 'width_shift_range', 'height_shift_range', 'zoom_range'):
    if not 0 <= data[name] < float('inf'):
      raise UserError(f'data.{name} must be a finite number >= 0 (0: off), got {data[name]}')
  aug = KerasAugment(float(data.rotation_range), float(data.width_shift_range),
                     float(data.height_shift_range), float(data.zoom_range),
                     _brightness(data.brightness_range), bool(data.horizontal_flip),
                     bool(data.vertical_flip))
  if aug.zoom >= 1:
    raise UserError(f'data.zoom_range must be below 1 (scales in [1 - z, 1 + z]), got {aug.zoom}')
  return aug


def _brightness(value: Any) -> tuple[float, ...]:
  """data.brightness_range as () or (low, high) with 0 <= low <= high, finite."""
  bad = UserError(f'data.brightness_range must be () or (low, high) with 0 <= low <= high, got '
                  f'{value!r}')
  if isinstance(value, str) or not hasattr(value, '__len__'):
    raise bad
  try:
    b = tuple(float(x) for x in value)
  except (TypeError, ValueError):
    raise bad from None
  if b and (len(b) != 2 or not 0 <= b[0] <= b[1] < float('inf')):
    raise bad
  return b


def _affine(key: jax.Array, aug: KerasAugment, batch: int, h: int, w: int) -> jax.Array:
  """[B, 2, 3] maps from output (y, x, 1) to input (y, x) coordinates."""
  k_rot, k_ty, k_tx, k_zy, k_zx, k_fy, k_fx = jax.random.split(key, 7)
  u = lambda k, r: jax.random.uniform(k, (batch,), minval=-r, maxval=r)
  theta = jnp.deg2rad(u(k_rot, aug.rotation))
  ty, tx = u(k_ty, aug.height_shift) * h, u(k_tx, aug.width_shift) * w
  zy, zx = 1 + u(k_zy, aug.zoom), 1 + u(k_zx, aug.zoom)
  # A flip mirrors the output grid: the input coordinate of pixel i is read for pixel n - 1 - i.
  fy = jnp.where(aug.vertical_flip & jax.random.bernoulli(k_fy, 0.5, (batch,)), -1.0, 1.0)
  fx = jnp.where(aug.horizontal_flip & jax.random.bernoulli(k_fx, 0.5, (batch,)), -1.0, 1.0)
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  # input - c = R(theta) @ diag(zy * fy, zx * fx) @ (output - c) + shift
  a = jnp.stack([jnp.stack([cos * zy * fy, -sin * zx * fx], -1),
                 jnp.stack([sin * zy * fy, cos * zx * fx], -1)], -2)
  c = jnp.asarray([(h - 1) / 2, (w - 1) / 2])
  offset = c - jnp.einsum('bij,j->bi', a, c) + jnp.stack([ty, tx], -1)
  return jnp.concatenate([a, offset[..., None]], -1)


def keras_augment(key: jax.Array, images: jax.Array, aug: KerasAugment) -> jax.Array:
  """uint8 (or float) [B, H, W, C] -> the same shape and dtype, each image transformed by its
  own random draw of `aug`'s transforms. Jittable with `aug` static."""
  if images.ndim != 4:
    raise UserError(f'keras_augment expects images [B, H, W, C]; got shape {images.shape}')
  if not aug.active:
    return images
  b, h, w, _ = images.shape
  k_geo, k_bright = jax.random.split(key)
  x = images.astype(jnp.float32)
  geometric = (aug.rotation or aug.width_shift or aug.height_shift or aug.zoom
               or aug.horizontal_flip or aug.vertical_flip)
  if geometric:
    maps = _affine(k_geo, aug, b, h, w)
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h, dtype=jnp.float32),
                                  jnp.arange(w, dtype=jnp.float32), indexing='ij')
                     + [jnp.ones((h, w), jnp.float32)], 0)  # [3, H, W]
    coords = jnp.einsum('bij,jhw->bihw', maps, grid)  # [B, 2, H, W]

    def sample(image, coord):  # [H, W, C], [2, H, W] -> [H, W, C]
      per_channel = lambda ch: ndimage.map_coordinates(ch, [coord[0], coord[1]], order=1,
                                                       mode='nearest')
      return jax.vmap(per_channel, in_axes=2, out_axes=2)(image)
    x = jax.vmap(sample)(x, coords)
  if aug.brightness:
    lo, hi = aug.brightness
    factor = jax.random.uniform(k_bright, (b, 1, 1, 1), minval=lo, maxval=hi)
    x = x * factor
  if images.dtype == jnp.uint8:
    return jnp.clip(jnp.round(x), 0, 255).astype(jnp.uint8)
  return x.astype(images.dtype)


def preview(images: np.ndarray, aug: KerasAugment, seed: int = 0) -> np.ndarray:
  """The augmentation of uint8 [B, H, W, C] images under `seed` (for looking at what it does)."""
  return np.asarray(jax.jit(keras_augment, static_argnums=2)(jax.random.key(seed), images, aug))
