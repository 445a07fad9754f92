"""ADA's augmentation pipeline (Karras et al. 2020, "bgc"): geometric and colour ops, each firing
per image with probability p, composed into one 3x3 geometric and one 4x4 colour matrix per image.

Ops and strengths are the paper's defaults. Geometric (`G_inv` maps output pixel coordinates,
centred on the image, to input ones): xflip, rotate90, xint (integer translation by up to 1/8 of
the side), scale (lognormal, std 0.2 octaves), rotate (uniform angle, applied before and after
aniso with probability 1 - sqrt(1 - p) each), aniso (std 0.2), xfrac (normal, std 1/8 of the side).
Colour (on [-1, 1] RGB around the luma axis): brightness (std 0.2), contrast (std 0.5 octaves),
lumaflip, hue (uniform rotation), saturation (std 1 octave); 1-channel images use the matrix's
mean row, as ADA does. Resampling is bilinear with mirrored borders (torch's 'reflect' padding);
ADA's own resampler adds a wavelet low-pass filter, left out here.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy import ndimage

Array = jax.Array
GEOMETRIC = ('xflip', 'rotate90', 'xint', 'scale', 'rotate', 'aniso', 'xfrac')
COLOR = ('brightness', 'contrast', 'lumaflip', 'hue', 'saturation')
OPS = GEOMETRIC + COLOR
GROUPS = {'geometric': GEOMETRIC, 'color': COLOR}
STRENGTH = dict(xint_max=0.125, scale_std=0.2, rotate_max=1.0, aniso_std=0.2, xfrac_std=0.125,
                brightness_std=0.2, contrast_std=0.5, hue_max=1.0, saturation_std=1.0)
# Per op: (number of uniform gates, shape of its parameter draw per image, 'uniform' | 'normal').
_DRAWS = {'xflip': (1, (), 'uniform'), 'rotate90': (1, (), 'uniform'),
          'xint': (1, (2,), 'uniform'), 'scale': (1, (), 'normal'),
          'rotate': (2, (2,), 'uniform'), 'aniso': (1, (), 'normal'),
          'xfrac': (1, (2,), 'normal'), 'brightness': (1, (), 'normal'),
          'contrast': (1, (), 'normal'), 'lumaflip': (1, (), 'uniform'),
          'hue': (1, (), 'uniform'), 'saturation': (1, (), 'normal')}


def expand(words: tuple[str, ...]) -> tuple[str, ...]:
  """Policy words (ops or the groups 'geometric', 'color') -> ops in the pipeline's order."""
  chosen = {op for w in words for op in GROUPS.get(w, (w,))}
  return tuple(op for op in OPS if op in chosen)


def raw_draws(key: Array, batch: int, ops: tuple[str, ...]) -> dict[str, dict[str, Array]]:
  """Per op: 'gate' uniforms [n, B] (fire when < its probability) and 'value' [B, ...] draws.

  Two draws in all (uniforms, normals), sliced per op: XLA:CPU compiles every random draw
  separately, and a dozen small ones took seconds."""
  rows = {'uniform': 0, 'normal': 0}
  plan = {}
  for op in ops:
    n_gates, shape, kind = _DRAWS[op]
    n_values = int(math.prod(shape))
    plan[op] = (rows['uniform'], n_gates, kind, rows[kind] + (n_gates if kind == 'uniform' else 0),
                shape)
    rows['uniform'] += n_gates
    rows[kind] += n_values
  ku, kn = jax.random.split(key)
  draws = {'uniform': jax.random.uniform(ku, (rows['uniform'], batch)),
           'normal': jax.random.normal(kn, (rows['normal'], batch))}
  out = {}
  for op, (g0, n_gates, kind, v0, shape) in plan.items():
    values = draws[kind][v0:v0 + int(math.prod(shape))]
    out[op] = {'gate': draws['uniform'][g0:g0 + n_gates],
               'value': values.T.reshape(batch, *shape)}
  return out


def _mat3(rows) -> Array:
  """[B, 3, 3] from 3x3 nested lists of [B] arrays or scalars."""
  b = next(jnp.shape(v)[0] for r in rows for v in r if jnp.ndim(v))
  return jnp.stack([jnp.stack([jnp.broadcast_to(jnp.asarray(v, jnp.float32), (b,)) for v in r], -1)
                    for r in rows], -2)


def _scale2d(sx, sy):
  return _mat3([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _rotate2d(a):
  return _mat3([[jnp.cos(a), -jnp.sin(a), 0], [jnp.sin(a), jnp.cos(a), 0], [0, 0, 1]])


def _translate2d(tx, ty):
  return _mat3([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def geometric_matrix(raw: dict, p: Array, height: int, width: int) -> Array:
  """G_inv [B, 3, 3]: output pixel (x, y, 1), centred, -> input pixel, for the geometric ops in
  `raw`, each op composed on the right as in ADA (inverse transforms)."""
  s = STRENGTH
  b = next(iter(raw.values()))['gate'].shape[1]
  g = jnp.broadcast_to(jnp.eye(3), (b, 3, 3))
  fire = lambda op, i=0, prob=None: raw[op]['gate'][i] < (p if prob is None else prob)
  if 'xflip' in raw:
    i = jnp.where(fire('xflip'), jnp.floor(raw['xflip']['value'] * 2), 0.0)
    g = g @ _scale2d(1 / (1 - 2 * i), 1.0)
  if 'rotate90' in raw:
    i = jnp.where(fire('rotate90'), jnp.floor(raw['rotate90']['value'] * 4), 0.0)
    g = g @ _rotate2d(math.pi / 2 * i)
  if 'xint' in raw:
    t = jnp.where(fire('xint')[:, None], (raw['xint']['value'] * 2 - 1) * s['xint_max'], 0.0)
    g = g @ _translate2d(-jnp.round(t[:, 0] * width), -jnp.round(t[:, 1] * height))
  if 'scale' in raw:
    v = jnp.where(fire('scale'), jnp.exp2(raw['scale']['value'] * s['scale_std']), 1.0)
    g = g @ _scale2d(1 / v, 1 / v)
  p_rot = 1 - jnp.sqrt(jnp.clip(1 - p, 0, 1))
  theta = None
  if 'rotate' in raw:
    theta = (raw['rotate']['value'] * 2 - 1) * math.pi * s['rotate_max']
    g = g @ _rotate2d(jnp.where(fire('rotate', 0, p_rot), theta[:, 0], 0.0))
  if 'aniso' in raw:
    v = jnp.where(fire('aniso'), jnp.exp2(raw['aniso']['value'] * s['aniso_std']), 1.0)
    g = g @ _scale2d(1 / v, v)
  if theta is not None:
    g = g @ _rotate2d(jnp.where(fire('rotate', 1, p_rot), theta[:, 1], 0.0))
  if 'xfrac' in raw:
    t = jnp.where(fire('xfrac')[:, None], raw['xfrac']['value'] * s['xfrac_std'], 0.0)
    g = g @ _translate2d(-t[:, 0] * width, -t[:, 1] * height)
  return g


_LUMA = jnp.array([1.0, 1.0, 1.0, 0.0]) / math.sqrt(3)


def _rotate3d(v: Array, theta: Array) -> Array:
  """[B, 4, 4] rotation by theta [B] about the unit axis v [4] (Rodrigues)."""
  vx, vy, vz = v[0], v[1], v[2]
  s, c = jnp.sin(theta), jnp.cos(theta)
  cc = 1 - c
  zero, one = jnp.zeros_like(theta), jnp.ones_like(theta)
  rows = [[vx * vx * cc + c, vx * vy * cc - vz * s, vx * vz * cc + vy * s, zero],
          [vy * vx * cc + vz * s, vy * vy * cc + c, vy * vz * cc - vx * s, zero],
          [vz * vx * cc - vy * s, vz * vy * cc + vx * s, vz * vz * cc + c, zero],
          [zero, zero, zero, one]]
  return jnp.stack([jnp.stack(r, -1) for r in rows], -2)


def color_matrix(raw: dict, p: Array, channels: int) -> Array:
  """C [B, 4, 4] acting on (r, g, b, 1), ops composed on the left as in ADA."""
  s = STRENGTH
  b = next(iter(raw.values()))['gate'].shape[1]
  eye = jnp.eye(4)
  c = jnp.broadcast_to(eye, (b, 4, 4))
  vv = jnp.outer(_LUMA, _LUMA)
  fire = lambda op: raw[op]['gate'][0] < p
  if 'brightness' in raw:
    v = jnp.where(fire('brightness'), raw['brightness']['value'] * s['brightness_std'], 0.0)
    c = (eye + jnp.zeros((b, 4, 4)).at[:, :3, 3].set(v[:, None])) @ c
  if 'contrast' in raw:
    v = jnp.where(fire('contrast'), jnp.exp2(raw['contrast']['value'] * s['contrast_std']), 1.0)
    c = (eye * jnp.concatenate([jnp.repeat(v[:, None], 3, 1), jnp.ones((b, 1))], 1)[:, None, :]
         ) @ c
  if 'lumaflip' in raw:
    i = jnp.where(fire('lumaflip'), jnp.floor(raw['lumaflip']['value'] * 2), 0.0)
    c = (eye - 2 * vv * i[:, None, None]) @ c
  if 'hue' in raw and channels > 1:
    theta = jnp.where(fire('hue'), (raw['hue']['value'] * 2 - 1) * math.pi * s['hue_max'], 0.0)
    c = _rotate3d(_LUMA, theta) @ c
  if 'saturation' in raw and channels > 1:
    v = jnp.where(fire('saturation'),
                  jnp.exp2(raw['saturation']['value'] * s['saturation_std']), 1.0)
    c = (vv + (eye - vv) * v[:, None, None]) @ c
  return c


def apply_geometric(x: Array, g_inv: Array) -> Array:
  """x [B, H, W, C] resampled at g_inv [B, 3, 3] of each output pixel: bilinear, mirrored
  borders; differentiable in x."""
  _, h, w, _ = x.shape
  cy, cx = (h - 1) / 2, (w - 1) / 2
  yy, xx = jnp.meshgrid(jnp.arange(h) - cy, jnp.arange(w) - cx, indexing='ij')
  grid = jnp.stack([xx.ravel(), yy.ravel(), jnp.ones(h * w)])  # [3, H*W]
  src = g_inv @ grid  # [B, 3, H*W]
  coords = jnp.stack([src[:, 1] + cy, src[:, 0] + cx], 1).reshape(-1, 2, h, w)

  def one(image, c):  # image [H, W, C], c [2, H, W]
    sample = lambda channel: ndimage.map_coordinates(channel, [c[0], c[1]], order=1,
                                                     mode='mirror')
    return jax.vmap(sample, in_axes=2, out_axes=2)(image)

  return jax.vmap(one)(x, coords.astype(x.dtype))


def apply_color(x: Array, c: Array) -> Array:
  """x [B, H, W, C] (C = 3, or 1 with the mean row) times the colour matrices c [B, 4, 4]."""
  if x.shape[-1] == 3:
    return jnp.einsum('bij,bhwj->bhwi', c[:, :3, :3].astype(x.dtype), x) + \
        c[:, None, None, :3, 3].astype(x.dtype)
  row = c[:, :3, :].mean(axis=1)  # [B, 4]
  return x * row[:, None, None, None, :3].sum(-1) + row[:, None, None, None, 3]


def augment(key: Array, x: Array, p: Array, ops: tuple[str, ...]) -> Array:
  """ADA's pipeline restricted to `ops` at probability p (a scalar) on x [B, H, W, C]."""
  raw = raw_draws(key, x.shape[0], ops)
  p = jnp.asarray(p, jnp.float32)
  geo = {op: raw[op] for op in ops if op in GEOMETRIC}
  col = {op: raw[op] for op in ops if op in COLOR}
  if geo:
    x = apply_geometric(x, geometric_matrix(geo, p, x.shape[1], x.shape[2]))
  if col:
    x = apply_color(x, color_matrix(col, p, x.shape[-1]))
  return x
