"""Max pooling whose gradient is elementwise work, for speed on XLA:CPU.

Autodiff of `lax.reduce_window(max)` is a select-and-scatter, which XLA:CPU lowers to a
variadic reduce-window over index arrays (iotas the size of the padded input) and a scatter,
several times the cost of the forward pool (figures in docs/performance.md, "CPU kernels").
Here the backward pass finds, per output pixel, the first window tap (row-major, like torch's
MaxPool2d) that holds the maximum, then adds each tap's share of dY into place with strided
pads, which XLA fuses into one pass over the input. The forward pass is the elementwise
maximum of the taps' strided views, one fused loop, faster than XLA:CPU's reduce-window.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

from common.kernels.conv import window_taps


def _padded_taps(x, window, strides, padding):
  """x padded with -inf, and its strided view under each window tap (row-major)."""
  xp = jnp.pad(x, ((0, 0), *padding, (0, 0)), constant_values=-jnp.inf)
  out_hw = [(n - k) // st + 1 for n, k, st in zip(xp.shape[1:3], window, strides)]
  return xp, window_taps(xp, window, strides, out_hw)


def _max_of_taps(x, window, strides, padding):
  return functools.reduce(jnp.maximum, _padded_taps(x, window, strides, padding)[1])


def _reduce_max(x, window, strides, padding):
  return lax.reduce_window(x, -jnp.inf, lax.max, (1, *window, 1), (1, *strides, 1),
                           ((0, 0), *padding, (0, 0)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
             padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """Max over `window` at `strides` of NHWC `x`, padded with -inf by `padding` ((top, bottom),
  (left, right)); `flax.linen.max_pool`'s values, torch's choice of maximum in the gradient."""
  return _max_of_taps(x, window, strides, padding)


def _fwd(x, window, strides, padding):
  y = _max_of_taps(x, window, strides, padding)
  return y, (x, y)


def _bwd(window, strides, padding, res, g):
  x, y = res
  xp, taps = _padded_taps(x, window, strides, padding)
  ho, wo = y.shape[1:3]
  # Index of the first tap that holds the maximum: later taps are overwritten by earlier ones.
  first = jnp.full(y.shape, len(taps) - 1, jnp.int32)
  for t in range(len(taps) - 2, -1, -1):
    first = jnp.where(taps[t] == y, t, first)
  dxp = None
  (kh, kw), (sh, sw) = window, strides
  zero = jnp.zeros((), g.dtype)
  for t in range(kh * kw):
    i, j = divmod(t, kw)
    share = jnp.where(first == t, g, zero)
    # Output pixel (oy, ox) under tap (i, j) reads padded input (sh * oy + i, sw * ox + j).
    placed = lax.pad(share, zero, ((0, 0, 0), (i, xp.shape[1] - i - sh * (ho - 1) - 1, sh - 1),
                                   (j, xp.shape[2] - j - sw * (wo - 1) - 1, sw - 1), (0, 0, 0)))
    dxp = placed if dxp is None else dxp + placed
  (top, _), (left, _) = padding
  return (dxp[:, top:top + x.shape[1], left:left + x.shape[2]],)


max_pool.defvjp(_fwd, _bwd)


def max_pool_nhwc(x: jax.Array, window: tuple[int, int], strides: tuple[int, int],
                  padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
  """`max_pool` on the CPU; `lax.reduce_window`'s own gradient on accelerators, which run
  select-and-scatter well."""
  if jax.default_backend() == 'cpu':
    return max_pool(x, tuple(window), tuple(strides), tuple(tuple(p) for p in padding))
  return _reduce_max(x, window, strides, padding)
