"""The FID InceptionV3 (TF graph of 2015-12-05, as ported by pytorch-fid) in Flax.

FID numbers are only comparable when computed with this exact network: its pooling differs from
torchvision's InceptionV3 in three places (average pools exclude padding; the last block
max-pools), and it has 1008 classes. Weights come from pytorch-fid's file
`pt_inception-2015-12-05-6726825d.pth`, converted by `convert_pytorch_fid`; nothing is downloaded.

    variables = convert_pytorch_fid('pt_inception-2015-12-05-6726825d.pth')
    feats = fid_features(variables, images)  # images [N, H, W, 3] float in [0, 1] -> [N, 2048]
"""
from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from common import torch_files
from common.errors import UserError
from common.kernels import conv
from common.kernels.xla_cpu import jit_xla_kernels
from common.sharding import pad_shard_unpad

FEATURE_NET = 'pytorch-fid-inception-v3-2015-12-05'  # recorded in saved statistics
INPUT_SIZE = 299
POOL_DIM = 2048
NUM_CLASSES = 1008

_HIGHEST = jax.lax.Precision.HIGHEST


class BasicConv2d(nn.Module):
  """conv (no bias) + BatchNorm(eps=1e-3, running stats) + ReLU, on [B, H, W, C]."""
  features: int
  kernel: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)
  # 'highest' keeps convolutions in float32 on GPUs that would use TF32, so FIDs do not depend on
  # the hardware.
  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel, strides=self.strides, padding=((ph, ph), (pw, pw)),
                use_bias=False, precision=self.precision, name='conv',
                conv_general_dilated=conv.conv_general_dilated)(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name='bn')(x)
    return nn.relu(x)


def _avg_pool_3x3(x: jax.Array, ops: BlockOps | None = None) -> jax.Array:
  # The TF graph averages only over in-image pixels (torch: count_include_pad=False).
  include_pad = ops is not None and ops.count_include_pad
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=include_pad)


def _max_pool_3x3_s2(x: jax.Array, ops: BlockOps | None = None) -> jax.Array:
  if ops is not None and ops.max_pool is not None:
    return ops.max_pool(x, (3, 3), (2, 2), ((0, 0), (0, 0)))
  return nn.max_pool(x, (3, 3), strides=(2, 2))


@dataclasses.dataclass(frozen=True)
class BlockOps:
  """How the Inception blocks convolve and pool when they serve another InceptionV3 than FID's
  (`transfer.inception`: torchvision's and Keras' networks, trainable).

  `conv` is called like `BasicConv2d(features, kernel, strides=, padding=, name=)` and must
  create children 'conv' and 'bn'; `count_include_pad` counts padding in the 3x3 average pools
  (torchvision) or not (TF, Keras, FID); `max_pool` (x, window, strides, padding) replaces
  `nn.max_pool` when set. Blocks without ops compute the FID network.
  """
  conv: Any
  count_include_pad: bool = False
  max_pool: Any = None


def _conv_fn(block: nn.Module):
  if block.ops is not None:
    return block.ops.conv
  return functools.partial(BasicConv2d, precision=block.precision)


class InceptionA(nn.Module):
  pool_features: int
  precision: Any = _HIGHEST
  ops: BlockOps | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = _conv_fn(self)
    b1 = conv(64, (1, 1), name='branch1x1')(x)
    b5 = conv(48, (1, 1), name='branch5x5_1')(x)
    b5 = conv(64, (5, 5), padding=(2, 2), name='branch5x5_2')(b5)
    b3 = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(b3)
    b3 = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_3')(b3)
    bp = conv(self.pool_features, (1, 1), name='branch_pool')(_avg_pool_3x3(x, self.ops))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  precision: Any = _HIGHEST
  ops: BlockOps | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = _conv_fn(self)
    b3 = conv(384, (3, 3), strides=2, name='branch3x3')(x)
    bd = conv(64, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(96, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = conv(96, (3, 3), strides=2, name='branch3x3dbl_3')(bd)
    bp = _max_pool_3x3_s2(x, self.ops)
    return jnp.concatenate([b3, bd, bp], axis=-1)


class InceptionC(nn.Module):
  channels_7x7: int
  precision: Any = _HIGHEST
  ops: BlockOps | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = _conv_fn(self)
    c7 = self.channels_7x7
    b1 = conv(192, (1, 1), name='branch1x1')(x)
    b7 = conv(c7, (1, 1), name='branch7x7_1')(x)
    b7 = conv(c7, (1, 7), padding=(0, 3), name='branch7x7_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7_3')(b7)
    bd = conv(c7, (1, 1), name='branch7x7dbl_1')(x)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_2')(bd)
    bd = conv(c7, (1, 7), padding=(0, 3), name='branch7x7dbl_3')(bd)
    bd = conv(c7, (7, 1), padding=(3, 0), name='branch7x7dbl_4')(bd)
    bd = conv(192, (1, 7), padding=(0, 3), name='branch7x7dbl_5')(bd)
    bp = conv(192, (1, 1), name='branch_pool')(_avg_pool_3x3(x, self.ops))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  precision: Any = _HIGHEST
  ops: BlockOps | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = _conv_fn(self)
    b3 = conv(192, (1, 1), name='branch3x3_1')(x)
    b3 = conv(320, (3, 3), strides=2, name='branch3x3_2')(b3)
    b7 = conv(192, (1, 1), name='branch7x7x3_1')(x)
    b7 = conv(192, (1, 7), padding=(0, 3), name='branch7x7x3_2')(b7)
    b7 = conv(192, (7, 1), padding=(3, 0), name='branch7x7x3_3')(b7)
    b7 = conv(192, (3, 3), strides=2, name='branch7x7x3_4')(b7)
    bp = _max_pool_3x3_s2(x, self.ops)
    return jnp.concatenate([b3, b7, bp], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (pool='avg', padding excluded) and Mixed_7c (pool='max', a TF graph quirk)."""
  pool: str
  precision: Any = _HIGHEST
  ops: BlockOps | None = None

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    conv = _conv_fn(self)
    b1 = conv(320, (1, 1), name='branch1x1')(x)
    b3 = conv(384, (1, 1), name='branch3x3_1')(x)
    b3 = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name='branch3x3_2a')(b3),
                          conv(384, (3, 1), padding=(1, 0), name='branch3x3_2b')(b3)], axis=-1)
    bd = conv(448, (1, 1), name='branch3x3dbl_1')(x)
    bd = conv(384, (3, 3), padding=(1, 1), name='branch3x3dbl_2')(bd)
    bd = jnp.concatenate([conv(384, (1, 3), padding=(0, 1), name='branch3x3dbl_3a')(bd),
                          conv(384, (3, 1), padding=(1, 0), name='branch3x3dbl_3b')(bd)], axis=-1)
    if self.pool == 'avg':
      pooled = _avg_pool_3x3(x, self.ops)
    else:
      pooled = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    bp = conv(192, (1, 1), name='branch_pool')(pooled)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


def resize_bilinear(images: jax.Array, size: int) -> jax.Array:
  """[B, H, W, C] -> [B, size, size, C], as torch's bilinear interpolate (align_corners=False).

  Without antialiasing: jax's default would blur when downsampling, which torch does not.
  """
  b, h, w, c = images.shape
  if (h, w) == (size, size):
    return images
  return jax.image.resize(images, (b, size, size, c), method='bilinear', antialias=False)


class FIDInceptionV3(nn.Module):
  """images [B, H, W, 3] in [0, 1] -> pool features [B, 2048] (and logits [B, 1008]).

  Images are resized to 299x299 and scaled to [-1, 1] inside, as pytorch-fid does. The logits
  omit the fc bias, as the original Inception Score code and torch-fidelity's
  `logits_unbiased` do.
  """
  with_logits: bool = False
  precision: Any = _HIGHEST

  @nn.compact
  def __call__(self, images: jax.Array) -> jax.Array | tuple[jax.Array, jax.Array]:
    x = 2 * resize_bilinear(images, INPUT_SIZE) - 1
    conv = functools.partial(BasicConv2d, precision=self.precision)
    x = conv(32, (3, 3), strides=2, name='Conv2d_1a_3x3')(x)
    x = conv(32, (3, 3), name='Conv2d_2a_3x3')(x)
    x = conv(64, (3, 3), padding=(1, 1), name='Conv2d_2b_3x3')(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    x = conv(80, (1, 1), name='Conv2d_3b_1x1')(x)
    x = conv(192, (3, 3), name='Conv2d_4a_3x3')(x)
    x = nn.max_pool(x, (3, 3), strides=(2, 2))
    p = self.precision
    x = InceptionA(32, p, name='Mixed_5b')(x)
    x = InceptionA(64, p, name='Mixed_5c')(x)
    x = InceptionA(64, p, name='Mixed_5d')(x)
    x = InceptionB(p, name='Mixed_6a')(x)
    x = InceptionC(128, p, name='Mixed_6b')(x)
    x = InceptionC(160, p, name='Mixed_6c')(x)
    x = InceptionC(160, p, name='Mixed_6d')(x)
    x = InceptionC(192, p, name='Mixed_6e')(x)
    x = InceptionD(p, name='Mixed_7a')(x)
    x = InceptionE('avg', p, name='Mixed_7b')(x)
    x = InceptionE('max', p, name='Mixed_7c')(x)
    pool = x.mean(axis=(1, 2))
    if not self.with_logits:
      return pool
    return pool, nn.Dense(NUM_CLASSES, use_bias=False, precision=p, name='fc')(pool)


def create_fid_inception(with_logits: bool = False) -> FIDInceptionV3:
  """The FID InceptionV3; `with_logits` adds the 1008-class head for the Inception Score."""
  return FIDInceptionV3(with_logits=with_logits)


# --- Input checks ------------------------------------------------------------------------------


def check_images(images) -> np.ndarray:
  """Validates images for `fid_features`: [N, H, W, C] float in [0, 1], C = 1 or 3.

  Returns float32 [N, H, W, 3] (a single channel is repeated, as for MNIST). Anything else
  (NCHW, uint8, [-1, 1] or [0, 255] floats) raises a UserError saying what was found and how to
  convert it.
  """
  x = np.asarray(images)
  if x.ndim != 4:
    raise UserError(f'images must be [N, H, W, C]; got shape {x.shape}'
                    + (', add a batch axis' if x.ndim == 3 else ''))
  if x.shape[-1] not in (1, 3):
    if x.shape[1] in (1, 3):
      raise UserError(f'images look NCHW (shape {x.shape}); expected NHWC [N, H, W, C]: use '
                      'images.transpose(0, 2, 3, 1)')
    raise UserError(f'images must be NHWC with 1 or 3 channels; got shape {x.shape}')
  if x.shape[0] == 0:
    raise UserError('images is empty; pass at least one image')
  if not np.issubdtype(x.dtype, np.floating):
    hint = ': use images.astype(np.float32) / 255' if x.dtype == np.uint8 else ''
    raise UserError(f'images are {x.dtype}; expected floats in [0, 1]{hint}')
  lo, hi = float(x.min()), float(x.max())
  if not (np.isfinite(lo) and np.isfinite(hi)):
    raise UserError('images hold NaN or inf; check the generator output')
  tol = 1e-3  # float round-off of a rescaled generator output, not a different range
  if lo < -tol or hi > 1 + tol:
    if lo >= -1 - tol and hi <= 1 + tol:
      hint = 'they look like [-1, 1] (tanh output): use (images + 1) / 2'
    elif lo >= -tol and hi <= 255 + tol:
      hint = 'they look like [0, 255]: use images / 255'
    else:
      hint = 'rescale them to [0, 1]'
    raise UserError(f'image values span [{lo:.3g}, {hi:.3g}]; expected [0, 1]: {hint}')
  x = x.astype(np.float32)
  if x.shape[-1] == 1:
    x = np.repeat(x, 3, axis=-1)
  return x


# --- Features ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _jitted_apply(with_logits: bool):
  # On CPU, XLA's own conv and dot kernels beat the library it would hand them to
  # (common.kernels.xla_cpu; figures in docs/performance.md).
  return jit_xla_kernels(create_fid_inception(with_logits).apply)


def fid_features(variables: dict[str, Any], images, batch_size: int = 50,
                 return_logits: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
  """Pool features [N, 2048] (float32 numpy) of images [N, H, W, 3] in [0, 1].

  With `return_logits`, returns (features [N, 2048], logits [N, 1008]); apply a softmax to the
  logits for `feature_metrics.inception_score`. Batches are padded to `batch_size` so the
  network compiles once per image size.
  """
  x = check_images(images)
  if batch_size < 1:
    raise UserError(f'batch_size must be at least 1; got {batch_size}')
  apply = functools.partial(_jitted_apply(return_logits), variables)
  b = min(batch_size, len(x))
  outs = [pad_shard_unpad(apply, x[start:start + b], b) for start in range(0, len(x), b)]
  return jax.tree.map(lambda *parts: np.concatenate(parts), *outs)


# --- Weights -----------------------------------------------------------------------------------

def _expected_torch_shape(flax_shape: Sequence[int]) -> tuple[int, ...]:
  if len(flax_shape) == 4:  # HWIO -> OIHW
    h, w, i, o = flax_shape
    return (o, i, h, w)
  return tuple(reversed(flax_shape))  # [in, out] -> [out, in]; 1-D unchanged


def _names(keys: Sequence[str], limit: int = 5) -> str:
  shown = ', '.join(keys[:limit])
  return f'{len(keys)} ({shown}{", ..." if len(keys) > limit else ""})'


@functools.lru_cache(maxsize=1)
def _torch_layout() -> dict[str, tuple[tuple[str, ...], tuple[int, ...]]]:
  """torch key -> (flax variable path, expected torch shape), for every variable."""
  shapes = jax.eval_shape(create_fid_inception(with_logits=True).init, jax.random.key(0),
                          jnp.zeros((1, INPUT_SIZE, INPUT_SIZE, 3), jnp.float32))
  layout = {}
  for flax_path, leaf in traverse_util.flatten_dict(shapes).items():
    torch_key = '.'.join(flax_path[1:-1] + (torch_files.LEAF_NAMES[(flax_path[0], flax_path[-1])],))
    layout[torch_key] = (flax_path, _expected_torch_shape(leaf.shape))
  return layout


def convert_pytorch_fid(path: str) -> dict[str, Any]:
  """pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` -> {'params', 'batch_stats'}.

  The variables serve `create_fid_inception()` with or without logits. A file named with a hash
  (torch hub style) is checked against its sha256. Missing, unused and mismatched keys are
  reported together in one UserError, so weights of another network are refused.
  """
  if not os.path.isfile(path):
    raise UserError(f'weights file {path} does not exist; download pytorch-fid\'s '
                    'pt_inception-2015-12-05-6726825d.pth and pass its path')
  torch_files.check_name_hash(path)
  state = torch_files.read_state_dict(path)

  wanted = _torch_layout()
  # num_batches_tracked is training bookkeeping; fc.bias is not used because the Inception
  # Score is defined on logits without it.
  ignored = {k for k in state if k.endswith('num_batches_tracked')} | {'fc.bias'}
  missing = sorted(k for k in wanted if k not in state)
  unused = sorted(k for k in state if k not in wanted and k not in ignored)
  mismatched = sorted(f'{k} file {list(state[k].shape)} vs {list(shape)}'
                      for k, (_, shape) in wanted.items()
                      if k in state and tuple(state[k].shape) != shape)
  if missing or unused or mismatched:
    problems = [f'{label} keys {_names(keys)}'
                for label, keys in (('missing', missing), ('unused', unused),
                                    ('mismatched', mismatched)) if keys]
    raise UserError(f'{path} is not the FID InceptionV3: {"; ".join(problems)}; use '
                    'pytorch-fid\'s pt_inception-2015-12-05-6726825d.pth')

  converted = {flax_path: jnp.asarray(torch_files.to_flax_layout(state[k]).astype(np.float32))
               for k, (flax_path, _) in wanted.items()}
  return traverse_util.unflatten_dict(converted)
