"""InceptionV3 in flax.linen, laid out like torchvision's `inception_v3` or Keras' InceptionV3.

The mixed blocks are the FID network's (`common.metrics.inception`), given trainable
conv + BatchNorm layers and each source's pooling through `BlockOps`. Both sources share the
architecture (a stem of five convs and two max pools, then mixed0..mixed10 = torchvision's
Mixed_5b..Mixed_7c, global average pool, one Dense layer); they differ in details that decide
the output:

- 'torchvision': 3x3 average pools count the padding; BatchNorm eps 1e-3, momentum 0.1, with a
  scale; `transform_input` (on by default, as with torchvision's pretrained weights) maps
  ImageNet-normalised input back to [-1, 1] per channel; Dropout 0.5 before `fc`. The auxiliary
  classifier (`AuxLogits`) only trains the original network; it is not built here and
  `transfer.convert` skips its tensors.
- 'keras': average pools exclude the padding; BatchNorm without a scale (`scale=False`),
  eps 1e-3, momentum 0.99; inputs already in [-1, 1] (`preprocess(x, 'tf')`).

Inputs must be at least 75 px on each side (the network was trained at 299).

Parameter paths: stem/Conv2d_{1a,2a,2b,3b,4a}_*/{conv,bn}, mixed{0..10}/<torchvision branch
name>/{conv,bn}, head (and fc1.. with a new head; see `transfer.heads`). `stages` of
`capture_stages=True` holds 'stem', 'mixed0'..'mixed10' and 'pool' ([B, 2048]).
"""
from __future__ import annotations

import functools
from typing import Any, ClassVar

import flax.linen as nn
import jax.numpy as jnp

from common.errors import UserError, unknown_name
from common.kernels import batchnorm, conv, pool
from common.metrics import inception as blocks
from transfer import heads

STYLES = ('torchvision', 'keras')
MIN_SIZE = 75
POOL_DIM = 2048
MIXED_NAMES = tuple(f'mixed{i}' for i in range(11))
# torchvision's module name of each mixed block.
TORCHVISION_MIXED = ('Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c',
                     'Mixed_6d', 'Mixed_6e', 'Mixed_7a', 'Mixed_7b', 'Mixed_7c')
STEM_LAYERS = ('Conv2d_1a_3x3', 'Conv2d_2a_3x3', 'Conv2d_2b_3x3', 'Conv2d_3b_1x1',
               'Conv2d_4a_3x3')
# (block class, its arguments) of mixed0..mixed10.
MIXED = ((blocks.InceptionA, (32,)), (blocks.InceptionA, (64,)), (blocks.InceptionA, (64,)),
         (blocks.InceptionB, ()), (blocks.InceptionC, (128,)), (blocks.InceptionC, (160,)),
         (blocks.InceptionC, (160,)), (blocks.InceptionC, (192,)), (blocks.InceptionD, ()),
         (blocks.InceptionE, ('avg',)), (blocks.InceptionE, ('avg',)))
# torchvision's transform_input: ImageNet-normalised x -> x * std / 0.5 + (mean - 0.5) / 0.5.
_TRANSFORM_SCALE = (0.229 / 0.5, 0.224 / 0.5, 0.225 / 0.5)
_TRANSFORM_SHIFT = ((0.485 - 0.5) / 0.5, (0.456 - 0.5) / 0.5, (0.406 - 0.5) / 0.5)


def check_style(style: str) -> None:
  if style not in STYLES:
    raise unknown_name('InceptionV3 style', style, STYLES)


def check_size(height: int, width: int) -> None:
  """Refuses inputs smaller than the network's 75 px minimum."""
  if min(height, width) < MIN_SIZE:
    raise UserError(f'InceptionV3 needs images of at least {MIN_SIZE}x{MIN_SIZE} px, got '
                    f'{height}x{width}; raise data.image_size to {MIN_SIZE} or more (it was '
                    'trained at 299)')


class ConvBN(nn.Module):
  """conv (no bias) + BatchNorm + ReLU in a source's conventions: [B, H, W, C] -> [B, H', W', F].

  Called like the FID network's BasicConv2d, so its blocks can build it.
  """
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  train: bool = False
  style: str = 'torchvision'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    ph, pw = self.padding
    keras = self.style == 'keras'
    init = (nn.initializers.glorot_uniform() if keras
            else nn.initializers.truncated_normal(0.1))
    x = nn.Conv(self.features, self.kernel, strides=self.strides, padding=((ph, ph), (pw, pw)),
                use_bias=False, kernel_init=init, dtype=self.dtype, name='conv',
                conv_general_dilated=conv.conv_general_dilated)(x)
    x = batchnorm.BatchNorm(use_running_average=not self.train,
                            momentum=0.99 if keras else 0.9, epsilon=1e-3, dtype=self.dtype,
                            use_scale=not keras, name='bn')(x)
    return nn.relu(x)


class Stem(nn.Module):
  """Five convs and two 3x3 stride-2 max pools: [B, H, W, 3] -> [B, ~H/8 - 2, .., 192]."""
  ops: blocks.BlockOps

  @nn.compact
  def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
    c = self.ops.conv
    x = c(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)
    x = c(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = c(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = self.ops.max_pool(x, (3, 3), (2, 2), ((0, 0), (0, 0)))
    x = c(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = c(192, (3, 3), name='Conv2d_4a_3x3')(x)
    return self.ops.max_pool(x, (3, 3), (2, 2), ((0, 0), (0, 0)))


class InceptionV3(nn.Module):
  """InceptionV3 classifier or feature extractor; build it with `transfer.create_model`.

  Input: preprocessed images [B, H, W, 3], H, W >= 75. Output: logits [B, num_classes] with
  the top, pooled features [B, 2048] without it.
  """
  arch: str
  num_classes: int | None
  style: str = 'torchvision'
  include_top: bool = True
  dtype: Any = jnp.float32
  head: str | None = None
  head_hidden: tuple[int, ...] = ()
  head_dropout: float = 0.0
  transform_input: bool = True  # torchvision style only
  # Compiled without XLA:CPU's dot library (`common.kernels.xla_cpu.jit_for`, read by the
  # forward, statistics and step functions): on 2 cores, batch 8 at 299 px, inference 8.7 ->
  # 15.5 images/s and a last-block fine-tuning step 0.96 -> 0.62 s (docs/performance.md).
  xla_cpu_kernels: ClassVar[bool] = True

  @nn.compact
  def __call__(self, images: jnp.ndarray, train: bool = False, capture_stages: bool = False,
               dropout: bool = False):
    check_style(self.style)
    check_size(*images.shape[1:3])
    torchvision = self.style == 'torchvision'
    x = jnp.asarray(images, self.dtype)
    if torchvision and self.transform_input:
      x = x * jnp.asarray(_TRANSFORM_SCALE, self.dtype) + jnp.asarray(_TRANSFORM_SHIFT,
                                                                     self.dtype)
    ops = blocks.BlockOps(
        conv=functools.partial(ConvBN, train=train, style=self.style, dtype=self.dtype),
        count_include_pad=torchvision, max_pool=pool.max_pool_nhwc)
    x = Stem(ops, name='stem')(x)
    stages = {'stem': x}
    for name, (block, args) in zip(MIXED_NAMES, MIXED):
      x = block(*args, ops=ops, name=name)(x)
      stages[name] = x
    x = heads.pooled_features(x, self.head or 'global_pool')
    stages['pool'] = x
    if self.include_top:
      own_top = self.head is None
      hidden, rate = ((), 0.5 if torchvision else 0.0) if own_top else (self.head_hidden,
                                                                          self.head_dropout)
      init = (nn.initializers.glorot_uniform() if not torchvision
              else nn.initializers.truncated_normal(0.1))
      x = heads.classifier(x, self.num_classes, hidden, rate, dropout, kernel_init=init,
                           dtype=self.dtype)
    return (x, stages) if capture_stages else x
