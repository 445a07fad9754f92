"""GAN generators and discriminators: MLPs (GAN Lab's 2D toys, small images), DCGAN convnets,
and the registry `MODELS` that also holds the SNGAN ResNets of `gan.resnet`.

Every module is called as `module.apply(variables, x, train=...)`; variables are
`{'params': ...}` plus `'batch_stats'` when the module has BatchNorm (DCGAN G) or
spectral normalisation (the power-iteration vectors). Apply with
`mutable=['batch_stats']` when `train=True`.

Computation runs in `dtype` (float32 by default); parameters are always float32 and
logits are returned as float32.
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, ClassVar, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common.errors import UserError, unknown_name
from common.kernels import batchnorm, resample
from gan import resnet
from gan.layers import Linear, spectral_norm_estimate, spectral_normalize  # noqa: F401 (API)

Array = jax.Array
Dtype = Any

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
  'relu': nn.relu,
  'leaky_relu': functools.partial(nn.leaky_relu, negative_slope=0.2),
  'tanh': jnp.tanh,
  'sigmoid': nn.sigmoid,
}
MAX_MLP_DEPTH = 5
IMAGE_SIZES = (8, 16, 28, 32, 64)
NOISE_DISTS = ('uniform', 'gaussian')
COMPUTE_DTYPES = ('float32', 'bfloat16', 'float16')
DCGAN_INIT = nn.initializers.normal(0.02)  # Radford et al. 2016


# ---- 4x4 stride-2 convolution layers (torch padding=1 semantics) ------------------

class UpConv(nn.Module):
  """x2 upsampling layer: [B, H, W, Cin] -> [B, 2H, 2W, features].

  `method` picks `resample.upsample2x`'s formulation (same values, different speed)."""
  features: int
  method: str = 'col2im'
  use_bias: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', DCGAN_INIT, (4, 4, x.shape[-1], self.features), jnp.float32)
    y = resample.upsample2x(x.astype(self.dtype), kernel.astype(self.dtype), self.method)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32).astype(self.dtype)
    return y


class DownConv(nn.Module):
  """/2 downsampling layer: [B, H, W, Cin] -> [B, H/2, W/2, features] (`resample.downsample2x`)."""
  features: int
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    kernel = self.param('kernel', DCGAN_INIT, (4, 4, x.shape[-1], self.features), jnp.float32)
    if self.spectral_norm:
      kernel = spectral_normalize(self, kernel, train)
    bias = self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    y = resample.downsample2x(x.astype(self.dtype), kernel.astype(self.dtype))
    return y + bias.astype(self.dtype)


# ---- validation -------------------------------------------------------------------

def _check_activation(name: str) -> None:
  if name not in ACTIVATIONS:
    raise unknown_name('model.activation', name, ACTIVATIONS)


def _check_positive(what: str, value: int) -> None:
  if not isinstance(value, (int, np.integer)) or value < 1:
    raise UserError(f'{what} must be a positive integer, got {value!r}: set it to 1 or more')


def _check_depth(depth: int) -> None:
  if not isinstance(depth, (int, np.integer)) or not 0 <= depth <= MAX_MLP_DEPTH:
    raise UserError(f'MLP depth must be an integer in 0..{MAX_MLP_DEPTH}, got {depth!r}: pick one in range')


def _dcgan_plan(image_size: int) -> tuple[int, int]:
  """image_size -> (side of the smallest feature map, number of x2 resamplings)."""
  if image_size not in IMAGE_SIZES:
    raise UserError(f'DCGAN image size {image_size!r} is not supported: use one of '
                    f'{", ".join(map(str, IMAGE_SIZES))} (resize the data)')
  start = 7 if image_size == 28 else 4
  return start, int(np.log2(image_size // start))


def _check_images(x: Array, image_size: int, channels: int) -> None:
  if x.ndim != 4 or tuple(x.shape[1:]) != (image_size, image_size, channels):
    raise UserError(f'images of shape {tuple(x.shape)} do not match the model: expected '
                    f'[B, {image_size}, {image_size}, {channels}]')


# ---- GAN Lab MLPs -----------------------------------------------------------------

class MLPGenerator(nn.Module):
  """z [B, Z] -> samples [B, out_dim]: `depth` hidden layers, linear output (depth 0 = affine map).

  With `image_shape` (H, W, C) the output goes through tanh and is reshaped to images
  [B, H, W, C] in [-1, 1] (out_dim must be H * W * C): a deep generator for small images,
  where DCGAN's at 8x8 is a single layer.
  """
  # Layers this small run faster on XLA:CPU's own dot kernels than on the library it hands
  # larger ones to (DCGAN's keep it); read by `common.kernels.xla_cpu.jit_for`.
  xla_cpu_kernels: ClassVar[bool] = True
  out_dim: int = 2
  hidden: int = 64
  depth: int = 2
  activation: str = 'relu'
  image_shape: tuple[int, ...] = ()
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _check_positive('out_dim', self.out_dim)
    if self.image_shape and int(np.prod(self.image_shape)) != self.out_dim:
      raise UserError(f'image_shape {tuple(self.image_shape)} does not hold out_dim '
                      f'{self.out_dim} values')
    _check_positive('hidden', self.hidden)
    _check_depth(self.depth)
    _check_activation(self.activation)
    super().__post_init__()

  @nn.compact
  def __call__(self, z: Array, train: bool = False) -> Array:
    act = ACTIVATIONS[self.activation]
    x = z.astype(self.dtype)
    for _ in range(self.depth):
      x = act(nn.Dense(self.hidden, dtype=self.dtype)(x))
    y = nn.Dense(self.out_dim, dtype=self.dtype)(x)
    if self.image_shape:
      y = jnp.tanh(y).reshape((z.shape[0], *self.image_shape))
    return y


# Taylor coefficients of sin(pi r) / r and cos(pi r) in r^2, for |r| <= 1/2 (error < 1e-7).
_SIN_PI = tuple((-1) ** k * np.pi ** (2 * k + 1) / math.factorial(2 * k + 1) for k in range(7))
_COS_PI = tuple((-1) ** k * np.pi ** (2 * k) / math.factorial(2 * k) for k in range(8))


def _polynomial(coefs: tuple[float, ...], u: Array) -> Array:
  acc = jnp.full_like(u, coefs[-1])
  for c in coefs[-2::-1]:
    acc = acc * u + c
  return acc


@jax.custom_jvp
def sincos_turns(t: Array) -> tuple[Array, Array]:
  """(sin 2 pi t, cos 2 pi t) from multiplies and adds: XLA's CPU sine and cosine run
  element by element, about 6x slower than this, and made D's Fourier features the most
  expensive part of a small MLP's training round. The whole turns are removed first (exact in
  floating point), which is also more accurate than a sine of 2 pi t rounded to float32."""
  r = t - jnp.round(t)  # |r| <= 1/2 turn
  r2 = r * r
  s, c = r * _polynomial(_SIN_PI, r2), _polynomial(_COS_PI, r2)  # sin and cos of pi r
  return 2 * s * c, 1 - 2 * s * s


@sincos_turns.defjvp
def _sincos_turns_jvp(primals, tangents):
  (t,), (dt,) = primals, tangents
  s, c = sincos_turns(t)  # written with itself, so every higher derivative is exact too
  w = (2 * np.pi) * dt
  return (s, c), (c * w, -s * w)


class MLPDiscriminator(nn.Module):
  """x [B, D] (or images [B, H, W, C], flattened) -> logits [B] (float32): `depth` hidden
  layers, optional spectral norm on all layers.

  With `fourier` > 0 (points only) the first layer sees x next to random Fourier features of it
  (Tancik et al. 2020): sin and cos of 2 pi x B for a fixed [D, fourier] matrix B of normal
  draws with standard deviation `fourier_scale`, so a ReLU MLP resolves detail finer than its
  smooth default. Each feature is divided by its frequency 2 pi |b|, so no feature is steeper
  than x itself: at full amplitude, an Adam step on the high frequencies' weights made D's
  gradient at the data jump 1,000-fold and the run diverge (docs/performance.md).
  """
  xla_cpu_kernels: ClassVar[bool] = True  # as MLPGenerator's
  hidden: int = 64
  depth: int = 2
  activation: str = 'relu'
  spectral_norm: bool = False
  fourier: int = 0
  fourier_scale: float = 8.0
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _check_positive('hidden', self.hidden)
    _check_depth(self.depth)
    _check_activation(self.activation)
    if self.fourier:
      _check_positive('model.d_fourier', self.fourier)
      if not np.isfinite(self.fourier_scale) or self.fourier_scale <= 0:
        raise UserError(f'model.d_fourier_scale must be a positive number, got '
                        f'{self.fourier_scale!r}: 8 suits data in the unit square')
    super().__post_init__()

  def fourier_features(self, x: Array) -> Array:
    """[x, sin(2 pi x B) / (2 pi |b|), cos(2 pi x B) / (2 pi |b|)] for points x [B, D]."""
    # A fixed matrix, part of the model's definition (the same for every seed and run).
    freqs = np.random.RandomState(0).normal(0.0, self.fourier_scale, (x.shape[1], self.fourier))
    amplitude = jnp.asarray(1.0 / (2 * np.pi * np.linalg.norm(freqs, axis=0)), self.dtype)
    sin, cos = sincos_turns(x @ jnp.asarray(freqs, self.dtype))
    return jnp.concatenate([x, amplitude * sin, amplitude * cos], -1)

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    act = ACTIVATIONS[self.activation]
    if self.fourier and x.ndim != 2:
      raise UserError(f'model.d_fourier needs points [B, D], got inputs of shape '
                      f'{tuple(x.shape)}: set model.d_fourier=0 for images')
    h = x.reshape(x.shape[0], -1) if x.ndim > 2 else x
    h = h.astype(self.dtype)
    h = self.fourier_features(h) if self.fourier else h
    for _ in range(self.depth):
      h = act(Linear(self.hidden, self.spectral_norm, dtype=self.dtype)(h, train))
    logits = Linear(1, self.spectral_norm, dtype=self.dtype)(h, train)
    return logits[:, 0].astype(jnp.float32)


# ---- DCGAN --------------------------------------------------------------------------

class DCGANGenerator(nn.Module):
  """z [B, Z] -> images [B, S, S, channels] in [-1, 1].

  Dense to a 4x4 (7x7 for S=28) map with features * 2**(n-1) channels, then n x2
  upsamplings that halve the channels (the last one to `channels`, with tanh).
  BatchNorm + ReLU after all but the last layer (Radford et al. 2016).
  """
  image_size: int
  channels: int = 1
  features: int = 64
  upsample: str = 'col2im'
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _dcgan_plan(self.image_size)
    _check_positive('channels', self.channels)
    _check_positive('features', self.features)
    if self.upsample not in resample.UPSAMPLE_METHODS:
      raise unknown_name('model.upsample', self.upsample, resample.UPSAMPLE_METHODS)
    super().__post_init__()

  @nn.compact
  def __call__(self, z: Array, train: bool = False) -> Array:
    start, n_up = _dcgan_plan(self.image_size)
    width = self.features * 2 ** (n_up - 1)
    norm = functools.partial(batchnorm.BatchNorm, use_running_average=not train, momentum=0.9,
                             epsilon=1e-5, dtype=self.dtype)
    x = nn.Dense(start * start * width, use_bias=False, kernel_init=DCGAN_INIT,
                 dtype=self.dtype)(z.astype(self.dtype))
    x = nn.relu(norm()(x.reshape(z.shape[0], start, start, width)))
    for _ in range(n_up - 1):
      width //= 2
      x = UpConv(width, self.upsample, use_bias=False, dtype=self.dtype)(x)
      x = nn.relu(norm()(x))
    x = UpConv(self.channels, self.upsample, dtype=self.dtype)(x)
    return jnp.tanh(x)


class DCGANDiscriminator(nn.Module):
  """images [B, S, S, channels] -> logits [B] (float32).

  n strided 4x4 convs (features, 2*features, ...) with LeakyReLU(0.2), then a linear
  layer. No BatchNorm, so each logit depends on its own sample only (gradient
  penalties stay per-sample).
  """
  image_size: int
  channels: int = 1
  features: int = 64
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _dcgan_plan(self.image_size)
    _check_positive('channels', self.channels)
    _check_positive('features', self.features)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    _check_images(x, self.image_size, self.channels)
    _, n_down = _dcgan_plan(self.image_size)
    h = x.astype(self.dtype)
    for i in range(n_down):
      h = DownConv(self.features * 2 ** i, self.spectral_norm, dtype=self.dtype)(h, train)
      h = nn.leaky_relu(h, negative_slope=0.2)
    logits = Linear(1, self.spectral_norm, kernel_init=DCGAN_INIT,
                    dtype=self.dtype)(h.reshape(h.shape[0], -1), train)
    return logits[:, 0].astype(jnp.float32)


# ---- registry -----------------------------------------------------------------------

MODELS: dict[str, tuple[type[nn.Module], type[nn.Module]]] = {
  'mlp': (MLPGenerator, MLPDiscriminator),
  'dcgan': (DCGANGenerator, DCGANDiscriminator),
  'sngan': (resnet.ResNetGenerator, resnet.ResNetDiscriminator),
}
IMAGE_MODELS = ('dcgan', 'sngan')


def create_models(model_cfg: Mapping[str, Any], data_shape: tuple[int, ...]
                  ) -> tuple[nn.Module, nn.Module]:
  """(generator, discriminator) for `model_cfg.name`, sized for samples of `data_shape`.

  data_shape is (D,) for points (mlp) or (H, W, C) for images (dcgan, sngan, or mlp on the
  flattened pixels with a tanh output). Reads hidden, depth, activation, spectral_norm,
  d_fourier, d_fourier_scale (mlp) or features, upsample, spectral_norm (dcgan), or
  `resnet.create_models`' fields (sngan, conditional when num_classes > 0), and optionally
  dtype; other fields are ignored (a config.json written before a field: its default).
  """
  name = model_cfg.get('name')
  if name not in MODELS:
    raise unknown_name('model.name', name, MODELS)
  g_cls, d_cls = MODELS[name]
  dtype = str(model_cfg.get('dtype', 'float32'))
  if dtype not in COMPUTE_DTYPES:
    raise unknown_name('model.dtype', dtype, COMPUTE_DTYPES)
  dtype = jnp.dtype(dtype)
  spectral_norm = bool(model_cfg.get('spectral_norm', False))
  data_shape = tuple(data_shape)
  if name == 'sngan':
    return resnet.create_models(model_cfg, data_shape, dtype)
  if name == 'mlp':
    if len(data_shape) not in (1, 3):
      raise UserError(f'model mlp needs points (D,) or images (H, W, C), got {data_shape}')
    common = dict(hidden=model_cfg.get('hidden', 64), depth=model_cfg.get('depth', 2),
                  activation=model_cfg.get('activation', 'relu'), dtype=dtype)
    image_shape = data_shape if len(data_shape) == 3 else ()
    fourier = dict(fourier=model_cfg.get('d_fourier', d_cls.fourier),
                   fourier_scale=float(model_cfg.get('d_fourier_scale', d_cls.fourier_scale)))
    return (g_cls(out_dim=int(np.prod(data_shape)), image_shape=image_shape, **common),
            d_cls(spectral_norm=spectral_norm, **fourier, **common))
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    raise UserError(f'model dcgan needs square images (H, W, C), got {data_shape}: '
                    'use model.name=mlp for points or resize the images')
  size, channels = data_shape[0], data_shape[2]
  features = model_cfg.get('features', 64)
  return (g_cls(size, channels, features, upsample=model_cfg.get('upsample', 'col2im'), dtype=dtype),
          d_cls(size, channels, features, spectral_norm=spectral_norm, dtype=dtype))


def sample_noise(key: Array, batch: int, noise_dim: int, noise_dist: str = 'uniform') -> Array:
  """Latent codes [batch, noise_dim], float32: uniform in [-1, 1] or standard normal."""
  _check_positive('noise_dim', noise_dim)
  if noise_dist == 'uniform':
    return jax.random.uniform(key, (batch, noise_dim), jnp.float32, -1.0, 1.0)
  if noise_dist == 'gaussian':
    return jax.random.normal(key, (batch, noise_dim), jnp.float32)
  raise unknown_name('model.noise', noise_dist, NOISE_DISTS)
