"""common.kernels.conv: same values and gradients as lax.conv_general_dilated's own autodiff."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from common.kernels import conv

NHWC = ('NHWC', 'HWIO', 'NHWC')


# (4, 2, *), (2, 2, 0) and (6, 3, 2): the stride divides the kernel, so the input gradient is
# `transposed_conv`'s matmul and overlap-add (with pad 0 on 15x13, no window reaches the
# last input row and column, whose gradients are zeros added at the end). Every case has
# more than 16 output pixels, so none is the small-map im2col conv (tested below).
@pytest.mark.parametrize('k,stride,pad', [(3, 1, 1), (3, 2, 1), (1, 2, 0), (7, 2, 3), (1, 1, 0),
                                          (1, 2, 1), (4, 2, 0), (4, 2, 1), (2, 2, 0), (6, 3, 2)])
@pytest.mark.parametrize('c_in', [5, 12])  # im2col and per-tap kernel gradients
def test_matches_lax_values_and_gradients(k, stride, pad, c_in):
  assert (c_in < conv._IM2COL_MAX_CHANNELS) == (c_in == 5)
  rng = np.random.default_rng(k * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, 15, 13, c_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, c_in, 6)), jnp.float32)
  pads = ((pad, pad), (pad, pad))
  y = conv.conv_general_dilated(x, w, (stride, stride), pads, dimension_numbers=NHWC)
  assert y.shape[1] * y.shape[2] > conv._IM2COL_MAX_PIXELS
  _assert_matches_lax(x, w, (stride, stride), pads)


def _assert_matches_lax(x, w, strides, pads):
  def f(fn):
    def loss(x, w):
      y = fn(x, w, strides, pads, dimension_numbers=NHWC)
      return jnp.sum(y * jnp.sin(jnp.arange(y.size, dtype=jnp.float32).reshape(y.shape)))
    return loss

  ref, ours = f(lax.conv_general_dilated), f(conv.conv_general_dilated)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5)
  for a, b in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


# Small feature maps (VGG16's last block at 32 px is 2x2, ResNet's at 32 px and InceptionV3's
# at 75 px 1x1, with 3x3, 1x3 and 3x1 kernels): the whole conv is one im2col matmul.
@pytest.mark.parametrize('hw,kernel,stride,pads', [
    ((2, 2), (3, 3), 1, ((1, 1), (1, 1))), ((1, 1), (1, 3), 1, ((0, 0), (1, 1))),
    ((4, 4), (3, 3), 1, ((1, 1), (1, 1))), ((7, 6), (3, 3), 2, ((1, 0), (0, 1))),
    ((3, 3), (3, 1), 1, ((0, 0), (0, 0)))])
def test_small_maps_are_one_matmul_with_lax_values_and_gradients(hw, kernel, stride, pads):
  rng = np.random.default_rng(sum(hw) + sum(kernel))
  x = jnp.asarray(rng.normal(size=(3, *hw, 12)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(*kernel, 12, 7)), jnp.float32)
  strides = (stride, stride)
  jaxpr = str(jax.make_jaxpr(lambda x, w: jax.grad(lambda x, w: jnp.sum(
      conv.conv_general_dilated(x, w, strides, pads, dimension_numbers=NHWC) ** 2), (0, 1))(
          x, w))(x, w))
  assert 'conv_general_dilated' not in jaxpr and 'dot_general' in jaxpr
  _assert_matches_lax(x, w, strides, pads)


def test_other_layouts_fall_back_to_lax():
  x = jnp.ones((1, 3, 8, 8))
  w = jnp.ones((4, 3, 3, 3))
  y = conv.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NCHW', 'OIHW', 'NCHW'))
  assert y.shape == (1, 4, 8, 8) and float(y[0, 0, 4, 4]) == 27.0
