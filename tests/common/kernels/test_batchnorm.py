"""common.kernels.batchnorm: nn.BatchNorm's variables, values, running statistics and gradients."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.kernels import batchnorm


def _pair(train: bool, momentum: float = 0.9, epsilon: float = 1e-5):
  kw = dict(use_running_average=not train, momentum=momentum, epsilon=epsilon)
  return batchnorm.BatchNorm(**kw), nn.BatchNorm(**kw)


def _inputs(shape=(4, 5, 3, 6), seed=0):
  rng = np.random.default_rng(seed)
  # A channel mean well away from 0 exercises the one-pass variance and the gathered gradient.
  x = rng.normal(size=shape) * rng.uniform(0.5, 3.0, shape[-1]) + rng.normal(size=shape[-1]) * 2
  return jnp.asarray(x, jnp.float32)


def _variables(x, seed=1):
  """flax's own init, with random scale/bias/statistics so that nothing is trivially 1 or 0."""
  v = nn.BatchNorm(use_running_average=False).init(jax.random.key(0), x)
  rng = np.random.default_rng(seed)
  c = x.shape[-1]
  return {'params': {'scale': jnp.asarray(rng.uniform(0.5, 2, c), jnp.float32),
                     'bias': jnp.asarray(rng.normal(size=c), jnp.float32)},
          'batch_stats': {'mean': jnp.asarray(rng.normal(size=c), jnp.float32),
                          'var': jnp.asarray(rng.uniform(0.5, 2, c), jnp.float32)},
          **{k: v[k] for k in v if k not in ('params', 'batch_stats')}}


def test_same_variables_as_flax():
  x = _inputs()
  ours, ref = _pair(train=True)
  a, b = ours.init(jax.random.key(0), x), ref.init(jax.random.key(0), x)
  assert jax.tree.structure(a) == jax.tree.structure(b)
  for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert u.shape == v.shape and u.dtype == v.dtype
    np.testing.assert_array_equal(u, v)


@pytest.mark.parametrize('train', [True, False])
def test_values_and_running_statistics_match_flax(train):
  x = _inputs()
  variables = _variables(x)
  ours, ref = _pair(train, momentum=0.8, epsilon=1e-3)
  y, upd = ours.apply(variables, x, mutable=['batch_stats'])
  y_ref, upd_ref = ref.apply(variables, x, mutable=['batch_stats'])
  np.testing.assert_allclose(y, y_ref, rtol=1e-5, atol=1e-5)
  for k in ('mean', 'var'):
    np.testing.assert_allclose(upd['batch_stats'][k], upd_ref['batch_stats'][k], rtol=1e-5,
                               atol=1e-6)
  if not train:  # inference leaves the statistics alone
    np.testing.assert_array_equal(upd['batch_stats']['mean'], variables['batch_stats']['mean'])


def test_train_gradients_match_flax_autodiff():
  x = _inputs((3, 7, 4, 5), seed=2)
  variables = _variables(x, seed=3)
  w = jnp.asarray(np.random.default_rng(4).normal(size=x.shape), jnp.float32)

  def loss(module):
    def f(params, x):
      y, _ = module.apply({**variables, 'params': params}, x, mutable=['batch_stats'])
      # A nonlinear loss: dy varies per element, and its sum per channel is not zero.
      return jnp.sum(jnp.tanh(y) * w)
    return f

  ours, ref = _pair(train=True)
  g = jax.grad(loss(ours), (0, 1))(variables['params'], x)
  g_ref = jax.grad(loss(ref), (0, 1))(variables['params'], x)
  np.testing.assert_allclose(g[1], g_ref[1], rtol=1e-4, atol=1e-5)
  for k in ('scale', 'bias'):
    np.testing.assert_allclose(g[0][k], g_ref[0][k], rtol=1e-4, atol=1e-5)


def test_jitted_sgd_step_matches_flax():
  """One jitted SGD step through conv -> BatchNorm -> ReLU gives flax's parameters."""
  x = _inputs((4, 6, 6, 3), seed=5)

  class Net(nn.Module):
    norm: type

    @nn.compact
    def __call__(self, x):
      x = nn.Conv(4, (3, 3))(x)
      return nn.relu(self.norm(use_running_average=False, name='bn')(x)).mean()

  v = Net(nn.BatchNorm).init(jax.random.key(1), x)

  def step(norm):
    @jax.jit
    def f(params):
      grads = jax.grad(lambda p: Net(norm).apply({**v, 'params': p}, x,
                                                  mutable=['batch_stats'])[0])(params)
      return jax.tree.map(lambda p, g: p - 0.1 * g, params, grads)
    return f(v['params'])

  for a, b in zip(jax.tree.leaves(step(batchnorm.BatchNorm)), jax.tree.leaves(step(nn.BatchNorm))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
