"""ResNet-18/34/50/101/152 in flax.linen, laid out like torchvision or Keras.

Two styles reproduce their sources exactly, so converted weights give the same
logits:

- 'torchvision' (ResNet v1.5): stride on the 3x3 conv of a bottleneck, convs
  without bias, symmetric explicit padding, BatchNorm eps 1e-5 and torch
  momentum 0.1 (flax momentum 0.9). BasicBlock for 18/34, Bottleneck otherwise.
- 'keras' (keras.applications ResNet v1): stride on the first 1x1 conv, convs
  with bias, zero padding then valid conv/pool, BatchNorm eps 1.001e-5 and
  momentum 0.99 (Keras' default). keras.applications has no ResNet-18/34, so
  there is no Keras layout to match for them and asking for one is an error.

Parameter paths (see `param_paths`) name stages at the top level so freezing
rules can match them with regexes such as `^stage4/` or `^head/`:

  stem_conv, stem_bn, stage{1..4}/block{i}/{conv1,bn1,...,downsample_conv,
  downsample_bn}, head

Blocks are numbered from 0 in both styles (torchvision `layer1.0`, Keras
`conv2_block1`); `transfer.convert` holds the name mapping.

Calling the model:

  logits = model.apply(variables, images, train=False)           # [B, classes]
  out, stages = model.apply(variables, images, capture_stages=True)

`stages` maps 'stem' (after the max-pool, [B, H/4, W/4, 64]), 'stage1' ..
'stage4' (block outputs, strides 4/8/16/32) and 'pool' (global average,
[B, C]) to arrays. With `train=True` BatchNorm normalises with batch statistics
and the call must pass `mutable=['batch_stats']` to receive updated running
statistics. Flax updates the running variance with the biased batch variance,
torch with the unbiased one; the difference is a factor n/(n-1) of the update.
"""

import dataclasses
import functools
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
from flax import traverse_util

from common.errors import UserError, unknown_name
from common.kernels import batchnorm, conv, pool
from transfer import heads

STYLES = ('torchvision', 'keras')
STAGE_NAMES = ('stage1', 'stage2', 'stage3', 'stage4')
STAGE_WIDTHS = (64, 128, 256, 512)
BOTTLENECK_EXPANSION = 4


@dataclasses.dataclass(frozen=True)
class ArchSpec:
  """Depth of a ResNet: its block type and number of blocks per stage."""
  block: str  # 'basic' or 'bottleneck'
  stage_sizes: tuple[int, int, int, int]
  styles: tuple[str, ...]


ARCHS: dict[str, ArchSpec] = {
    'resnet18': ArchSpec('basic', (2, 2, 2, 2), ('torchvision',)),
    'resnet34': ArchSpec('basic', (3, 4, 6, 3), ('torchvision',)),
    'resnet50': ArchSpec('bottleneck', (3, 4, 6, 3), STYLES),
    'resnet101': ArchSpec('bottleneck', (3, 4, 23, 3), STYLES),
    'resnet152': ArchSpec('bottleneck', (3, 8, 36, 3), STYLES),
}


@dataclasses.dataclass(frozen=True)
class _StyleSpec:
  conv_bias: bool
  bn_epsilon: float
  bn_momentum: float  # flax convention: weight of the old running value
  stride_on_1x1: bool
  kernel_init: Any
  head_init: Any


_STYLE_SPECS = {
    # torchvision initialises convs with kaiming_normal(fan_out) and the
    # Linear head with U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    'torchvision': _StyleSpec(
        conv_bias=False, bn_epsilon=1e-5, bn_momentum=0.9,
        stride_on_1x1=False,
        kernel_init=nn.initializers.variance_scaling(
            2.0, 'fan_out', 'normal'),
        head_init=nn.initializers.variance_scaling(1 / 3, 'fan_in', 'uniform')),
    'keras': _StyleSpec(
        conv_bias=True, bn_epsilon=1.001e-5, bn_momentum=0.99,
        stride_on_1x1=True,
        kernel_init=nn.initializers.glorot_uniform(),
        head_init=nn.initializers.glorot_uniform()),
}


def arch_spec(arch: str, style: str = 'torchvision') -> ArchSpec:
  """Returns the ArchSpec for `arch`, or raises UserError for bad names."""
  if style not in STYLES:
    raise unknown_name('ResNet style', style, STYLES)
  if arch not in ARCHS:
    raise unknown_name('ResNet architecture', arch, ARCHS)
  spec = ARCHS[arch]
  if style not in spec.styles:
    raise UserError(f'{arch} has no {style} layout (keras.applications only '
                    f'has resnet50/101/152); use style=torchvision for {arch}')
  return spec


def _conv(features: int, kernel: int, strides: int, padding: int, name: str,
          style: _StyleSpec, dtype: Any) -> nn.Conv:
  # Explicit symmetric padding: 'SAME' pads asymmetrically at stride 2 and
  # would not match either source.
  return nn.Conv(features, (kernel, kernel), strides=(strides, strides),
                 padding=((padding, padding), (padding, padding)),
                 use_bias=style.conv_bias, kernel_init=style.kernel_init,
                 dtype=dtype, name=name, conv_general_dilated=conv.conv_general_dilated)


def _bn(name: str, train: bool, style: _StyleSpec, dtype: Any
        ) -> batchnorm.BatchNorm:
  return batchnorm.BatchNorm(use_running_average=not train,
                             momentum=style.bn_momentum, epsilon=style.bn_epsilon,
                             dtype=dtype, name=name)


class BasicBlock(nn.Module):
  """Two 3x3 convs plus shortcut (ResNet-18/34): [B,H,W,C] -> [B,H/s,W/s,F]."""
  features: int
  strides: int
  style: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    s = _STYLE_SPECS[self.style]
    conv = functools.partial(_conv, style=s, dtype=self.dtype)
    bn = functools.partial(_bn, train=train, style=s, dtype=self.dtype)
    shortcut = x
    y = nn.relu(bn('bn1')(conv(self.features, 3, self.strides, 1, 'conv1')(x)))
    y = bn('bn2')(conv(self.features, 3, 1, 1, 'conv2')(y))
    if self.strides != 1 or x.shape[-1] != self.features:
      shortcut = conv(self.features, 1, self.strides, 0, 'downsample_conv')(x)
      shortcut = bn('downsample_bn')(shortcut)
    return nn.relu(y + shortcut)


class Bottleneck(nn.Module):
  """1x1 -> 3x3 -> 1x1 (x4 width) plus shortcut: [B,H,W,C] -> [B,H/s,W/s,4F].

  torchvision v1.5 strides the 3x3 conv; Keras v1 strides the first 1x1.
  """
  features: int
  strides: int
  style: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    s = _STYLE_SPECS[self.style]
    conv = functools.partial(_conv, style=s, dtype=self.dtype)
    bn = functools.partial(_bn, train=train, style=s, dtype=self.dtype)
    out_features = self.features * BOTTLENECK_EXPANSION
    stride_1x1, stride_3x3 = ((self.strides, 1) if s.stride_on_1x1
                              else (1, self.strides))
    shortcut = x
    y = nn.relu(bn('bn1')(conv(self.features, 1, stride_1x1, 0, 'conv1')(x)))
    y = nn.relu(bn('bn2')(conv(self.features, 3, stride_3x3, 1, 'conv2')(y)))
    y = bn('bn3')(conv(out_features, 1, 1, 0, 'conv3')(y))
    if self.strides != 1 or x.shape[-1] != out_features:
      shortcut = conv(out_features, 1, self.strides, 0, 'downsample_conv')(x)
      shortcut = bn('downsample_bn')(shortcut)
    return nn.relu(y + shortcut)


_BLOCKS = {'basic': BasicBlock, 'bottleneck': Bottleneck}


class Stage(nn.Module):
  """`num_blocks` residual blocks; only the first one changes resolution."""
  block: str
  features: int
  num_blocks: int
  strides: int
  style: str
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
    block_cls = _BLOCKS[self.block]
    for i in range(self.num_blocks):
      x = block_cls(self.features, self.strides if i == 0 else 1, self.style,
                    self.dtype, name=f'block{i}')(x, train)
    return x


class ResNet(nn.Module):
  """ResNet classifier or feature extractor; build it with `create_model`.

  Input: preprocessed images [B, H, W, 3]. Output: logits [B, num_classes]
  with the head, pooled features [B, C] without it (C = 512 for 18/34, 2048
  otherwise). `head`, `head_hidden`, `head_dropout`: the classifier top
  (`transfer.heads`; None is ResNet's own, global pooling and one Dense).
  `dropout=True` turns the head's dropout on (pass rngs={'dropout': key}).
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
  def __call__(self, images: jnp.ndarray, train: bool = False,
               capture_stages: bool = False, dropout: bool = False):
    spec = arch_spec(self.arch, self.style)
    s = _STYLE_SPECS[self.style]
    x = jnp.asarray(images, self.dtype)
    x = _conv(64, 7, 2, 3, 'stem_conv', s, self.dtype)(x)
    x = nn.relu(_bn('stem_bn', train, s, self.dtype)(x))
    if self.style == 'torchvision':
      # Padding with -inf, like torch's MaxPool2d(padding=1).
      x = pool.max_pool_nhwc(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
    else:
      # Keras pads with zeros first; equal after ReLU but kept literal.
      x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
      x = pool.max_pool_nhwc(x, (3, 3), (2, 2), ((0, 0), (0, 0)))
    stages = {'stem': x}
    for i, (name, width, n) in enumerate(
        zip(STAGE_NAMES, STAGE_WIDTHS, spec.stage_sizes)):
      x = Stage(spec.block, width, n, 1 if i == 0 else 2, self.style,
                self.dtype, name=name)(x, train)
      stages[name] = x
    x = heads.pooled_features(x, self.head or 'global_pool')
    stages['pool'] = x
    if self.include_top:
      x = heads.classifier(x, self.num_classes, self.head_hidden, self.head_dropout, dropout,
                           kernel_init=s.head_init, dtype=self.dtype)
    return (x, stages) if capture_stages else x


def check_num_classes(num_classes: Any, include_top: bool) -> int | None:
  """`num_classes` for a model with a head (a positive int), None without one."""
  if not include_top:
    return None
  if (isinstance(num_classes, bool) or not isinstance(num_classes, int)
      or num_classes < 1):
    raise UserError(f'num_classes must be a positive integer when '
                    f'include_top=True, got {num_classes!r}; pass the number '
                    f'of classes or include_top=False')
  return num_classes


def create_model(arch: str, num_classes: int | None, style: str = 'torchvision',
                 include_top: bool = True, dtype: Any = jnp.float32, head: str | None = None,
                 head_hidden: tuple[int, ...] = (), head_dropout: float = 0.0) -> ResNet:
  """Returns the flax ResNet `arch` in `style` ('torchvision' or 'keras').

  `num_classes` sizes the Dense head and is ignored when include_top=False.
  """
  arch_spec(arch, style)
  num_classes = check_num_classes(num_classes, include_top)
  if head is not None:
    heads.check_head(head, head_hidden, head_dropout)
  return ResNet(arch, num_classes, style, include_top, dtype, head, tuple(head_hidden),
                float(head_dropout))


def abstract_variables(arch: str, style: str = 'torchvision',
                       num_classes: int | None = None,
                       include_top: bool = True) -> dict[str, Any]:
  """{'params', 'batch_stats'} of `create_model(...)` as jax.ShapeDtypeStruct.

  Traces the model without computing anything; traces are cached, so treat
  the result as read-only.
  """
  create_model(arch, num_classes, style, include_top)  # validates
  variables = _traced_variables(arch, style, num_classes if include_top else 1)
  if include_top:
    return variables
  # The head is the last layer, so the notop model is the same minus 'head'.
  params = {k: v for k, v in variables['params'].items() if not heads.is_top(k)}
  return {**variables, 'params': params}


@functools.lru_cache(maxsize=32)
def _traced_variables(arch: str, style: str, num_classes: int
                      ) -> dict[str, Any]:
  model = create_model(arch, num_classes, style)
  return jax.eval_shape(model.init, jax.random.key(0),
                        jnp.zeros((1, 32, 32, 3), jnp.float32))


def param_paths(tree: Mapping[str, Any]) -> list[str]:
  """'/'-joined leaf paths of a params (or batch_stats) tree, e.g.

  'stage4/block2/conv3/kernel'. Freezing rules match regexes against these.
  """
  return ['/'.join(k) for k in traverse_util.flatten_dict(tree)]
