"""x2 resampling kernels with torch's 4x4 stride-2 padding-1 semantics (DCGAN's layers).

`upsample2x` is torch's `ConvTranspose2d(4, stride=2, padding=1)`, [B, H, W, Cin] ->
[B, 2H, 2W, Cout], in three exact formulations (`UPSAMPLE_METHODS`) that differ only in speed;
`downsample2x` is `Conv2d(4, stride=2, padding=1)`, [B, H, W, Cin] -> [B, H/2, W/2, Cout].
Kernels are [4, 4, Cin, Cout] for both. The modules that own the kernels are in gan/models.py.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from common.errors import unknown_name
from common.kernels import conv

Array = jax.Array

# For a 4x4 stride-2 padding-1 transposed conv, output row 2m + r reads input rows
# m + offset through kernel tap `tap`: r=0 -> (m-1, 3), (m, 1); r=1 -> (m, 2), (m+1, 0).
# As a table [r, offset + 1] -> tap, with 4 meaning "no tap" (a zero weight):
_SUBPIXEL_TAPS = np.array([[3, 1, 4], [4, 2, 0]])


def _upsample_transpose(x: Array, kernel: Array) -> Array:
  # lax.conv_transpose is what nn.ConvTranspose calls; transpose_kernel=True gives the
  # gradient-of-conv semantics of torch's ConvTranspose2d. Its backward is slow on XLA:CPU
  # inside the training scan (docs/performance.md). Kept as the reference.
  return lax.conv_transpose(x, jnp.swapaxes(kernel, 2, 3), (2, 2), ((2, 2), (2, 2)),
                            dimension_numbers=('NHWC', 'HWIO', 'NHWC'), transpose_kernel=True)


def _depth_to_space(y: Array, channels: int) -> Array:
  """[B, H, W, 2*2*C] with channel order (row phase, col phase, c) -> [B, 2H, 2W, C]."""
  b, h, w, _ = y.shape
  y = y.reshape(b, h, w, 2, 2, channels).transpose(0, 1, 3, 2, 4, 5)
  return y.reshape(b, 2 * h, 2 * w, channels)


def _upsample_subpixel(x: Array, kernel: Array) -> Array:
  # Every output phase reads a 3x3 input neighbourhood, so a 3x3 conv to 4*C channels
  # (zeros where a phase has no tap) followed by depth-to-space is exact.
  c_in, c_out = kernel.shape[2:]
  padded = jnp.pad(kernel, ((0, 1), (0, 1), (0, 0), (0, 0)))
  rows = _SUBPIXEL_TAPS.T[:, None, :, None]  # [dy, 1, ry, 1]
  cols = _SUBPIXEL_TAPS.T[None, :, None, :]  # [1, dx, 1, rx]
  k3 = padded[rows, cols].transpose(0, 1, 4, 2, 3, 5).reshape(3, 3, c_in, 4 * c_out)
  y = conv.conv_general_dilated(x, k3, (1, 1), ((1, 1), (1, 1)),
                                dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return _depth_to_space(y, c_out)


def _upsample_col2im(x: Array, kernel: Array) -> Array:
  # The adjoint of the 4x4 stride-2 conv with the in/out-swapped kernel, as one matmul (the
  # zero-free 16*Cin*Cout multiply-adds per pixel, like torch's col2im) and an overlap-add.
  h, w = x.shape[1:3]
  return conv.transposed_conv(x, jnp.swapaxes(kernel, 2, 3), (2 * h, 2 * w), (2, 2),
                              ((1, 1), (1, 1)))


_UPSAMPLERS = {
  'col2im': _upsample_col2im,
  'subpixel': _upsample_subpixel,
  'transpose': _upsample_transpose,
}
UPSAMPLE_METHODS = tuple(_UPSAMPLERS)


def upsample2x(x: Array, kernel: Array, method: str = 'col2im') -> Array:
  """4x4 stride-2 transposed conv, torch `ConvTranspose2d(padding=1)` semantics.

  x [B, H, W, Cin], kernel [4, 4, Cin, Cout] (torch weight [Cin, Cout, 4, 4] permuted
  (2, 3, 0, 1)) -> [B, 2H, 2W, Cout]. `method` picks the formulation; all are exact.
  """
  if method not in _UPSAMPLERS:
    raise unknown_name('model.upsample', method, UPSAMPLE_METHODS)
  return _UPSAMPLERS[method](x, kernel)


def _downsample_s2d_matmul(x: Array, kernel: Array) -> Array:
  # With tap k = 2a + p, output row i reads padded input row 2(i + a) + p: space-to-depth
  # the padded input into [B, H/2 + 1, W/2 + 1, (p_y, p_x, C)], gather the 2x2 blocks
  # (a_y, a_x) and do one matmul.
  b, h, w, c = x.shape
  ho, wo = h // 2, w // 2
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  s2d = xp.reshape(b, ho + 1, 2, wo + 1, 2, c).transpose(0, 1, 3, 2, 4, 5)
  s2d = s2d.reshape(b, ho + 1, wo + 1, 4 * c)
  patches = jnp.concatenate([s2d[:, ay:ay + ho, ax:ax + wo] for ay in (0, 1) for ax in (0, 1)], -1)
  # [4 (ky), 4 (kx), C, Cout] -> rows ordered (a_y, a_x, p_y, p_x, C).
  k = kernel.reshape(2, 2, 2, 2, c, -1).transpose(0, 2, 1, 3, 4, 5).reshape(16 * c, -1)
  return jnp.dot(patches.reshape(-1, 16 * c), k).reshape(b, ho, wo, -1)


# Below this many input channels (image inputs) the space-to-depth matmul beats XLA:CPU's
# strided conv, whose kernel gradient is slow there; above it the conv is faster. The conv
# is `common.kernels.conv`'s: left to autodiff inside the training scan, its gradients
# compiled to conv layouts that made DCGAN rounds many times slower (docs/performance.md).
_S2D_MAX_CHANNELS = 8


def downsample2x(x: Array, kernel: Array) -> Array:
  """4x4 stride-2 conv, torch `Conv2d(padding=1)` semantics.

  x [B, H, W, Cin] (H, W even), kernel [4, 4, Cin, Cout] (HWIO) -> [B, H/2, W/2, Cout].
  """
  if x.shape[-1] <= _S2D_MAX_CHANNELS:
    return _downsample_s2d_matmul(x, kernel)
  return conv.conv_general_dilated(x, kernel, (2, 2), ((1, 1), (1, 1)),
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
