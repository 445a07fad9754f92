"""Train-mode BatchNorm whose gradient takes two passes over the activations.

`BatchNorm` is a drop-in for `flax.linen.BatchNorm` over the last axis: the same variables
('params': scale, bias; 'batch_stats': mean, var), the same running-statistics update (biased
batch variance, flax momentum) and the same values. Only how train mode differentiates differs.
Under autodiff of flax's normalisation, XLA:CPU kept `x - mean` as an extra [B, H, W, C]
array per layer (a ResNet-50 step: 53 of them); here the backward pass is one reduction
(sums of dy and dy * x per channel) and one elementwise pass, with x the only saved activation:

  dx = a * (dy - mean(dy) - (x - mean) * inv^2 * mean(dy * (x - mean)))    a = scale * inv

The statistics are float32 sums of x and x^2 in one pass (flax's "fast variance"), clipped at 0.
"""
from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax


def batch_stats(x: jax.Array) -> tuple[jax.Array, jax.Array]:
  """Per-channel mean and biased variance of [..., C] over every other axis, in float32."""
  axes = tuple(range(x.ndim - 1))
  x = x.astype(jnp.float32)
  mean = jnp.mean(x, axes)
  var = jnp.maximum(jnp.mean(lax.square(x), axes) - lax.square(mean), 0.0)
  return mean, var


def _normalize(x, scale, bias, mean, var, epsilon):
  """flax's arithmetic: (x - mean) * (scale * rsqrt(var + epsilon)) + bias, in float32."""
  a = scale.astype(jnp.float32) * lax.rsqrt(var + epsilon)
  return ((x.astype(jnp.float32) - mean) * a + bias.astype(jnp.float32)).astype(x.dtype)


def _train_forward(x, scale, bias, epsilon):
  # x * a + b with per-channel a, b: unlike (x - mean) * a + bias, nothing here matches the
  # backward pass's arithmetic, so XLA cannot merge the two into an extra saved array.
  mean, var = batch_stats(x)
  inv = lax.rsqrt(var + epsilon)
  a = scale.astype(jnp.float32) * inv
  b = bias.astype(jnp.float32) - mean * a
  return (x.astype(jnp.float32) * a + b).astype(x.dtype), (mean, inv, a)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def normalize_train(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon: float) -> jax.Array:
  """(x - batch mean) / sqrt(batch var + epsilon) * scale + bias, x [..., C], scale/bias [C]."""
  return _train_forward(x, scale, bias, epsilon)[0]


def _fwd(x, scale, bias, epsilon):
  y, (mean, inv, a) = _train_forward(x, scale, bias, epsilon)
  return y, (x, scale, mean, inv, a)


def _bwd(epsilon, res, dy):
  x, scale, mean, inv, a = res
  axes = tuple(range(x.ndim - 1))
  n = x.size // x.shape[-1]
  dy32, x32 = dy.astype(jnp.float32), x.astype(jnp.float32)
  sum_dy = jnp.sum(dy32, axes)
  sum_dy_xc = jnp.sum(dy32 * x32, axes) - mean * sum_dy  # sum of dy * (x - mean)
  k = inv * inv * sum_dy_xc / n
  # a * (dy - mean(dy) - (x - mean) * k) with the per-channel factors gathered.
  dx = a * dy32 - (a * k) * x32 + a * (k * mean - sum_dy / n)
  return dx.astype(x.dtype), (sum_dy_xc * inv).astype(scale.dtype), sum_dy.astype(scale.dtype)


normalize_train.defvjp(_fwd, _bwd)


class BatchNorm(nn.Module):
  """`flax.linen.BatchNorm` over the last axis with `normalize_train`'s two-pass gradient.

  `affine=False` drops the learned scale and bias (flax's use_scale/use_bias=False), for
  layers that bring their own, such as class-conditional BatchNorm."""
  use_running_average: bool
  momentum: float = 0.99
  epsilon: float = 1e-5
  dtype: Any = None
  affine: bool = True
  use_scale: bool = True  # False: no 'scale' parameter, a constant 1 (Keras' scale=False)

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    if self.affine:
      scale = (self.param('scale', nn.initializers.ones, (c,), jnp.float32) if self.use_scale
               else jnp.ones((c,), jnp.float32))
      bias = self.param('bias', nn.initializers.zeros, (c,), jnp.float32)
    else:
      scale, bias = jnp.ones((c,), jnp.float32), jnp.zeros((c,), jnp.float32)
    ra_mean = self.variable('batch_stats', 'mean', lambda: jnp.zeros((c,), jnp.float32))
    ra_var = self.variable('batch_stats', 'var', lambda: jnp.ones((c,), jnp.float32))
    dtype = self.dtype or x.dtype
    x = x.astype(dtype)
    if self.use_running_average:
      return _normalize(x, scale, bias, ra_mean.value, ra_var.value, self.epsilon)
    if not self.is_initializing():
      # The same reductions as inside normalize_train: XLA computes them once.
      mean, var = lax.stop_gradient(batch_stats(x))
      ra_mean.value = self.momentum * ra_mean.value + (1 - self.momentum) * mean
      ra_var.value = self.momentum * ra_var.value + (1 - self.momentum) * var
    return normalize_train(x, scale, bias, self.epsilon)
