"""A convolution whose kernel gradient is a sum of matmuls, for speed on XLA:CPU.

XLA:CPU computes the kernel gradient of `lax.conv_general_dilated` (a "backward
filter" convolution) 10-40x slower than the forward pass: on 2 cores, 8x56x56x64 ->
64 channels, 3x3: 64 ms forward, 652 ms kernel gradient; 1x1 stride 2: 3 ms vs
122 ms. That made a ResNet-50 fine-tuning step about 28x slower than PyTorch's.

`conv_general_dilated` here has `lax.conv_general_dilated`'s signature (so it
plugs into `flax.linen.Conv(conv_general_dilated=...)`) and the same values; only
how the gradients are computed differs:
- kernel: dW[i, j] = sum over output positions of x_pad[strided window (i, j)]^T @ dY,
  one [C_in, M] x [M, C_out] matmul per kernel tap, which XLA:CPU runs at full speed
  (below 8 input channels, one matmul over the im2col patches instead);
- input: the transposed conv that autodiff would emit, but with its kernel as an
  explicit HWIO copy (see `_conv_bwd`).

A 1x1 convolution is a matmul outright: [B*H*W, C_in] x [C_in, C_out] on the (padded,
strided) input. XLA:CPU runs that 1.1-3x faster than its conv forward (8-2048 channels,
batch 16, ResNet-50 shapes), at PyTorch's speed; its gradients are matmuls by autodiff.
Cases other than NHWC/HWIO without dilation or groups fall back to lax.

All of this is for XLA:CPU. When the default backend is an accelerator, `conv_general_dilated`
is `lax.conv_general_dilated` itself: cuDNN's conv gradients are fast, and XLA:GPU's GEMM
fusion (jax 0.11.2, H100) aborted the process compiling a ResNet-50 fine-tuning step that
contained the 1x1 stride-2 matmul form ("Check failed: subdim_size_accumulator == dim_size").
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax import lax

_NHWC = ('NHWC', 'HWIO', 'NHWC')
# Below this many input channels the kernel gradient is one matmul over im2col patches
# (ResNet's 7x7 RGB stem: fwd + kernel gradient 200 -> 149 ms at batch 8, 224 px).
_IM2COL_MAX_CHANNELS = 8


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, padding, precision):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_NHWC,
                                  precision=precision)


def _conv_fwd(x, w, strides, padding, precision):
  return _conv(x, w, strides, padding, precision), (x, w)


def _conv_bwd(strides, padding, precision, res, g):
  x, w = res
  kh, kw, c_in, c_out = w.shape
  sh, sw = strides
  ho, wo = g.shape[1], g.shape[2]
  # Input gradient: dY dilated by the stride, convolved with the flipped kernel, its in/out
  # channels swapped in an explicit HWIO copy. Left to autodiff, the swap is folded into the
  # conv's dimension labels (kernel "01oi"), and inside a scan XLA:CPU then runs that conv on
  # a generic path 3-10x slower than its HWIO one.
  w_t = lax.optimization_barrier(jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2)))
  pads = [(k - 1 - lo, size - 1 - (n - 1) * s + lo)
          for k, (lo, _), size, n, s in zip((kh, kw), padding, x.shape[1:3], (ho, wo), strides)]
  dx = lax.conv_general_dilated(g, w_t, (1, 1), pads, lhs_dilation=strides,
                                dimension_numbers=_NHWC, precision=precision)
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  g2 = g.reshape(-1, c_out)
  windows = [lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (ho - 1) + 1,
                                          j + sw * (wo - 1) + 1, c_in), (1, sh, sw, 1))
             for i in range(kh) for j in range(kw)]
  if c_in < _IM2COL_MAX_CHANNELS:
    # Few input channels (an RGB stem): one [kh*kw*C_in, M] x [M, C_out] matmul over the
    # im2col patches; kh*kw skinny [C_in, M] matmuls run far below the machine's rate.
    patches = jnp.concatenate(windows, -1).reshape(-1, kh * kw * c_in)
    dw = jnp.matmul(patches.T, g2, precision=precision, preferred_element_type=jnp.float32)
  else:
    dw = jnp.stack([jnp.matmul(wd.reshape(-1, c_in).T, g2, precision=precision,
                               preferred_element_type=jnp.float32) for wd in windows])
  return dx, dw.reshape(kh, kw, c_in, c_out).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _pointwise(x, w, strides, padding, precision):
  """A 1x1 NHWC/HWIO convolution as one matmul over the padded, strided pixels."""
  if any(p for pair in padding for p in pair):
    x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  x = x[:, ::strides[0], ::strides[1], :]
  y = jnp.matmul(x.reshape(-1, x.shape[-1]), w.reshape(w.shape[-2:]), precision=precision)
  return y.reshape(x.shape[:3] + (w.shape[-1],))


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`; on the CPU, plain NHWC/HWIO convs get matmul kernel gradients,
  1x1 ones are matmuls outright."""
  ones = (None, (1, 1), [1, 1])
  plain = (jax.default_backend() == 'cpu' and lhs.ndim == 4 and dimension_numbers is not None
           and lhs_dilation in ones and rhs_dilation in ones and feature_group_count == 1
           and batch_group_count == 1 and preferred_element_type is None
           and not isinstance(padding, str))
  if plain:
    nhwc = lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC)
    plain = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers) == nhwc
  if not plain:
    return lax.conv_general_dilated(
        lhs, rhs, window_strides, padding, lhs_dilation, rhs_dilation, dimension_numbers,
        feature_group_count, batch_group_count, precision, preferred_element_type)
  padding = tuple(tuple(int(p) for p in pair) for pair in padding)
  strides = tuple(int(s) for s in window_strides)
  if rhs.shape[0] == rhs.shape[1] == 1 and min(p for pair in padding for p in pair) >= 0:
    return _pointwise(lhs, rhs, strides, padding, precision)
  return _conv(lhs, rhs, strides, padding, precision)
