"""VGG-16/19 (and torchvision's BatchNorm variants) in flax.linen, laid out like torchvision or
Keras.

Five blocks of 3x3 convolutions (padding 1, with bias, ReLU; BatchNorm after each conv in the
`_bn` variants), each closed by a 2x2 stride-2 max pool: widths 64, 128, 256, 512, 512 with
2, 2, 3, 3, 3 convs (VGG-16) or 2, 2, 4, 4, 4 (VGG-19). Both sources compute the same function;
they differ in the classifier's input:

- 'torchvision': adaptive average pool to 7x7, flatten in NCHW order, Linear 4096, ReLU,
  Dropout 0.5, Linear 4096, ReLU, Dropout 0.5, Linear classes. Any input size works. (Here
  dropout acts before the last layer only, `transfer.heads`' one rule; inference is the same.)
- 'keras' (keras.applications.VGG16/VGG19, no BatchNorm variants): flatten in NHWC order, Dense
  fc1 4096, fc2 4096, predictions; the top needs 224 px inputs (25088 flattened features).

Parameter paths: block{1..5}/conv{i} (and bn{i}), then the top of `transfer.heads`: fc1, fc2
(the 4096-wide layers) and head. `head=None` builds the architecture's own top; a transfer run
names a new one (`global_pool` or `flatten`, hidden widths, dropout).

  logits = model.apply(variables, images, train=False)           # [B, classes]
  out, stages = model.apply(variables, images, capture_stages=True)

`stages` maps block1..block5 (after each pool, strides 2..32) and 'pool' (the head's input).
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from common.errors import UserError, unknown_name
from common.kernels import batchnorm, conv, pool
from transfer import heads

STYLES = ('torchvision', 'keras')
BLOCK_NAMES = ('block1', 'block2', 'block3', 'block4', 'block5')
BLOCK_WIDTHS = (64, 128, 256, 512, 512)
TOP_HIDDEN = (4096, 4096)
TORCHVISION_POOL = 7  # torchvision's AdaptiveAvgPool2d((7, 7)) before the classifier


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """Convs per block, whether each is followed by BatchNorm, and the styles that have it."""
  convs: tuple[int, int, int, int, int]
  batch_norm: bool
  styles: tuple[str, ...]


ARCHS: dict[str, ArchSpec] = {
    'vgg16': ArchSpec((2, 2, 3, 3, 3), False, STYLES),
    'vgg19': ArchSpec((2, 2, 4, 4, 4), False, STYLES),
    'vgg16_bn': ArchSpec((2, 2, 3, 3, 3), True, ('torchvision',)),
    'vgg19_bn': ArchSpec((2, 2, 4, 4, 4), True, ('torchvision',)),
}

# torchvision: convs kaiming_normal(fan_out, relu), Linear N(0, 0.01); Keras: glorot_uniform.
_KERNEL_INIT = {'torchvision': nn.initializers.variance_scaling(2.0, 'fan_out', 'normal'),
                'keras': nn.initializers.glorot_uniform()}
_DENSE_INIT = {'torchvision': nn.initializers.normal(0.01),
               'keras': nn.initializers.glorot_uniform()}
_TOP_DROPOUT = {'torchvision': 0.5, 'keras': 0.0}


def arch_spec(arch: str, style: str = 'torchvision') -> ArchSpec:
  """The ArchSpec of `arch`, or a UserError for an unknown name or a style it lacks."""
  if style not in STYLES:
    raise unknown_name('VGG style', style, STYLES)
  if arch not in ARCHS:
    raise unknown_name('VGG architecture', arch, ARCHS)
  if style not in ARCHS[arch].styles:
    raise UserError(f'{arch} has no {style} layout (keras.applications has no BatchNorm VGG); '
                    f'use style=torchvision for {arch}')
  return ARCHS[arch]


class VGGBlock(nn.Module):
  """`num_convs` x (3x3 conv [+ BatchNorm] + ReLU), then a 2x2 max pool:
  [B, H, W, C] -> [B, H/2, W/2, features]."""
  features: int
  num_convs: int
  batch_norm: bool
  style: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    for i in range(1, self.num_convs + 1):
      x = nn.Conv(self.features, (3, 3), padding=((1, 1), (1, 1)),
                  kernel_init=_KERNEL_INIT[self.style], dtype=self.dtype, name=f'conv{i}',
                  conv_general_dilated=conv.conv_general_dilated)(x)
      if self.batch_norm:  # torchvision's BatchNorm2d: eps 1e-5, momentum 0.1
        x = batchnorm.BatchNorm(use_running_average=not train, momentum=0.9, epsilon=1e-5,
                                dtype=self.dtype, name=f'bn{i}')(x)
      x = nn.relu(x)
    return pool.max_pool_nhwc(x, (2, 2), (2, 2), ((0, 0), (0, 0)))


class VGG(nn.Module):
  """VGG classifier or feature extractor; build it with `transfer.create_model`.

  Input: preprocessed images [B, H, W, 3] (at least 32 px). Output: logits [B, num_classes]
  with the top, the head's input features without it.
  """
  arch: str
  num_classes: int | None
  style: str = 'torchvision'
  include_top: bool = True
  dtype: Any = jnp.float32
  head: str | None = None
  head_hidden: tuple[int, ...] = ()
  head_dropout: float = 0.0

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False, capture_stages: bool = False,
               dropout: bool = False):
    spec = arch_spec(self.arch, self.style)
    x = jnp.asarray(images, self.dtype)
    stages = {}
    for name, width, n in zip(BLOCK_NAMES, BLOCK_WIDTHS, spec.convs):
      x = VGGBlock(width, n, spec.batch_norm, self.style, self.dtype, name=name)(x, train)
      stages[name] = x
    own_top = self.head is None
    torch_top = own_top and self.style == 'torchvision'
    x = heads.pooled_features(x, 'flatten' if own_top else self.head,
                              TORCHVISION_POOL if torch_top else None, channels_first=torch_top)
    stages['pool'] = x
    if self.include_top:
      hidden, rate = ((TOP_HIDDEN, _TOP_DROPOUT[self.style]) if own_top
                      else (self.head_hidden, self.head_dropout))
      x = heads.classifier(x, self.num_classes, hidden, rate, dropout,
                           kernel_init=_DENSE_INIT[self.style], dtype=self.dtype)
    return (x, stages) if capture_stages else x
