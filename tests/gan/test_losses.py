"""GAN losses on hand-computed logits; GP and R1 against analytic and finite-difference gradients."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.errors import UserError
from gan import losses

LOG3 = math.log(3.0)


def _value(fn, *args):
  return float(fn(*[jnp.asarray(a, jnp.float32) for a in args]))


def test_bce_losses_by_hand():
  # sigma(0) = 1/2, sigma(log 3) = 3/4, sigma(-log 3) = 1/4.
  real, fake = [0.0, LOG3], [LOG3, -LOG3]
  d_expected = (math.log(2) + math.log(4 / 3)) / 2 + (math.log(4) + math.log(4 / 3)) / 2
  for name in ('minimax', 'ns'):
    assert _value(losses.LOSSES[name].d, real, fake) == pytest.approx(d_expected, rel=1e-6)
  # minimax G minimises log(1 - sigma(f)); ns G minimises -log sigma(f).
  assert _value(losses.LOSSES['minimax'].g, fake) == pytest.approx(
    (math.log(1 / 4) + math.log(3 / 4)) / 2, rel=1e-6)
  assert _value(losses.LOSSES['ns'].g, fake) == pytest.approx(
    (-math.log(3 / 4) - math.log(1 / 4)) / 2, rel=1e-6)


def test_lsgan_by_hand():
  # D: 0.5 * mean((r - 1)^2) + 0.5 * mean(f^2) = 0.5 * (1 + 4) / 2 + 0.5 * (0.25 + 1) / 2.
  loss = losses.LOSSES['lsgan']
  assert _value(loss.d, [0.0, 3.0], [0.5, -1.0]) == pytest.approx(1.25 + 0.3125)
  # G: 0.5 * mean((f - 1)^2) = 0.5 * (0.25 + 4) / 2.
  assert _value(loss.g, [0.5, -1.0]) == pytest.approx(1.0625)


def test_hinge_and_wgan_by_hand():
  real, fake = [0.5, 2.0, -1.0], [-2.0, 0.0, 1.0]
  # relu(1 - r) = [0.5, 0, 2]; relu(1 + f) = [0, 1, 2].
  assert _value(losses.LOSSES['hinge'].d, real, fake) == pytest.approx(2.5 / 3 + 1.0)
  assert _value(losses.LOSSES['wgan'].d, real, fake) == pytest.approx(-1 / 3 - 0.5)
  for name in ('hinge', 'wgan'):
    assert _value(losses.LOSSES[name].g, fake) == pytest.approx(1 / 3)


def test_real_and_fake_batches_are_averaged_separately():
  # 1 real, 3 fakes: mean over each, then summed.
  assert _value(losses.LOSSES['wgan'].d, [3.0], [1.0, 2.0, 6.0]) == pytest.approx(0.0)


@pytest.mark.parametrize('name', sorted(losses.LOSSES))
def test_losses_are_finite_for_extreme_logits(name):
  loss = losses.get_loss(name)
  big = jnp.array([-500.0, 500.0])
  values_and_grads = [jax.value_and_grad(loss.d, argnums=(0, 1))(big, big),
                      jax.value_and_grad(loss.g)(big)]
  for leaf in jax.tree.leaves(values_and_grads):
    assert np.all(np.isfinite(np.asarray(leaf)))
  if name == 'ns':  # -log sigma(-500) = 500 exactly in the stable form
    assert float(loss.g(jnp.array([-500.0]))) == pytest.approx(500.0)


def test_get_loss_unknown_name():
  with pytest.raises(UserError, match='unknown loss.name .*hinge, lsgan, minimax, ns, wgan'):
    losses.get_loss('bce')


# ---- penalties: D(x) = sum(a * x^2) + b . x per sample, so grad_x D = 2 a x + b ----------

A = np.array([[0.5, -1.0], [2.0, 0.25]], np.float32)  # per-sample inputs are [2, 2]
B = np.array([[1.0, 0.0], [-0.5, 3.0]], np.float32)


def _d_fn(x):
  return jnp.sum(A * x ** 2 + B * x, axis=(1, 2))


def _d_numpy(x):  # one sample [2, 2], float64
  return float(np.sum(A * x ** 2 + B * x))


def _fd_grad(x, h=1e-4):
  """Central differences of _d_numpy at one sample."""
  g = np.zeros_like(x)
  for idx in np.ndindex(x.shape):
    e = np.zeros_like(x)
    e[idx] = h
    g[idx] = (_d_numpy(x + e) - _d_numpy(x - e)) / (2 * h)
  return g


def _points(seed, n=4):
  return np.random.default_rng(seed).normal(size=(n, 2, 2))


def test_r1_penalty_matches_analytic_and_finite_differences():
  x = _points(0)
  analytic = np.mean([np.sum((2 * A * xi + B) ** 2) for xi in x])
  fd = np.mean([np.sum(_fd_grad(xi) ** 2) for xi in x])
  assert fd == pytest.approx(analytic, rel=1e-6)
  assert float(losses.r1_penalty(_d_fn, jnp.asarray(x, jnp.float32))) == pytest.approx(analytic, rel=1e-5)


def test_gradient_penalty_at_coincident_real_and_fake():
  # real == fake makes every interpolate equal to it, whatever eps is drawn.
  x = _points(1)
  analytic = np.mean([(np.linalg.norm(2 * A * xi + B) - 1) ** 2 for xi in x])
  fd = np.mean([(np.linalg.norm(_fd_grad(xi)) - 1) ** 2 for xi in x])
  assert fd == pytest.approx(analytic, rel=1e-6)
  xj = jnp.asarray(x, jnp.float32)
  gp = losses.gradient_penalty(_d_fn, xj, xj, jax.random.key(0))
  assert float(gp) == pytest.approx(analytic, rel=1e-5)


def test_gradient_penalty_of_linear_critic_ignores_interpolation():
  # D(x) = b . x has gradient b everywhere: GP = (||b|| - 1)^2 for any real, fake.
  real, fake = _points(2), _points(3) * 5
  gp = losses.gradient_penalty(lambda x: jnp.sum(B * x, axis=(1, 2)), jnp.asarray(real, jnp.float32),
                               jnp.asarray(fake, jnp.float32), jax.random.key(1))
  assert float(gp) == pytest.approx((np.linalg.norm(B) - 1) ** 2, rel=1e-5)


def test_gradient_penalty_interpolates_between_real_and_fake():
  # D(x) = sum(x^2)/2 per sample has gradient x, so GP = mean((||x_hat|| - 1)^2) with
  # x_hat = eps * real + (1 - eps) * fake. With real = 0 and fake = c * ones(4) this is
  # ((1 - eps) * 2c - 1)^2, which lies between (2c - 1)^2 (eps = 0) and 1 (eps = 1).
  c = 2.0
  real, fake = jnp.zeros((64, 2, 2)), jnp.full((64, 2, 2), c)
  gp = float(losses.gradient_penalty(lambda x: 0.5 * jnp.sum(x ** 2, axis=(1, 2)),
                                     real, fake, jax.random.key(2)))
  # E over eps ~ U[0, 1] of (2c(1 - eps) - 1)^2 = (4c^2)/3 - 2c + 1 = 7/3 for c = 2.
  assert 1.0 < gp < (2 * c - 1) ** 2
  assert gp == pytest.approx(7 / 3, rel=0.25)


def test_gradient_penalty_shape_mismatch():
  with pytest.raises(UserError, match='equal batch sizes'):
    losses.gradient_penalty(_d_fn, jnp.zeros((4, 2, 2)), jnp.zeros((3, 2, 2)), jax.random.key(0))


def _d_update(r1_gamma, r1_every, step):
  """D params after one D step of the toy ring8 MLP GAN from a fixed state at round `step`."""
  from gan.data import build_data
  from gan.state import build_models
  from gan.configs.toy2d import get_config
  from gan.steps import GanSteps
  config = get_config('ring8,quick')
  config.model.hidden, config.data.batch_size = 16, 32
  config.loss.r1_gamma, config.loss.r1_every = r1_gamma, r1_every
  config.optim.name = 'sgd'  # updates proportional to the gradients
  gdata = build_data(config)
  steps = GanSteps(*build_models(config, gdata.shape), config, gdata.real_fn)
  state = steps.init(jax.random.key(0), gdata.shape)
  state['step'] = jnp.asarray(step, jnp.int32)
  real = gdata.real_fn(jax.random.key(1), None)
  new, metrics = steps.d_step(state, real, jax.random.key(2))
  return jax.tree.leaves(new['d']['params']), float(metrics.get('r1', 0.0))


@pytest.mark.slow
def test_lazy_r1_applies_k_times_the_penalty_every_kth_round_only():
  full_k, r1_full = _d_update(0.4, 1, step=8)   # the penalty weighted 4 x 0.1
  lazy_on, r1_on = _d_update(0.1, 4, step=8)    # 8 % 4 == 0: penalty round
  lazy_off, r1_off = _d_update(0.1, 4, step=9)  # no penalty this round
  plain, _ = _d_update(0.0, 1, step=9)
  assert r1_on == pytest.approx(r1_full) and r1_on > 0 and r1_off == 0.0
  for a, b in zip(lazy_on, full_k):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  for a, b in zip(lazy_off, plain):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
  # and the penalty round really differs from a plain step (the check above can fail)
  assert max(float(np.abs(a - b).max()) for a, b in zip(lazy_on, plain)) > 1e-6


@pytest.mark.slow
@pytest.mark.parametrize('noise', ['gaussian', 'uniform'])
def test_round_with_precomputed_draws_is_bitwise_the_round_that_draws_itself(noise):
  """`_train_rounds` hands each round its noise and real samples drawn ahead for the chunk
  (`round_draws`); they must be exactly what the round would draw from its own key."""
  from gan.data import build_data
  from gan.state import build_models
  from gan.configs.toy2d import get_config
  from gan.steps import GanSteps
  config = get_config('ring8,quick')
  config.model.hidden, config.data.batch_size = 16, 32
  config.model.noise = noise
  # A constant rate: with a decaying one, the two programs compile the schedule's arithmetic
  # differently and a value may round one ulp apart (seen on XLA:CPU with cosine decay).
  config.optim.update(schedule='constant', g_lr=1e-3, d_lr=1e-3)
  config.train.n_d, config.train.n_g = 2, 2
  gdata = build_data(config)
  steps = GanSteps(*build_models(config, gdata.shape), config, gdata.real_fn)
  state = steps.init(jax.random.key(0), gdata.shape)
  state['step'] = jnp.asarray(5, jnp.int32)
  draws = steps.round_draws(state['rng'], state['step'], sample_real=True)
  assert draws['real'].shape == (2, 32, 2) and draws['g_noise'].shape == (2, 32, 2)
  ahead, m_ahead = jax.jit(steps.round)(state, None, draws)
  inside, m_inside = jax.jit(steps.round)(state, None)
  # Bitwise on XLA:CPU with Gaussian noise. The round that draws compiles its draw with the step
  # and may round a value differently: with uniform noise on XLA:CPU (one of 256 kernel entries)
  # and on an H100 with Gaussian noise (one of 32), by one ulp. There it is allclose.
  exact = jax.default_backend() == 'cpu' and noise == 'gaussian'
  for a, b in zip(jax.tree.leaves((ahead, m_ahead)), jax.tree.leaves((inside, m_inside))):
    if exact:
      np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    else:
      np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-9)
  # Other draws give another round (the comparison above can fail).
  other = steps.round_draws(state['rng'], state['step'] + 1, sample_real=True)
  moved, _ = jax.jit(steps.round)(state, None, other)
  assert not np.array_equal(np.asarray(moved['d']['params']['Linear_0']['kernel']),
                            np.asarray(inside['d']['params']['Linear_0']['kernel']))
