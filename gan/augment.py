"""Augmentation of everything D sees, for GANs on little data (`config.augment`).

- `diffaug`: DiffAugment (Zhao et al. 2020), the official implementation's ops on NHWC images
  in [-1, 1]: `color` (brightness, saturation, contrast), `translation` (by up to 1/8 of the
  side, zero-filled), `cutout` (a square of half the side set to 0), applied in policy order.
- `ada`: adaptive discriminator augmentation (Karras et al. 2020; `gan.ada`): a geometric and a
  colour pipeline whose every op fires with probability p, and p follows the sign of D's outputs
  on reals towards `augment.ada_target`.

Both are differentiable in the images, run on device inside the jitted round and draw from the
round's own key (`steps` derives it from the seed and the round), so a run stays reproducible and
resumable. D sees real and fake batches augmented alike (independent draws per image); the G step
augments its fakes too, so G learns through the augmentation. With `augment.name=none` the step
code runs exactly what it ran before augmentation existed.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from common.errors import UserError, unknown_name
from gan import ada

Array = jax.Array
DIFFAUG_OPS = ('color', 'translation', 'cutout')
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


# ---- DiffAugment: draws and ops ---------------------------------------------------------------

def _translation_shift(side: int) -> int:
  return int(side * TRANSLATION_RATIO + 0.5)


def _cutout_size(side: int) -> int:
  return int(side * CUTOUT_RATIO + 0.5)


def diffaug_draws(key: Array, shape: tuple[int, ...], policy: tuple[str, ...]) -> dict:
  """The random numbers `diffaug_apply` uses for images of `shape` [B, H, W, C]: per image,
  colour factors in [0, 1), integer shifts in [-H/8, H/8], cutout centres; all from one uniform
  draw (XLA:CPU compiles each draw apart, slowly)."""
  b, h, w = shape[:3]
  u = jax.random.uniform(key, (7, b), jnp.float32)
  integers = lambda row, lo, n: lo + jnp.minimum(jnp.floor(row * n), n - 1).astype(jnp.int32)
  out = {}
  if 'color' in policy:
    out['color'] = u[:3]
  if 'translation' in policy:
    sh, sw = _translation_shift(h), _translation_shift(w)
    out['translation'] = jnp.stack([integers(u[3], -sh, 2 * sh + 1),
                                    integers(u[4], -sw, 2 * sw + 1)])
  if 'cutout' in policy:
    ch, cw = _cutout_size(h), _cutout_size(w)
    out['cutout'] = jnp.stack([integers(u[5], 0, h + (1 - ch % 2)),
                               integers(u[6], 0, w + (1 - cw % 2))])
  return out


def _color(x: Array, u: Array) -> Array:
  """Brightness + [-0.5, 0.5), saturation x [0, 2), contrast x [0.5, 1.5), per image."""
  per_image = lambda v: v[:, None, None, None].astype(x.dtype)
  x = x + (per_image(u[0]) - 0.5)
  mean = x.mean(axis=3, keepdims=True)
  x = (x - mean) * (per_image(u[1]) * 2) + mean
  mean = x.mean(axis=(1, 2, 3), keepdims=True)
  return (x - mean) * (per_image(u[2]) + 0.5) + mean


def _translation(x: Array, shift: Array) -> Array:
  """Each image moved by (shift[0, i], shift[1, i]) pixels, zeros filling in: the reference's
  gather from the 1-pixel zero-padded image at clamp(index + shift + 1)."""
  _, h, w, _ = x.shape
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  rows = jnp.clip(jnp.arange(h)[None, :] + shift[0][:, None] + 1, 0, h + 1)  # [B, H]
  cols = jnp.clip(jnp.arange(w)[None, :] + shift[1][:, None] + 1, 0, w + 1)  # [B, W]
  xp = jnp.take_along_axis(xp, rows[:, :, None, None], axis=1)
  return jnp.take_along_axis(xp, cols[:, None, :, None], axis=2)


def _cutout(x: Array, centre: Array) -> Array:
  """Zeros in a square of half the side per image: rows (and columns) from centre - size // 2,
  `size` of them, clipped to the image (the reference's clamped index grid)."""
  _, h, w, _ = x.shape
  ch, cw = _cutout_size(h), _cutout_size(w)
  top = (centre[0] - ch // 2)[:, None]
  left = (centre[1] - cw // 2)[:, None]
  r, c = jnp.arange(h)[None, :], jnp.arange(w)[None, :]
  in_rows = (r >= top) & (r < top + ch)  # [B, H]
  in_cols = (c >= left) & (c < left + cw)  # [B, W]
  cut = in_rows[:, :, None] & in_cols[:, None, :]
  return x * (~cut)[..., None].astype(x.dtype)


_DIFFAUG_FNS = {'color': _color, 'translation': _translation, 'cutout': _cutout}


def diffaug_apply(x: Array, draws: dict, policy: tuple[str, ...]) -> Array:
  """DiffAugment of images x [B, H, W, C] with `diffaug_draws`' numbers, ops in policy order."""
  for op in policy:
    x = _DIFFAUG_FNS[op](x, draws[op])
  return x


def diffaugment(key: Array, x: Array, policy: tuple[str, ...] = DIFFAUG_OPS) -> Array:
  """DiffAugment of x [B, H, W, C] in [-1, 1] with fresh draws from `key`."""
  return diffaug_apply(x, diffaug_draws(key, x.shape, policy), policy)


# ---- the config's choice ---------------------------------------------------------------------

class Augment(NamedTuple):
  """`apply(key, images [B, H, W, C], p) -> images`; `adaptive`: p lives in the train state
  and follows D's outputs on reals (ADA); `p0`: its initial value."""
  name: str
  apply: Callable[[Array, Array, Array | None], Array]
  adaptive: bool = False
  p0: float = 0.0


AUGMENTS = ('none', 'diffaug', 'ada')
DEFAULT_POLICY = {'diffaug': ','.join(DIFFAUG_OPS), 'ada': 'geometric,color'}


def _policy(name: str, text: str, known) -> tuple[str, ...]:
  words = tuple(w.strip() for w in (text or DEFAULT_POLICY[name]).split(',') if w.strip())
  for w in words:
    if w not in known:
      raise unknown_name(f'augment.policy op for {name}', w, known)
  if len(set(words)) != len(words) or not words:
    raise UserError(f'augment.policy {text!r} names an op twice or none; list each op once')
  return words


def build(cfg: ml_collections.ConfigDict) -> Augment | None:
  """The augmentation `cfg` (a config's `augment` section) asks for; None for 'none'. Bad
  names and values are one-line UserErrors."""
  name = cfg.name
  if name not in AUGMENTS:
    raise unknown_name('augment.name', name, AUGMENTS)
  if name == 'none':
    return None
  if name == 'diffaug':
    policy = _policy(name, cfg.policy, DIFFAUG_OPS)
    return Augment(name, lambda key, x, p: diffaugment(key, x, policy))
  ops = ada.expand(_policy(name, cfg.policy, (*ada.GROUPS, *ada.OPS)))
  if not 0 <= cfg.p <= 1:
    raise UserError(f'augment.p must be in [0, 1], got {cfg.p}')
  if not 0 <= cfg.ada_target < 1 or cfg.ada_kimg <= 0:
    raise UserError(f'augment.ada_target must be in [0, 1) (0: p fixed at augment.p) and '
                    f'augment.ada_kimg > 0, got {cfg.ada_target} and {cfg.ada_kimg}')
  return Augment(name, lambda key, x, p: ada.augment(key, x, p, ops), cfg.ada_target > 0,
                 float(cfg.p))


def adjust_p(p: Array, real_signs: Array, target: float, images: int, kimg: float) -> Array:
  """ADA's update: p moves by images / (kimg * 1000) towards more augmentation when the mean
  sign of D's outputs on reals, `real_signs` [n], exceeds `target` (D overfits), else back;
  clipped to [0, 1]."""
  r_t = jnp.mean(real_signs)
  return jnp.clip(p + jnp.sign(r_t - target) * images / (kimg * 1000.0), 0.0, 1.0)
