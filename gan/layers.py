"""Layers the GAN models share: spectral normalisation (Miyato et al. 2018), a dense layer and
a stride-1 convolution that can carry it.

Spectral normalisation keeps its power-iteration vector `sn_u` in the module's 'batch_stats'
collection and sows the estimated sigma into 'intermediates' (tests read it there).
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from common.kernels import conv

Array = jax.Array
Dtype = Any
_NHWC = ('NHWC', 'HWIO', 'NHWC')


def _l2_normalize(v: Array, eps: float = 1e-12) -> Array:
  return v * lax.rsqrt(jnp.maximum(jnp.sum(v * v), eps))


def spectral_norm_estimate(w_matrix: Array, u: Array, n_iter: int = 1) -> tuple[Array, Array]:
  """Largest singular value of `w_matrix` [M, N] by `n_iter` power iterations from `u` [N].

  Returns (sigma, u_new) with sigma = ||W u_new||. The iterations see W through
  stop_gradient (as in Miyato et al. 2018); gradients reach W only via the final norm.
  """
  w_const = lax.stop_gradient(w_matrix)

  def power_step(_, u):
    return _l2_normalize(w_const.T @ _l2_normalize(w_const @ u))

  u = lax.stop_gradient(u)
  if n_iter == 1:  # the per-train-step case: no loop for XLA to compile
    u = power_step(0, u)
  elif n_iter > 1:  # a loop, not unrolled Python, keeps compile time flat in n_iter
    u = lax.fori_loop(0, n_iter, power_step, u)
  return jnp.linalg.norm(w_matrix @ u), u


def _power_init(w_matrix: Array, u: Array, squarings: int = 4) -> Array:
  """u advanced by 2**squarings power iterations at once: (W^T W)^(2**k) u by repeated
  squaring, with no loop for XLA to compile (eager flax init compiles every op)."""
  a = lax.stop_gradient(w_matrix.T @ w_matrix)
  for _ in range(squarings):
    a = a / jnp.maximum(jnp.max(jnp.abs(a)), 1e-30)  # the scale is irrelevant; keeps a^2 finite
    a = a @ a
  return _l2_normalize(a @ u)


def spectral_normalize(module: nn.Module, kernel: Array, train: bool) -> Array:
  """Returns kernel / sigma, sigma estimated on the kernel reshaped to [-1, out_features].

  The power-iteration vector `sn_u` [out_features] lives in 'batch_stats' of `module`;
  init advances it 16 iterations (torch's spectral_norm does 15), then it advances one
  iteration per call only when `train` is True. For convolutions this normalises the
  reshaped kernel, not the convolution operator (the usual SN-GAN choice).
  """
  w = kernel.reshape(-1, kernel.shape[-1])

  def init_u():
    u0 = jax.random.normal(module.make_rng('params'), (w.shape[1],), jnp.float32)
    return _power_init(w, u0)

  u_var = module.variable('batch_stats', 'sn_u', init_u)
  n_iter = int(train and not module.is_initializing())
  sigma, u = spectral_norm_estimate(w, u_var.value, n_iter)
  if n_iter:
    u_var.value = u
  module.sow('intermediates', 'sn_sigma', sigma)
  return kernel / sigma


class Linear(nn.Module):
  """Dense layer [..., in] -> [..., features], optionally spectrally normalised."""
  features: int
  spectral_norm: bool = False
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    kernel = self.param('kernel', self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    if self.spectral_norm:
      kernel = spectral_normalize(self, kernel, train)
    y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y


class Conv(nn.Module):
  """Stride-1 'same' convolution [B, H, W, Cin] -> [B, H, W, features], square `kernel_size`,
  optionally spectrally normalised; runs on `common.kernels.conv` like every conv here."""
  features: int
  kernel_size: int = 3
  spectral_norm: bool = False
  use_bias: bool = True
  kernel_init: Callable = nn.initializers.xavier_uniform()
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    k = self.kernel_size
    kernel = self.param('kernel', self.kernel_init, (k, k, x.shape[-1], self.features),
                        jnp.float32)
    if self.spectral_norm:
      kernel = spectral_normalize(self, kernel, train)
    pad = ((k - 1) // 2, k // 2)
    y = conv.conv_general_dilated(x.astype(self.dtype), kernel.astype(self.dtype), (1, 1),
                                  (pad, pad), dimension_numbers=_NHWC)
    if self.use_bias:
      bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
      y = y + bias.astype(self.dtype)
    return y
