"""common.kernels.resample: torch's conv_transpose2d / conv2d (stride 2, padding 1) values and
gradients for every formulation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from common.errors import UserError
from common.kernels import resample


def _rand(shape, seed, scale=1.0):
  return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize('method', resample.UPSAMPLE_METHODS)
def test_upsample_matches_torch_conv_transpose(method):
  x, k, g = _rand((2, 5, 6, 7), 0), _rand((4, 4, 7, 3), 1, 0.2), _rand((2, 10, 12, 3), 2)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).requires_grad_()
  kt = torch.from_numpy(k.transpose(2, 3, 0, 1)).requires_grad_()  # [Cin, Cout, 4, 4]
  yt = torch.nn.functional.conv_transpose2d(xt, kt, stride=2, padding=1)
  gx_t, gk_t = torch.autograd.grad(yt, (xt, kt), torch.from_numpy(g.transpose(0, 3, 1, 2)))

  @jax.jit
  def forward_and_vjp(x, k, g):
    y, vjp = jax.vjp(lambda x, k: resample.upsample2x(x, k, method), x, k)
    return (y,) + vjp(g)

  y, gx, gk = forward_and_vjp(jnp.asarray(x), jnp.asarray(k), jnp.asarray(g))
  np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5)
  np.testing.assert_allclose(gx, gx_t.numpy().transpose(0, 2, 3, 1), atol=1e-4)
  np.testing.assert_allclose(gk, gk_t.numpy().transpose(2, 3, 0, 1), atol=1e-4)


@pytest.mark.parametrize('c_in', [3, 12])  # both formulations (see resample._S2D_MAX_CHANNELS)
def test_downsample_matches_torch_conv(c_in):
  x, k, g = _rand((2, 8, 6, c_in), 3), _rand((4, 4, c_in, 5), 4, 0.2), _rand((2, 4, 3, 5), 5)
  xt = torch.from_numpy(x.transpose(0, 3, 1, 2)).requires_grad_()
  kt = torch.from_numpy(k.transpose(3, 2, 0, 1)).requires_grad_()  # [Cout, Cin, 4, 4]
  yt = torch.nn.functional.conv2d(xt, kt, stride=2, padding=1)
  gx_t, gk_t = torch.autograd.grad(yt, (xt, kt), torch.from_numpy(g.transpose(0, 3, 1, 2)))
  y, vjp = jax.vjp(resample.downsample2x, jnp.asarray(x), jnp.asarray(k))
  gx, gk = vjp(jnp.asarray(g))
  np.testing.assert_allclose(y, yt.detach().numpy().transpose(0, 2, 3, 1), atol=1e-5)
  np.testing.assert_allclose(gx, gx_t.numpy().transpose(0, 2, 3, 1), atol=1e-4)
  np.testing.assert_allclose(gk, gk_t.numpy().transpose(2, 3, 1, 0), atol=1e-4)


def test_unknown_upsample_method():
  with pytest.raises(UserError, match='col2im, subpixel, transpose'):
    resample.upsample2x(jnp.zeros((1, 2, 2, 1)), jnp.zeros((4, 4, 1, 1)), 'nearest')
