"""Conditional GANs: every registered conditioning trains, the projection and ACGAN heads match
hand-written formulas, bad conditional configs are refused. (The conditional quick config's end
to end run is in test_evaluation.py, which evaluates its workdir.)"""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.config import load_config
from common.errors import UserError
from common.kernels import xla_cpu
from gan import conditional, train
from gan.steps import GanSteps, class_loss

SPEC = 'gan/configs/cgan_digits.py'


def _steps(conditioning):
  config = load_config(f'{SPEC}:{conditioning},quick')
  config.data.batch_size = 8
  g, d = conditional.create_models(config.model, (8, 8, 1))
  return GanSteps(g, d, config, real_fn=lambda _, b: b['image']), config


@pytest.fixture(scope='module', params=sorted(conditional.CONDITIONINGS))
def trained(request):
  """(steps, config, initial state, state after 2 rounds, per-round metrics) per conditioning."""
  steps, config = _steps(request.param)
  # jit: eager flax init compiles every op separately, several times slower on CPU.
  state = jax.jit(steps.init, static_argnums=1)(jax.random.key(0), (8, 8, 1))
  before = jax.tree.map(np.asarray, state)
  rng = np.random.default_rng(0)
  batches = {'image': jnp.asarray(rng.uniform(-1, 1, (2, 1, 8, 8, 8, 1)), jnp.float32),
             'label': jnp.asarray(rng.integers(0, 10, (2, 1, 8)), jnp.int32)}
  state, metrics = steps.train_chunk(state, batches, 2)
  return request.param, steps, config, before, state, metrics


@pytest.mark.slow
def test_every_conditioning_trains_a_round(trained):
  conditioning, steps, _, before, state, metrics = trained
  assert int(state['step']) == 2
  assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())
  assert ('aux_d' in metrics and 'aux_g' in metrics) == (conditioning == 'acgan')
  for part in ('g', 'd'):
    moved = jax.tree.map(lambda a, b: not np.array_equal(a, np.asarray(b)),
                         before[part]['params'], state[part]['params'])
    assert all(jax.tree.leaves(moved)), f'{part} has parameters that did not train'
  # Samples follow the label: same noise, different classes -> different images.
  z_key = jax.random.key(1)
  a = steps.sample(state['ema'], z_key, 4, jnp.zeros(4, jnp.int32))
  b = steps.sample(state['ema'], z_key, 4, jnp.full(4, 7, jnp.int32))
  assert a.shape == (4, 8, 8, 1) and not np.allclose(a, b)


def _trunk_features(d_vars, x, config):
  trunk = conditional.DCGANTrunk(8, 1, config.model.features)
  return np.asarray(jax.jit(trunk.apply)({'params': d_vars['params']['trunk']}, x), np.float64)


def test_discriminator_heads_match_their_formulas(trained):
  """Projection: psi(phi) + <embed[y], phi>; ACGAN: label-blind logit plus a linear class head."""
  conditioning, steps, config, _, state, _ = trained
  d_vars = state['d']
  x = jax.random.uniform(jax.random.key(3), (6, 8, 8, 1), minval=-1, maxval=1)
  y = jnp.array([0, 1, 2, 3, 9, 9])
  d_apply = jax.jit(steps.D.apply)  # one compile instead of one per eager op
  logits, class_logits = d_apply(d_vars, x, y)
  phi = _trunk_features(d_vars, x, config)
  p = d_vars['params']
  w, bias = np.asarray(p['Linear_0']['kernel'], np.float64), np.asarray(p['Linear_0']['bias'])
  if conditioning == 'projection':
    assert class_logits is None
    embed = np.asarray(p['class_embed'], np.float64)
    expected = phi @ w[:, 0] + bias[0] + np.sum(embed[np.asarray(y)] * phi, axis=1)
    np.testing.assert_allclose(np.asarray(logits), expected, rtol=1e-4, atol=1e-5)
    return
  np.testing.assert_allclose(np.asarray(logits), phi @ w[:, 0] + bias[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_array_equal(logits, d_apply(d_vars, x, jnp.zeros(6, jnp.int32))[0])
  head = p['aux_head']
  expected = phi @ np.asarray(head['kernel'], np.float64) + np.asarray(head['bias'])
  np.testing.assert_allclose(np.asarray(class_logits), expected, rtol=1e-4, atol=1e-5)
  log_p = expected - np.log(np.exp(expected).sum(1, keepdims=True))
  np.testing.assert_allclose(float(class_loss(class_logits, y)),
                             -log_p[np.arange(6), np.asarray(y)].mean(), rtol=1e-5)


def test_generator_concatenates_the_label_embedding_to_z(trained):
  _, steps, config, _, state, _ = trained
  g_vars = state['g']
  z = jax.random.normal(jax.random.key(7), (3, config.model.noise_dim))
  y = jnp.array([2, 5, 5])
  out = jax.jit(steps.G.apply)(g_vars, z, y)
  embed = g_vars['params']['label_embed']['embedding'][y]
  base_vars = {'params': g_vars['params']['base'], 'batch_stats': g_vars['batch_stats']['base']}
  expected = jax.jit(steps.G.base.apply)(base_vars, jnp.concatenate([z, embed], -1))
  np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize('override,match', [
    ('model.num_classes=7', 'digits has 10 classes'),
    ('model.conditioning=film', "unknown model.conditioning 'film'"),
    ('model.name=mlp', "model.name='dcgan'"),
    ('data.name=ring8', 'needs a labelled image dataset'),
])
def test_bad_conditional_configs_are_refused(tmp_path, override, match):
  config = load_config(f'{SPEC}:quick', [override])
  with pytest.raises(UserError, match=match):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run')


@pytest.mark.parametrize('conditioning', sorted(conditional.CONDITIONINGS))
def test_conditional_models_compile_with_plain_jit(conditioning):
  # DCGAN-based: like the unconditional DCGAN, they keep XLA:CPU's default library.
  steps, _ = _steps(conditioning)
  assert xla_cpu.jit_for(steps.G, steps.D) is jax.jit
