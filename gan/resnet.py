"""SNGAN-style ResNet generator and discriminator (Miyato et al. 2018; Mimicry's layouts).

- Generator: z [B, Z] -> linear to a start x start map -> up-sampling residual blocks
  (BN, ReLU, nearest x2, 3x3 conv, BN, ReLU, 3x3 conv; shortcut: nearest x2, 1x1 conv) ->
  BN, ReLU, 3x3 conv to `channels`, tanh. Conditional runs swap every BN for class-conditional
  BatchNorm (a per-class gain and bias, Miyato & Koyama 2018).
- Discriminator: images [B, S, S, C] -> down-sampling residual blocks (ReLU, 3x3 conv, ReLU,
  3x3 conv, 2x2 average pool; the first block without the leading ReLU) -> ReLU, sum over
  space -> linear; spectral normalisation on every layer when `spectral_norm`. Conditional runs
  add the projection <embed(y), phi(x)> (or, with `conditioning='acgan'`, a class head).
- An optional SAGAN self-attention block (Zhang et al. 2019) after the block whose output has
  side `attention` (0: none), in both networks.

Channel widths are multiples of `features` per resolution (`PLANS`); features=64 gives the
published widths: CIFAR-10 G 256 / D 128, 64 px and 128 px G 1024 -> 64, D 64 -> 1024.
Called like the other models: G(z[, labels], train), D(x[, labels], train); unconditional D
returns logits [B], conditional D (logits [B], class_logits [B, K] or None), float32.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.errors import UserError, unknown_name
from common.kernels import batchnorm, pool
from gan.layers import Conv, Linear, spectral_normalize

Array = jax.Array
Dtype = Any
# Xavier-uniform with gain sqrt(2) on residual convs, gain 1 on shortcuts and heads (Mimicry).
RESIDUAL_INIT = nn.initializers.variance_scaling(2.0, 'fan_avg', 'uniform')
HEAD_INIT = nn.initializers.xavier_uniform()
CONDITIONINGS = ('projection', 'acgan')


@dataclasses.dataclass(frozen=True)
class Plan:
  """start: side of G's first map; g: G's width multipliers at start and after each up-block;
  d: D's block widths; d_down: which D blocks halve the resolution."""
  start: int
  g: tuple[int, ...]
  d: tuple[int, ...]
  d_down: tuple[bool, ...]


PLANS: dict[int, Plan] = {
  32: Plan(4, (4, 4, 4, 4), (2, 2, 2, 2), (True, True, False, False)),
  48: Plan(6, (8, 4, 2, 1), (1, 2, 4, 8, 16), (True, True, True, True, False)),
  64: Plan(4, (16, 8, 4, 2, 1), (1, 2, 4, 8, 16), (True, True, True, True, False)),
  128: Plan(4, (16, 16, 8, 4, 2, 1), (1, 2, 4, 8, 16, 16), (True,) * 5 + (False,)),
}


def plan(image_size: int) -> Plan:
  if image_size not in PLANS:
    raise UserError(f'ResNet GAN image size {image_size!r} is not supported: use one of '
                    f'{", ".join(map(str, PLANS))} (set data.image_size or resize the data)')
  return PLANS[image_size]


def upsample_nearest(x: Array) -> Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], each pixel repeated 2x2."""
  b, h, w, c = x.shape
  return jnp.broadcast_to(x[:, :, None, :, None], (b, h, 2, w, 2, c)).reshape(b, 2 * h, 2 * w, c)


def avg_pool2(x: Array) -> Array:
  """[B, H, W, C] -> [B, H/2, W/2, C], means of 2x2 blocks."""
  b, h, w, c = x.shape
  return x.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


class ConditionalBatchNorm(nn.Module):
  """BatchNorm without its own affine, then a gain and bias per class: x [B, H, W, C], labels
  [B] -> gamma[labels] * x_hat + beta[labels] (gains start at 1, biases at 0)."""
  num_classes: int
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, labels: Array, train: bool) -> Array:
    c = x.shape[-1]
    h = batchnorm.BatchNorm(not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype,
                            affine=False)(x)
    gamma = self.param('gamma', nn.initializers.ones, (self.num_classes, c), jnp.float32)
    beta = self.param('beta', nn.initializers.zeros, (self.num_classes, c), jnp.float32)
    return (h * gamma[labels][:, None, None, :].astype(h.dtype)
            + beta[labels][:, None, None, :].astype(h.dtype))


class Norm(nn.Module):
  """BatchNorm, or class-conditional BatchNorm when `num_classes` > 0 (labels given)."""
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, labels: Array | None, train: bool) -> Array:
    if self.num_classes:
      return ConditionalBatchNorm(self.num_classes, self.dtype)(x, labels, train)
    return batchnorm.BatchNorm(not train, momentum=0.9, epsilon=1e-5, dtype=self.dtype)(x)


class SelfAttention(nn.Module):
  """SAGAN attention [B, H, W, C] -> same: x + gamma * o, gamma starting at 0; keys and values
  max-pooled 2x2 (BigGAN's layout), every 1x1 conv spectrally normalised."""
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    b, h, w, c = x.shape
    conv = functools.partial(Conv, kernel_size=1, spectral_norm=True, use_bias=False,
                             kernel_init=HEAD_INIT, dtype=self.dtype)
    down = lambda t: pool.max_pool_nhwc(t, (2, 2), (2, 2), ((0, 0), (0, 0)))
    theta = conv(max(c // 8, 1), name='theta')(x, train).reshape(b, h * w, -1)
    phi = down(conv(max(c // 8, 1), name='phi')(x, train)).reshape(b, h * w // 4, -1)
    g = down(conv(max(c // 2, 1), name='g')(x, train)).reshape(b, h * w // 4, -1)
    attn = jax.nn.softmax(jnp.einsum('bnk,bmk->bnm', theta, phi).astype(jnp.float32), axis=-1)
    o = jnp.einsum('bnm,bmk->bnk', attn.astype(self.dtype), g).reshape(b, h, w, -1)
    o = conv(c, name='o')(o, train)
    gamma = self.param('gamma', nn.initializers.zeros, (), jnp.float32)
    return x + gamma.astype(self.dtype) * o


class GBlock(nn.Module):
  """Up-sampling residual block [B, H, W, Cin] -> [B, 2H, 2W, features]."""
  features: int
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, labels: Array | None, train: bool) -> Array:
    conv = functools.partial(Conv, self.features, dtype=self.dtype)
    h = nn.relu(Norm(self.num_classes, self.dtype)(x, labels, train))
    h = conv(kernel_init=RESIDUAL_INIT)(upsample_nearest(h))
    h = nn.relu(Norm(self.num_classes, self.dtype)(h, labels, train))
    h = conv(kernel_init=RESIDUAL_INIT)(h)
    return h + conv(kernel_size=1, kernel_init=HEAD_INIT, name='shortcut')(upsample_nearest(x))


class DBlock(nn.Module):
  """Residual block [B, H, W, Cin] -> [B, H/2, W/2, features] (or H, W when not `down`).
  `first` is the optimised input block: no ReLU before its first conv, pool before its
  shortcut's conv."""
  features: int
  down: bool = True
  first: bool = False
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool) -> Array:
    conv = functools.partial(Conv, spectral_norm=self.spectral_norm, dtype=self.dtype)
    pool2 = avg_pool2 if self.down else (lambda t: t)
    hidden = self.features if self.first else x.shape[-1]
    h = x if self.first else nn.relu(x)
    h = conv(hidden, kernel_init=RESIDUAL_INIT)(h, train)
    h = pool2(conv(self.features, kernel_init=RESIDUAL_INIT)(nn.relu(h), train))
    if self.first:
      sc = conv(self.features, 1, kernel_init=HEAD_INIT, name='shortcut')(avg_pool2(x), train)
    elif self.down or x.shape[-1] != self.features:
      sc = pool2(conv(self.features, 1, kernel_init=HEAD_INIT, name='shortcut')(x, train))
    else:
      sc = x
    return h + sc


def _check(image_size: int, channels: int, features: int, attention: int,
           num_classes: int) -> None:
  plan(image_size)
  for what, v in (('channels', channels), ('features', features)):
    if not isinstance(v, int) or v < 1:
      raise UserError(f'{what} must be a positive integer, got {v!r}: set it to 1 or more')
  sides = sorted({image_size // 2 ** i for i in range(len(PLANS[image_size].g))})
  if attention and attention not in sides:
    raise UserError(f'model.attention={attention} is not a feature-map side of the '
                    f'{image_size} px ResNet GAN: use one of {", ".join(map(str, sides))} or 0')
  if num_classes < 0:
    raise UserError(f'num_classes must be >= 0, got {num_classes}')


class ResNetGenerator(nn.Module):
  """z [B, Z] (and labels [B] when num_classes > 0) -> images [B, S, S, channels] in [-1, 1]."""
  image_size: int
  channels: int = 3
  features: int = 64
  attention: int = 0
  num_classes: int = 0
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _check(self.image_size, self.channels, self.features, self.attention, self.num_classes)
    super().__post_init__()

  @nn.compact
  def __call__(self, z: Array, labels: Array | None = None, train: bool = False) -> Array:
    p = plan(self.image_size)
    width = self.features * p.g[0]
    x = Linear(p.start * p.start * width, kernel_init=HEAD_INIT, dtype=self.dtype)(
        z.astype(self.dtype))
    x = x.reshape(z.shape[0], p.start, p.start, width)
    for mult in p.g[1:]:
      x = GBlock(self.features * mult, self.num_classes, self.dtype)(x, labels, train)
      if x.shape[1] == self.attention:
        x = SelfAttention(self.dtype)(x, train)
    x = nn.relu(Norm(0, self.dtype)(x, None, train))
    x = Conv(self.channels, kernel_init=HEAD_INIT, dtype=self.dtype)(x)
    return jnp.tanh(x)


class ResNetDiscriminator(nn.Module):
  """images [B, S, S, C] (and labels [B] when num_classes > 0) -> logits [B] (float32), or
  (logits, class_logits or None) for conditional runs."""
  image_size: int
  channels: int = 3
  features: int = 64
  attention: int = 0
  num_classes: int = 0
  conditioning: str = 'projection'
  spectral_norm: bool = True
  dtype: Dtype = jnp.float32

  def __post_init__(self):
    _check(self.image_size, self.channels, self.features, self.attention, self.num_classes)
    if self.conditioning not in CONDITIONINGS:
      raise unknown_name('model.conditioning', self.conditioning, CONDITIONINGS)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: Array, labels: Array | None = None, train: bool = False):
    if x.ndim != 4 or tuple(x.shape[1:]) != (self.image_size, self.image_size, self.channels):
      raise UserError(f'images of shape {tuple(x.shape)} do not match the model: expected '
                      f'[B, {self.image_size}, {self.image_size}, {self.channels}]')
    p = plan(self.image_size)
    h = x.astype(self.dtype)
    attend = self.attention
    for i, (mult, down) in enumerate(zip(p.d, p.d_down)):
      h = DBlock(self.features * mult, down, i == 0, self.spectral_norm, self.dtype)(h, train)
      if h.shape[1] == attend:  # after the first block at that side
        h, attend = SelfAttention(self.dtype)(h, train), 0
    phi = jnp.sum(nn.relu(h), axis=(1, 2))
    head = functools.partial(Linear, spectral_norm=self.spectral_norm, kernel_init=HEAD_INIT,
                             dtype=self.dtype)
    logits = head(1)(phi, train)[:, 0].astype(jnp.float32)
    if not self.num_classes:
      return logits
    if self.conditioning == 'acgan':
      return logits, head(self.num_classes, name='aux_head')(phi, train).astype(jnp.float32)
    embed = self.param('class_embed', HEAD_INIT, (self.num_classes, phi.shape[-1]), jnp.float32)
    if self.spectral_norm:
      embed = spectral_normalize(self, embed, train)
    proj = jnp.sum(embed[labels].astype(self.dtype) * phi, axis=-1)
    return (logits + proj.astype(jnp.float32)), None


def create_models(model_cfg: Any, data_shape: tuple[int, ...], dtype: Dtype
                  ) -> tuple[nn.Module, nn.Module]:
  """(G, D) for `model.name='sngan'` sized for images of `data_shape` (S, S, C); reads
  features, attention, spectral_norm, num_classes and conditioning."""
  if len(data_shape) != 3 or data_shape[0] != data_shape[1]:
    raise UserError(f'model sngan needs square images (H, W, C), got {tuple(data_shape)}: '
                    'set data.image_size or use model.name=mlp for points')
  size, channels = int(data_shape[0]), int(data_shape[2])
  common = dict(image_size=size, channels=channels, features=int(model_cfg.get('features', 64)),
                attention=int(model_cfg.get('attention', 0)),
                num_classes=int(model_cfg.get('num_classes', 0)), dtype=dtype)
  return (ResNetGenerator(**common),
          ResNetDiscriminator(conditioning=model_cfg.get('conditioning', 'projection'),
                              spectral_norm=bool(model_cfg.get('spectral_norm', True)), **common))
