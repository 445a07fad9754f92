"""SNGAN ResNets: block and model shapes at every resolution, unit spectral norms, conditional
BatchNorm against a hand computation, self-attention, and one train round."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common.config import load_config
from common.errors import UserError
from gan import models, resnet
from gan.state import build_models

KEY = jax.random.key(0, impl='unsafe_rbg')  # see test_models: no threefry compiles in init


def _rand(shape, seed):
  return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def _run(gen, disc, z, labels):
  y = () if labels is None else (labels,)
  g_vars = gen.init(KEY, z, *y)
  x, g_upd = gen.apply(g_vars, z, *y, train=True, mutable=['batch_stats'])
  d_vars = disc.init(KEY, x, *y)
  out, d_upd = disc.apply(d_vars, x, *y, train=True, mutable=['batch_stats'])
  return g_vars, g_upd, x, d_vars, out


@pytest.mark.parametrize('size', sorted(resnet.PLANS))
@pytest.mark.parametrize('num_classes,conditioning', [(0, 'projection'), (10, 'projection'),
                                                     (10, 'acgan')])
def test_models_shapes_at_every_resolution(size, num_classes, conditioning):
  cfg = ml_collections.ConfigDict(dict(name='sngan', features=2, attention=size // 4,
                                       spectral_norm=True, num_classes=num_classes,
                                       conditioning=conditioning))
  gen, disc = models.create_models(cfg, (size, size, 3))
  labels = None if not num_classes else jax.ShapeDtypeStruct((3,), jnp.int32)
  z = jax.ShapeDtypeStruct((3, 16), jnp.float32)
  g_vars, g_upd, x, d_vars, out = jax.eval_shape(
      lambda z, y: _run(gen, disc, z, y), z, labels)
  assert x.shape == (3, size, size, 3) and x.dtype == jnp.float32
  if num_classes:
    logits, class_logits = out
    assert (class_logits is None) == (conditioning == 'projection')
    if class_logits is not None:
      assert class_logits.shape == (3, num_classes)
  else:
    logits = out
  assert logits.shape == (3,) and logits.dtype == jnp.float32
  assert jax.tree.structure(g_upd['batch_stats']) == jax.tree.structure(g_vars['batch_stats'])
  # One attention block in each network, at the requested side.
  assert sum('SelfAttention' in k for k in g_vars['params']) == 1
  assert sum('SelfAttention' in k for k in d_vars['params']) == 1
  if num_classes:  # conditional BatchNorm: one gain and bias row per class
    cbn = g_vars['params']['GBlock_0']['Norm_0']['ConditionalBatchNorm_0']
    assert cbn["gamma"].shape == (num_classes, 2 * resnet.PLANS[size].g[0])  # its input width


def test_published_widths_and_parameter_counts():
  # SNGAN CIFAR-10 (Mimicry's SNGAN32): G 4.28M, D 1.05M parameters.
  gen, disc = models.create_models(ml_collections.ConfigDict(
      dict(name='sngan', features=64, spectral_norm=True)), (32, 32, 3))
  g = jax.eval_shape(gen.init, KEY, jnp.zeros((2, 128)))
  d = jax.eval_shape(disc.init, KEY, jnp.zeros((2, 32, 32, 3)))
  count = lambda v: sum(a.size for a in jax.tree.leaves(v['params']))
  assert count(g) == 4_276_739 and count(d) == 1_053_825
  assert g['params']['GBlock_0']['Conv_0']['kernel'].shape == (3, 3, 256, 256)
  assert d['params']['DBlock_0']['Conv_0']['kernel'].shape == (3, 3, 3, 128)


@pytest.mark.parametrize('first,down,cin,cout,out_side', [
    (True, True, 3, 8, 8), (False, True, 8, 8, 8), (False, False, 8, 8, 16),
    (False, False, 4, 8, 16)])
def test_dblock_shapes_and_shortcut(first, down, cin, cout, out_side):
  block = resnet.DBlock(cout, down=down, first=first)
  x = jnp.zeros((2, 16, 16, cin))
  variables = jax.eval_shape(lambda x: block.init(KEY, x, False), x)
  y = jax.eval_shape(lambda v, x: block.apply(v, x, False), variables, x)
  assert y.shape == (2, out_side, out_side, cout)
  # A learnable 1x1 shortcut where the identity does not fit; the identity where it does.
  assert ('shortcut' in variables['params']) == (first or down or cin != cout)


def test_gblock_doubles_the_side():
  block = resnet.GBlock(6)
  x = jnp.zeros((2, 4, 4, 8))
  variables = jax.eval_shape(lambda x: block.init(KEY, x, None, False), x)
  y = jax.eval_shape(lambda v, x: block.apply(v, x, None, False), variables, x)
  assert y.shape == (2, 8, 8, 6)


def test_resampling_helpers():
  x = jnp.asarray(_rand((2, 4, 6, 3), 0))
  up = np.asarray(resnet.upsample_nearest(x))
  np.testing.assert_array_equal(up, np.asarray(x).repeat(2, 1).repeat(2, 2))
  down = np.asarray(resnet.avg_pool2(x))
  want = np.asarray(x).reshape(2, 2, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(down, want, rtol=1e-6)


def test_conditional_batchnorm_matches_a_hand_computation():
  x = _rand((6, 3, 3, 4), 1) * 2 + 0.5
  labels = np.array([0, 2, 1, 2, 0, 1], np.int32)
  cbn = resnet.ConditionalBatchNorm(3)
  variables = cbn.init(KEY, x, labels, False)
  gamma, beta = _rand((3, 4), 2), _rand((3, 4), 3)
  params = {'gamma': jnp.asarray(gamma), 'beta': jnp.asarray(beta)}
  variables = {**variables, 'params': params}
  y, upd = cbn.apply(variables, x, labels, True, mutable=['batch_stats'])
  mean, var = x.mean(axis=(0, 1, 2)), x.var(axis=(0, 1, 2))
  g, b = gamma[labels][:, None, None], beta[labels][:, None, None]
  want = (x - mean) / np.sqrt(var + 1e-5) * g + b
  np.testing.assert_allclose(np.asarray(y), want, rtol=1e-4, atol=1e-5)
  stats = upd['batch_stats']['BatchNorm_0']
  np.testing.assert_allclose(stats['mean'], 0.1 * mean, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(stats['var'], 0.9 + 0.1 * var, rtol=1e-5)
  # Inference mode normalises with the running statistics instead.
  y_eval = cbn.apply({**variables, **upd}, x, labels, False)
  rm, rv = 0.1 * mean, 0.9 + 0.1 * var
  want = (x - rm) / np.sqrt(rv + 1e-5) * g + b
  np.testing.assert_allclose(np.asarray(y_eval), want, rtol=1e-4, atol=1e-5)
  # Only the normalisation's statistics live in BatchNorm: its gain and bias are the classes'.
  assert set(variables['params']) == {'gamma', 'beta'}


def _sigmas(inter):
  return {tuple(str(p.key) for p in path[:-2]): float(v)
          for path, v in jax.tree_util.tree_flatten_with_path(inter)[0]}


def _kernels(params):
  return {tuple(str(p.key) for p in path[:-1]): np.asarray(v)
          for path, v in jax.tree_util.tree_flatten_with_path(params)[0]
          if path[-1].key == 'kernel'}


def test_discriminator_layers_have_unit_spectral_norm():
  disc = resnet.ResNetDiscriminator(32, 3, features=2, attention=8)
  x = jnp.asarray(_rand((2, 32, 32, 3), 4))
  variables = jax.jit(disc.init)(KEY, x)
  step = jax.jit(lambda v: disc.apply(v, x, train=True, mutable=['batch_stats'])[1])
  for _ in range(30):  # power iterations advance once per train-mode call
    variables = {**variables, **step(variables)}
  _, inter = jax.jit(lambda v: disc.apply(v, x, train=False, mutable=['intermediates']))(
      variables)
  sigmas, kernels = _sigmas(inter['intermediates']), _kernels(variables['params'])
  # 4 blocks x 2 convs, 2 shortcuts (the blocks after the last pooling keep the identity),
  # attention's 4 convs, the head.
  assert len(sigmas) == 4 * 2 + 2 + 4 + 1 and set(sigmas) == set(kernels)
  for layer, sigma in sigmas.items():
    w = kernels[layer]
    top = np.linalg.svd(w.reshape(-1, w.shape[-1]) / sigma, compute_uv=False)[0]
    assert top == pytest.approx(1.0, abs=1e-3), layer


def test_self_attention_starts_as_the_identity_and_mixes_positions():
  att = resnet.SelfAttention()
  x = jnp.asarray(_rand((2, 8, 8, 16), 5))
  variables = jax.jit(att.init)(KEY, x)
  apply = jax.jit(att.apply)
  np.testing.assert_array_equal(np.asarray(apply(variables, x)), np.asarray(x))
  variables = {**variables, 'params': {**variables['params'], 'gamma': jnp.ones(())}}
  g = jax.jit(jax.grad(lambda x: att.apply(variables, x)[0, 0, 0, 0]))(x)
  assert float(jnp.abs(g[0, 7, 7]).sum()) > 0  # a far pixel feeds the first one
  assert float(jnp.abs(g[1]).sum()) == 0  # samples stay independent


def test_bad_sizes_and_attention_are_user_errors():
  with pytest.raises(UserError, match='image size 28 is not supported.*32, 48, 64, 128'):
    resnet.ResNetGenerator(28)
  with pytest.raises(UserError, match='model.attention=5 is not a feature-map side.*4, 8, 16, 32'):
    resnet.ResNetDiscriminator(32, attention=5)
  with pytest.raises(UserError, match='needs square images'):
    models.create_models(ml_collections.ConfigDict(dict(name='sngan')), (2,))
  with pytest.raises(UserError, match="unknown model.conditioning 'cgan'"):
    resnet.ResNetDiscriminator(32, num_classes=10, conditioning='cgan')


@pytest.mark.slow
def test_one_sngan_round_trains_every_parameter():
  from gan.steps import GanSteps
  config = load_config('gan/configs/sngan_cifar10.py:cond,quick',
                       ['model.features=2', 'data.batch_size=4', 'train.n_d=1'])
  gen, disc = build_models(config, (32, 32, 3))
  steps = GanSteps(gen, disc, config, real_fn=lambda _, b: b['image'])
  state = jax.jit(steps.init, static_argnums=1)(jax.random.key(0), (32, 32, 3))
  batch = {'image': jnp.asarray(np.tanh(_rand((1, 4, 32, 32, 3), 6))),
           'label': jnp.asarray([[0, 1, 2, 3]], jnp.int32)}
  new, metrics = jax.jit(steps.round)(state, batch)
  assert all(np.isfinite(float(v)) for v in metrics.values())
  for net in ('g', 'd'):
    moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state[net]['params'],
                         new[net]['params'])
    assert all(jax.tree.leaves(moved)), (net, moved)
