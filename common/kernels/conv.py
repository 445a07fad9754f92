"""A convolution whose kernel gradient is a sum of matmuls, for speed on XLA:CPU.

XLA:CPU computes the kernel gradient of `lax.conv_general_dilated` (a "backward
filter" convolution) many times slower than the forward pass, which left ResNet
fine-tuning far behind PyTorch's (figures in docs/performance.md, "CPU kernels").

`conv_general_dilated` here has `lax.conv_general_dilated`'s signature (so it
plugs into `flax.linen.Conv(conv_general_dilated=...)`) and the same values; only
how the gradients are computed differs:
- kernel: dW[i, j] = sum over output positions of x_pad[strided window (i, j)]^T @ dY,
  one [C_in, M] x [M, C_out] matmul per kernel tap, which XLA:CPU runs at full speed
  (below 8 input channels, one matmul over the im2col patches instead);
- input: the transposed conv that autodiff would emit, but with its kernel as an
  explicit HWIO copy (see `_conv_bwd`); when the stride divides the kernel size (DCGAN's
  4x4 stride-2 convs), `transposed_conv` instead: one matmul and an overlap-add, without
  the dilated conv's multiplications by the zeros between dY's pixels (3/4 of them at
  stride 2), which shortens a DCGAN round.

A 1x1 convolution is a matmul outright: [B*H*W, C_in] x [C_in, C_out] on the (padded,
strided) input, which XLA:CPU runs faster than its conv forward (at PyTorch's speed at
ResNet-50 shapes); its gradients are matmuls by autodiff.
A convolution with at most 16 output pixels is one im2col matmul, [B*Ho*Wo, kh*kw*C_in] x
[kh*kw*C_in, C_out], gradients by autodiff: on feature maps of 2x2 XLA:CPU's conv (forward and
input gradient alike) runs some 60x slower than that matmul, the last block of a VGG16 at 32 px.
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
# At most this many output pixels, the whole conv is one im2col matmul (`_im2col`).
_IM2COL_MAX_PIXELS = 16
# Below this many input channels the kernel gradient is one matmul over im2col patches,
# faster than per-tap matmuls for an RGB stem such as ResNet's 7x7.
_IM2COL_MAX_CHANNELS = 8


def transposed_conv(y, w, input_hw, strides, padding, precision=None):
  """The adjoint of a stride-s NHWC/HWIO conv whose kernel size is a multiple of s.

  Given `w` [kh, kw, C_in, C_out] and `y` [B, Ho, Wo, C_out] shaped like the conv's output,
  returns the [B, *input_hw, C_in] input gradient `lax.conv_general_dilated(x, w, strides,
  padding)` would give for cotangent `y`: torch's `conv_transpose2d` (a DCGAN generator's
  upsampling layer is this with padding 1). One [B*Ho*Wo, C_out] x [C_out, kh*kw*C_in]
  matmul gives each pixel's contribution to every tap, zero-free; the taps are then
  overlap-added. With tap k = s*a + p, pixel i feeds padded input row s*(i + a) + p, so the
  overlap-add is (kh/s)*(kw/s) shifted [B, Ho, s, Wo, s, C_in] blocks: contiguous slices in
  the adjoint, which XLA:CPU runs much faster than kh*kw strided ones.
  """
  kh, kw, c_in, c_out = w.shape
  (sh, sw), (ry, rx) = strides, (kh // strides[0], kw // strides[1])
  if ry * sh != kh or rx * sw != kw:
    raise ValueError(f'transposed_conv needs kernel sizes {kh}x{kw} divisible by the strides '
                     f'{strides}')
  b, ho, wo, _ = y.shape
  # [kh, kw, C_in, C_out] -> columns ordered (a_y, a_x, p_y, p_x, C_in).
  w_cols = w.reshape(ry, sh, rx, sw, c_in, c_out).transpose(5, 0, 2, 1, 3, 4).reshape(c_out, -1)
  cols = jnp.matmul(y.reshape(-1, c_out), w_cols, precision=precision)
  cols = cols.reshape(b, ho, wo, ry, rx, sh, sw, c_in)
  out = None
  for ay in range(ry):
    for ax in range(rx):
      block = cols[:, :, :, ay, ax].transpose(0, 1, 3, 2, 4, 5)  # [B, Ho, p_y, Wo, p_x, C_in]
      block = jnp.pad(block, ((0, 0), (ay, ry - 1 - ay), (0, 0), (ax, rx - 1 - ax), (0, 0), (0, 0)))
      out = block if out is None else out + block
  # `out` covers padded input rows 0 .. s*(Ho + kh/s - 1) - 1; crop the conv's padding and
  # add zeros for trailing input rows no window reached.
  out = out.reshape(b, sh * (ho + ry - 1), sw * (wo + rx - 1), c_in)
  (top, _), (left, _) = padding
  h, w_ = input_hw
  out = jnp.pad(out, ((0, 0), (0, max(top + h - out.shape[1], 0)),
                      (0, max(left + w_ - out.shape[2], 0)), (0, 0)))
  return out[:, top:top + h, left:left + w_]


def window_taps(xp, window, strides, out_hw):
  """The [B, Ho, Wo, C] strided view of padded NHWC input `xp` under each window tap, row-major:
  the pixels tap (i, j) of a `window` at `strides` reads for each of the `out_hw` outputs."""
  (kh, kw), (sh, sw), (ho, wo) = window, strides, out_hw
  return [lax.slice(xp, (0, i, j, 0), (xp.shape[0], i + sh * (ho - 1) + 1, j + sw * (wo - 1) + 1,
                                       xp.shape[3]), (1, sh, sw, 1))
          for i in range(kh) for j in range(kw)]


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
  # a generic path several times slower than its HWIO one.
  if sh > 1 and sw > 1 and kh % sh == 0 and kw % sw == 0:
    dx = transposed_conv(g, w, x.shape[1:3], strides, padding, precision)
  else:
    w_t = lax.optimization_barrier(jnp.transpose(jnp.flip(w, (0, 1)), (0, 1, 3, 2)))
    pads = [(k - 1 - lo, size - 1 - (n - 1) * s + lo)
            for k, (lo, _), size, n, s in zip((kh, kw), padding, x.shape[1:3], (ho, wo), strides)]
    dx = lax.conv_general_dilated(g, w_t, (1, 1), pads, lhs_dilation=strides,
                                  dimension_numbers=_NHWC, precision=precision)
  xp = jnp.pad(x, ((0, 0), tuple(padding[0]), tuple(padding[1]), (0, 0)))
  g2 = g.reshape(-1, c_out)
  if c_in < _IM2COL_MAX_CHANNELS:
    # Few input channels (an RGB stem): one [kh*kw*C_in, M] x [M, C_out] matmul over the
    # im2col patches; kh*kw skinny [C_in, M] matmuls run far below the machine's rate.
    patches = _im2col_patches(xp, (kh, kw), strides, (ho, wo))
    dw = jnp.matmul(patches.T, g2, precision=precision, preferred_element_type=jnp.float32)
  else:
    dw = jnp.stack([jnp.matmul(wd.reshape(-1, c_in).T, g2, precision=precision,
                               preferred_element_type=jnp.float32)
                    for wd in window_taps(xp, (kh, kw), strides, (ho, wo))])
  return dx, dw.reshape(kh, kw, c_in, c_out).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)


def _pointwise(x, w, strides, padding, precision):
  """A 1x1 NHWC/HWIO convolution as one matmul over the padded, strided pixels."""
  if any(p for pair in padding for p in pair):
    x = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  x = x[:, ::strides[0], ::strides[1], :]
  y = jnp.matmul(x.reshape(-1, x.shape[-1]), w.reshape(w.shape[-2:]), precision=precision)
  return y.reshape(x.shape[:3] + (w.shape[-1],))


def _im2col_patches(xp, window, strides, out_hw):
  """The [B*Ho*Wo, kh*kw*C] im2col patches of padded NHWC input `xp` (taps row-major, then
  channels: the order of an HWIO kernel reshaped to [kh*kw*C, C_out])."""
  taps = window_taps(xp, window, strides, out_hw)
  return jnp.concatenate(taps, -1).reshape(-1, len(taps) * xp.shape[-1])


def _im2col(x, w, strides, padding, out_hw, precision):
  """An NHWC/HWIO convolution as one matmul over its im2col patches (gradients by autodiff)."""
  xp = jnp.pad(x, ((0, 0), padding[0], padding[1], (0, 0)))
  patches = _im2col_patches(xp, w.shape[:2], strides, out_hw)
  y = jnp.matmul(patches, w.reshape(-1, w.shape[-1]), precision=precision)
  return y.reshape(x.shape[0], *out_hw, w.shape[-1])


def conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                         rhs_dilation=None, dimension_numbers=None, feature_group_count=1,
                         batch_group_count=1, precision=None, preferred_element_type=None):
  """`lax.conv_general_dilated`; on the CPU, plain NHWC/HWIO convs get matmul kernel gradients,
  1x1 ones and those with at most 16 output pixels are matmuls outright."""
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
  if min(p for pair in padding for p in pair) >= 0:  # jnp.pad takes no negative (cropping) pads
    if rhs.shape[0] == rhs.shape[1] == 1:
      return _pointwise(lhs, rhs, strides, padding, precision)
    out_hw = tuple((n + lo + hi - k) // s + 1
                   for n, (lo, hi), k, s in zip(lhs.shape[1:3], padding, rhs.shape[:2], strides))
    if out_hw[0] * out_hw[1] <= _IM2COL_MAX_PIXELS:
      return _im2col(lhs, rhs, strides, padding, out_hw, precision)
  return _conv(lhs, rhs, strides, padding, precision)
