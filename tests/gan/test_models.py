"""GAN models: shapes for every registered model, spectral normalisation against numpy's SVD,
noise sampling."""
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from common.errors import UserError
from common.kernels import resample, xla_cpu
from gan import models

# XLA:CPU compiles threefry sampling of small shapes slowly (seconds per parameter shape
# when flax initialises eagerly); these tests do not depend on the random stream.
KEY = jax.random.key(0, impl='unsafe_rbg')


def _rand(shape, seed, scale=1.0):
  return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


# ---- spectral normalisation ------------------------------------------------------------

def test_spectral_norm_estimate_matches_svd():
  w = _rand((20, 7), 5)
  u0 = jnp.asarray(_rand((7,), 6))
  sigma, u = models.spectral_norm_estimate(jnp.asarray(w), u0, n_iter=100)
  s_max = np.linalg.svd(w, compute_uv=False)[0]
  assert float(sigma) == pytest.approx(s_max, rel=1e-4)
  assert float(jnp.linalg.norm(u)) == pytest.approx(1.0, rel=1e-5)
  # One iteration from a random start is a lower bound, not yet converged.
  sigma1, _ = models.spectral_norm_estimate(jnp.asarray(w), u0 / jnp.linalg.norm(u0), n_iter=1)
  assert float(sigma1) <= s_max * (1 + 1e-6)


def _sn_layers(variables, inter):
  """(kernel reshaped to [-1, out], sigma) for every spectrally normalised layer."""
  params = jax.tree_util.tree_flatten_with_path(variables['params'])[0]
  kernels = {tuple(str(p.key) for p in path[:-1]): np.asarray(v)
             for path, v in params if path[-1].key == 'kernel'}
  sigmas = jax.tree_util.tree_flatten_with_path(inter)[0]
  out = []
  for path, v in sigmas:
    layer = tuple(str(p.key) for p in path[:-2])  # drop 'sn_sigma' and the sow tuple index
    kernel = kernels[layer]
    out.append((kernel.reshape(-1, kernel.shape[-1]), float(v)))
  return out


@pytest.mark.slow
@pytest.mark.parametrize('model', ['mlp', 'dcgan'])
def test_spectral_norm_makes_effective_weights_unit_norm(model):
  if model == 'mlp':
    d = models.MLPDiscriminator(hidden=16, depth=2, spectral_norm=True)
    x = jnp.asarray(_rand((8, 2), 7))
  else:
    d = models.DCGANDiscriminator(16, 3, features=4, spectral_norm=True)
    x = jnp.asarray(_rand((4, 16, 16, 3), 7))
  variables = d.init(KEY, x)
  u_init = variables['batch_stats']

  def unit_norm_errors():
    _, inter = d.apply(variables, x, train=False, mutable=['intermediates'])
    layers = _sn_layers(variables, inter['intermediates'])
    assert len(layers) == 3  # 2 hidden layers or 2 convs, then the output layer
    return [abs(np.linalg.svd(w / sigma, compute_uv=False)[0] - 1.0) for w, sigma in layers]

  # Init already runs power iterations, so eval mode is close before any training.
  assert max(unit_norm_errors()) < 2e-2
  # Eval mode leaves the power-iteration state alone; train mode advances it.
  _, upd = d.apply(variables, x, train=False, mutable=['batch_stats'])
  jax.tree.map(np.testing.assert_array_equal, upd['batch_stats'], u_init)
  for _ in range(30):  # eager: after the first call every op is cached, cheaper than a jit compile
    _, upd = d.apply(variables, x, train=True, mutable=['batch_stats'])
    variables = {**variables, **upd}
  assert any(not np.array_equal(a, b) for a, b in
             zip(jax.tree.leaves(u_init), jax.tree.leaves(variables['batch_stats'])))
  assert max(unit_norm_errors()) < 1e-3


def test_spectral_norm_gradient_flows_through_sigma():
  # With no iterations sigma = ||W u|| for the given u, whose gradient is (W u) u^T / ||W u||.
  w = _rand((5, 3), 8)
  u = np.array([1.0, 0.0, 0.0], np.float32)
  g = jax.grad(lambda w: models.spectral_norm_estimate(w, jnp.asarray(u), 0)[0])(jnp.asarray(w))
  wu = w @ u
  np.testing.assert_allclose(g, np.outer(wu, u) / np.linalg.norm(wu), rtol=1e-5)


# ---- registered models ------------------------------------------------------------------

def _cfg(**kw):
  base = dict(name='dcgan', hidden=16, depth=2, activation='relu', features=4,
              spectral_norm=False, upsample='col2im', noise_dim=8, noise='uniform')
  base.update(kw)
  return ml_collections.ConfigDict(base)


def _run(gen, disc, z):
  """G init, G train-mode apply, D init, D train-mode apply on G's output."""
  g_vars = gen.init(KEY, z)
  x, g_upd = gen.apply(g_vars, z, train=True, mutable=['batch_stats'])
  d_vars = disc.init(KEY, x)
  logits, d_upd = disc.apply(d_vars, x, train=True, mutable=['batch_stats'])
  return g_vars, g_upd, x, d_vars, d_upd, logits


def _run_abstract(gen, disc, z_shape):
  # Traces init and apply in full without compiling them: XLA:CPU compile time would
  # dominate a concrete run of every configuration.
  return jax.eval_shape(lambda z: _run(gen, disc, z), jax.ShapeDtypeStruct(z_shape, jnp.float32))


def test_registry_names():
  assert set(models.MODELS) == {'mlp', 'dcgan', 'sngan'}
  with pytest.raises(UserError, match="unknown model.name 'vae'.*dcgan, mlp, sngan"):
    models.create_models(_cfg(name='vae'), (2,))


REGISTRY_SHAPES = {'mlp': (2,), 'dcgan': (16, 16, 3), 'sngan': (32, 32, 3)}


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_every_registered_model_builds_and_runs(name):
  gen, disc = models.create_models(_cfg(name=name, features=2), REGISTRY_SHAPES[name])
  assert (type(gen), type(disc)) == models.MODELS[name]
  _, _, x, _, _, logits = _run_abstract(gen, disc, (3, 8))
  assert x.shape == (3, *REGISTRY_SHAPES[name]) and logits.shape == (3,)


@pytest.mark.parametrize('spectral_norm', [False, True])
@pytest.mark.parametrize('depth', [0, 3])
def test_mlp_models_shapes(depth, spectral_norm):
  for activation in models.ACTIVATIONS:
    gen, disc = models.create_models(
      _cfg(name='mlp', depth=depth, activation=activation, spectral_norm=spectral_norm), (2,))
    g_vars, _, x, d_vars, _, logits = _run_abstract(gen, disc, (5, 1))
    assert x.shape == (5, 2) and logits.shape == (5,) and logits.dtype == jnp.float32
    assert len(g_vars['params']) == depth + 1 and len(d_vars['params']) == depth + 1
    assert ('batch_stats' in d_vars) == spectral_norm and 'batch_stats' not in g_vars


def test_mlp_models_on_images():
  # G ends in tanh and returns images; D flattens them. Points keep the linear output.
  gen, disc = models.create_models(_cfg(name='mlp', depth=2, activation='leaky_relu'), (8, 8, 1))
  assert gen.image_shape == (8, 8, 1) and gen.out_dim == 64
  z = models.sample_noise(KEY, 4, 8, 'gaussian')
  _, _, x, _, _, logits = _run(gen, disc, z)
  assert x.shape == (4, 8, 8, 1) and logits.shape == (4,) and logits.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(x))) <= 1.0 and float(jnp.std(x)) > 0
  with pytest.raises(UserError, match='does not hold out_dim'):
    models.MLPGenerator(out_dim=10, image_shape=(8, 8, 1))


@pytest.mark.parametrize('size', models.IMAGE_SIZES)
@pytest.mark.parametrize('channels', [1, 3])
def test_dcgan_models_shapes(size, channels):
  for method in resample.UPSAMPLE_METHODS:
    gen, disc = models.create_models(_cfg(upsample=method, spectral_norm=channels == 3),
                                     (size, size, channels))
    g_vars, g_upd, x, d_vars, d_upd, logits = _run_abstract(gen, disc, (3, 8))
    assert x.shape == (3, size, size, channels) and x.dtype == jnp.float32
    assert logits.shape == (3,) and logits.dtype == jnp.float32
    assert jax.tree.structure(g_upd['batch_stats']) == jax.tree.structure(g_vars['batch_stats'])
    assert ('batch_stats' in d_vars) == (channels == 3)


def test_only_the_mlps_compile_with_xla_cpu_kernels():
  # The step code jits with what the models declare (xla_cpu.jit_for), not by model name.
  mlp = models.create_models(_cfg(name='mlp'), (2,))
  dcgan = models.create_models(_cfg(), (16, 16, 1))
  assert xla_cpu.jit_for(*mlp) is xla_cpu.jit_xla_kernels
  assert xla_cpu.jit_for(*dcgan) is jax.jit


@pytest.mark.slow  # 11 s; the quick DCGAN runs of the fast suite cover the same path
def test_dcgan_concrete_run():
  gen, disc = models.create_models(_cfg(spectral_norm=True), (16, 16, 3))
  z = models.sample_noise(KEY, 4, 8, 'gaussian')
  g_vars, g_upd, x, d_vars, d_upd, logits = _run(gen, disc, z)
  assert x.shape == (4, 16, 16, 3) and logits.shape == (4,)
  assert float(jnp.max(jnp.abs(x))) <= 1.0 and float(jnp.std(x)) > 0
  assert np.all(np.isfinite(logits))
  # Train mode moves BatchNorm running means away from their zero init.
  means = [v for path, v in jax.tree_util.tree_flatten_with_path(g_upd['batch_stats'])[0]
           if path[-1].key == 'mean']
  assert len(means) == 2 and all(float(jnp.max(jnp.abs(m))) > 0 for m in means)
  assert set(d_upd['batch_stats']) == {'DownConv_0', 'DownConv_1', 'Linear_0'}


@pytest.mark.parametrize('method', resample.UPSAMPLE_METHODS)
def test_dcgan_upsample_methods_agree(method):
  # Same parameters (all methods share the kernel layout), same images.
  z = models.sample_noise(KEY, 4, 8, 'gaussian')
  ref_gen = models.DCGANGenerator(16, 3, 4, upsample='transpose')
  g_vars = ref_gen.init(KEY, z)
  gen = models.DCGANGenerator(16, 3, 4, upsample=method)
  assert jax.tree.structure(jax.eval_shape(gen.init, KEY, z)) == jax.tree.structure(g_vars)
  np.testing.assert_allclose(gen.apply(g_vars, z), ref_gen.apply(g_vars, z), atol=1e-5)


def test_unknown_upsample_method():
  with pytest.raises(UserError, match='unknown model.upsample'):
    models.DCGANGenerator(16, upsample='nearest')


def test_dcgan_discriminator_logits_are_per_sample():
  # Gradient penalties rely on logit i depending on sample i only.
  disc = models.DCGANDiscriminator(16, 3, 4)
  x = jnp.asarray(_rand((4, 16, 16, 3), 9))
  variables = disc.init(KEY, x)
  changed = x.at[1:].set(jnp.asarray(_rand((3, 16, 16, 3), 10)))
  assert float(disc.apply(variables, x)[0]) == pytest.approx(float(disc.apply(variables, changed)[0]), abs=1e-6)


NUMPY_ACTIVATIONS = {
  'relu': lambda h: np.maximum(h, 0.0),
  'leaky_relu': lambda h: np.where(h > 0, h, 0.2 * h),
  'tanh': np.tanh,
  'sigmoid': lambda h: 1.0 / (1.0 + np.exp(-h)),
}


def _numpy_mlp(params, x, act, depth):
  for i in range(depth + 1):
    layer = params[f'Dense_{i}'] if 'Dense_0' in params else params[f'Linear_{i}']
    x = x @ np.asarray(layer['kernel']) + np.asarray(layer['bias'])
    x = act(x) if i < depth else x
  return x


@pytest.mark.parametrize('activation', sorted(models.ACTIVATIONS))
def test_mlp_models_match_numpy_forward(activation):
  act = NUMPY_ACTIVATIONS[activation]
  gen = models.MLPGenerator(out_dim=2, hidden=16, depth=2, activation=activation)
  disc = models.MLPDiscriminator(hidden=16, depth=2, activation=activation)
  z = _rand((8, 2), 11)
  g_params = gen.init(KEY, jnp.asarray(z))['params']
  x = gen.apply({'params': g_params}, jnp.asarray(z))
  np.testing.assert_allclose(x, _numpy_mlp(g_params, z, act, 2), rtol=1e-5, atol=1e-6)
  d_params = disc.init(KEY, x)['params']
  np.testing.assert_allclose(disc.apply({'params': d_params}, x),
                             _numpy_mlp(d_params, np.asarray(x), act, 2)[:, 0], rtol=1e-5, atol=1e-6)


def test_fourier_features_match_numpy_and_are_no_steeper_than_x():
  disc = models.MLPDiscriminator(hidden=16, depth=2, fourier=32, fourier_scale=3.0)
  x = _rand((8, 2), 12, 0.3) + 0.5
  params = disc.init(KEY, jnp.asarray(x))['params']
  assert np.asarray(params['Linear_0']['kernel']).shape == (2 + 2 * 32, 16)
  # Independently: the frequencies are normal draws of std 3 from numpy's seed 0, and each sine
  # and cosine is divided by its frequency 2 pi |b|.
  b = 3.0 * np.random.RandomState(0).standard_normal((2, 32))
  phase = 2 * np.pi * (x.astype(np.float64) @ b)
  scale = 2 * np.pi * np.sqrt((b ** 2).sum(0))
  feats = np.concatenate([x, np.sin(phase) / scale, np.cos(phase) / scale], 1)
  np.testing.assert_allclose(disc.fourier_features(jnp.asarray(x)), feats, rtol=2e-5, atol=2e-6)
  np.testing.assert_allclose(disc.apply({'params': params}, jnp.asarray(x)),
                             _numpy_mlp(params, feats, NUMPY_ACTIVATIONS['relu'], 2)[:, 0],
                             rtol=1e-4, atol=1e-5)
  # Each feature's gradient with respect to x has norm at most 1 (the raw coordinates': 1).
  jac = jax.jacobian(lambda p: disc.fourier_features(p[None])[0])(jnp.asarray(x[0]))
  norms = np.linalg.norm(np.asarray(jac), axis=1)
  assert norms.max() <= 1 + 1e-5 and norms[2:].max() > 0.5
  # Off (0), the discriminator is the plain MLP on x.
  plain = models.MLPDiscriminator(hidden=16, depth=2)
  assert np.asarray(plain.init(KEY, jnp.asarray(x))['params']['Linear_0']['kernel']).shape == (2, 16)
  with pytest.raises(UserError, match='model.d_fourier_scale must be a positive number'):
    models.MLPDiscriminator(fourier=4, fourier_scale=0.0)
  with pytest.raises(UserError, match=r'model.d_fourier needs points \[B, D\]'):
    models.MLPDiscriminator(fourier=4).init(KEY, jnp.zeros((1, 4, 4, 1)))


def test_sincos_turns_and_its_derivatives_match_numpy_far_from_zero():
  t = np.random.RandomState(3).normal(0.0, 40.0, (64, 8)).astype(np.float32)
  angle = 2 * np.pi * t.astype(np.float64)
  sin, cos = models.sincos_turns(jnp.asarray(t))
  np.testing.assert_allclose(sin, np.sin(angle), atol=1e-6)
  np.testing.assert_allclose(cos, np.cos(angle), atol=1e-6)
  # First and second derivatives (R1 differentiates D's gradient), through the custom rule.
  d_sin = jax.grad(lambda u: models.sincos_turns(u)[0].sum())
  d_cos = jax.grad(lambda u: models.sincos_turns(u)[1].sum())
  np.testing.assert_allclose(d_sin(jnp.asarray(t)), 2 * np.pi * np.cos(angle), atol=2e-5)
  np.testing.assert_allclose(d_cos(jnp.asarray(t)), -2 * np.pi * np.sin(angle), atol=2e-5)
  dd_sin = jax.grad(lambda u: d_sin(u).sum())(jnp.asarray(t))
  np.testing.assert_allclose(dd_sin, -(2 * np.pi) ** 2 * np.sin(angle), atol=2e-4)


def test_create_models_reads_fourier_keys_and_defaults_them_for_older_configs():
  _, disc = models.create_models(_cfg(name='mlp', d_fourier=8, d_fourier_scale=2.0), (2,))
  assert (disc.fourier, disc.fourier_scale) == (8, 2.0)
  _, old = models.create_models(_cfg(name='mlp'), (2,))  # a config.json written before them
  assert old.fourier == 0


def test_mlp_depth_zero_is_affine_and_depth_is_checked():
  gen = models.MLPGenerator(depth=0)
  z = np.asarray(models.sample_noise(KEY, 3, 2))
  variables = gen.init(KEY, jnp.asarray(z))
  assert list(variables['params']) == ['Dense_0']
  mid = gen.apply(variables, jnp.asarray(0.5 * z[:1] + 0.5 * z[1:2]))
  ends = gen.apply(variables, jnp.asarray(z[:2]))
  np.testing.assert_allclose(mid[0], 0.5 * ends[0] + 0.5 * ends[1], rtol=1e-5, atol=1e-6)
  d_vars = jax.eval_shape(models.MLPDiscriminator(depth=5).init, KEY, jnp.zeros((1, 2)))
  assert len(d_vars['params']) == 6
  with pytest.raises(UserError, match='depth must be an integer in 0..5'):
    models.MLPDiscriminator(depth=6)
  with pytest.raises(UserError, match="unknown model.activation 'gelu'"):
    models.MLPGenerator(activation='gelu')


def test_create_models_rejects_bad_shapes():
  with pytest.raises(UserError, match='image size 48 is not supported'):
    models.create_models(_cfg(), (48, 48, 3))
  with pytest.raises(UserError, match='needs square images'):
    models.create_models(_cfg(), (2,))
  with pytest.raises(UserError, match=r'needs points \(D,\) or images'):
    models.create_models(_cfg(name='mlp'), (28, 28))
  disc = models.DCGANDiscriminator(16, 1, 4)
  with pytest.raises(UserError, match=r'expected \[B, 16, 16, 1\]'):
    disc.init(KEY, jnp.zeros((1, 16, 16, 3)))


def test_bfloat16_compute_keeps_float32_params_and_logits():
  gen, disc = models.create_models(_cfg(dtype='bfloat16'), (8, 8, 1))
  g_vars, _, x, d_vars, _, logits = _run_abstract(gen, disc, (2, 8))
  assert x.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
  assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves((g_vars, d_vars)))
  with pytest.raises(UserError, match="unknown model.dtype 'float8'"):
    models.create_models(_cfg(dtype='float8'), (8, 8, 1))


# ---- noise ---------------------------------------------------------------------------------

def test_sample_noise():
  u = np.asarray(models.sample_noise(KEY, 4000, 2, 'uniform'))
  assert u.shape == (4000, 2) and u.dtype == np.float32
  assert u.min() >= -1.0 and u.max() <= 1.0 and u.min() < -0.99 and u.max() > 0.99
  assert abs(u.mean()) < 0.05 and u.var() == pytest.approx(1 / 3, rel=0.05)  # var of U[-1, 1]
  g = np.asarray(models.sample_noise(KEY, 4000, 1, 'gaussian'))
  assert g.shape == (4000, 1) and abs(g.mean()) < 0.05 and g.std() == pytest.approx(1.0, rel=0.05)
  assert models.sample_noise(KEY, 3, 100, 'gaussian').shape == (3, 100)
  with pytest.raises(UserError, match='gaussian, uniform'):
    models.sample_noise(KEY, 3, 2, 'laplace')
  with pytest.raises(UserError, match='noise_dim must be a positive integer'):
    models.sample_noise(KEY, 3, 0)
