"""common.kernels.conv: same values and gradients as lax.conv_general_dilated's own autodiff."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from common.kernels import conv

NHWC = ('NHWC', 'HWIO', 'NHWC')


# (4, 2, *), (2, 2, 0) and (6, 3, 2): the stride divides the kernel, so the input gradient is
# `transposed_conv`'s matmul and overlap-add (with pad 0 on 11x9, no window reaches the
# last input row and column, whose gradients are zeros added at the end).
@pytest.mark.parametrize('k,stride,pad', [(3, 1, 1), (3, 2, 1), (1, 2, 0), (7, 2, 3), (1, 1, 0),
                                          (1, 2, 1), (4, 2, 0), (4, 2, 1), (2, 2, 0), (6, 3, 2)])
@pytest.mark.parametrize('c_in', [5, 12])  # im2col and per-tap kernel gradients
def test_matches_lax_values_and_gradients(k, stride, pad, c_in):
  assert (c_in < conv._IM2COL_MAX_CHANNELS) == (c_in == 5)
  rng = np.random.default_rng(k * 10 + stride)
  x = jnp.asarray(rng.normal(size=(2, 11, 9, c_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(k, k, c_in, 6)), jnp.float32)

  def f(fn):
    def loss(x, w):
      y = fn(x, w, (stride, stride), ((pad, pad), (pad, pad)), dimension_numbers=NHWC)
      return jnp.sum(y * jnp.sin(jnp.arange(y.size, dtype=jnp.float32).reshape(y.shape)))
    return loss

  ref, ours = f(lax.conv_general_dilated), f(conv.conv_general_dilated)
  np.testing.assert_allclose(ours(x, w), ref(x, w), rtol=1e-5)
  for a, b in zip(jax.grad(ours, (0, 1))(x, w), jax.grad(ref, (0, 1))(x, w)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_other_layouts_fall_back_to_lax():
  x = jnp.ones((1, 3, 8, 8))
  w = jnp.ones((4, 3, 3, 3))
  y = conv.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NCHW', 'OIHW', 'NCHW'))
  assert y.shape == (1, 4, 8, 8) and float(y[0, 0, 4, 4]) == 27.0
