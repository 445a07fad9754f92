"""common.kernels.pool.max_pool: flax's values; torch's max_pool2d gradient, ties included."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from common.kernels import pool


@pytest.mark.parametrize('shape,window,stride,pad', [
    ((2, 11, 9, 3), 3, 2, 1),   # ResNet's stem pool (torchvision), odd sizes
    ((2, 12, 10, 4), 3, 2, 0),  # Keras style: zero-padded first, then a valid pool
    ((1, 8, 8, 2), 2, 2, 0),
    ((1, 7, 9, 2), 3, 1, 1),
])
@pytest.mark.parametrize('ties', [False, True])
def test_values_match_flax_and_gradients_match_torch(shape, window, stride, pad, ties):
  rng = np.random.default_rng(sum(shape) + window)
  x = rng.normal(size=shape).astype(np.float32)
  if ties:  # after a ReLU most windows hold several equal maxima (often all zeros)
    x = np.maximum(np.round(x * 2), 0).astype(np.float32)
  g = rng.normal(size=shape).astype(np.float32)  # sliced to the output's shape below
  pads = ((pad, pad), (pad, pad))

  y, vjp = jax.vjp(lambda x: pool.max_pool(x, (window, window), (stride, stride), pads), x)
  y_ref = nn.max_pool(jnp.asarray(x), (window, window), strides=(stride, stride), padding=pads)
  np.testing.assert_array_equal(y, y_ref)

  dy = g[:, :y.shape[1], :y.shape[2]]
  xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
  yt = torch.nn.functional.max_pool2d(xt, window, stride, pad)
  np.testing.assert_array_equal(yt.detach().permute(0, 2, 3, 1).numpy(), y)
  yt.backward(torch.from_numpy(dy).permute(0, 3, 1, 2))
  np.testing.assert_allclose(vjp(jnp.asarray(dy))[0], xt.grad.permute(0, 2, 3, 1).numpy(),
                             rtol=1e-6, atol=1e-6)
