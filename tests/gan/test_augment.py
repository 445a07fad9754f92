"""GAN augmentation: DiffAugment and ADA against NumPy/SciPy re-implementations of the
references on fixed inputs and keys, gradients by finite differences, ADA's p update, and where
the train step applies them."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from scipy import ndimage

from common.errors import UserError
from gan import ada, augment

KEY = jax.random.key(3)


def _images(shape, seed):
  return np.tanh(np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


# ---- DiffAugment ------------------------------------------------------------------------------

def numpy_diffaugment(x_nhwc, draws, policy):
  """The official PyTorch DiffAugment, NCHW index for index, in NumPy with the given draws."""
  x = x_nhwc.transpose(0, 3, 1, 2).astype(np.float64)
  b, _, h, w = x.shape
  for op in policy:
    if op == 'color':
      u = [np.asarray(v)[:, None, None, None] for v in draws['color']]
      x = x + (u[0] - 0.5)
      m = x.mean(axis=1, keepdims=True)
      x = (x - m) * (u[1] * 2) + m
      m = x.mean(axis=(1, 2, 3), keepdims=True)
      x = (x - m) * (u[2] + 0.5) + m
    elif op == 'translation':
      tx, ty = (np.asarray(v)[:, None, None] for v in draws['translation'])
      gb, gx, gy = np.meshgrid(np.arange(b), np.arange(h), np.arange(w), indexing='ij')
      gx = np.clip(gx + tx + 1, 0, h + 1)
      gy = np.clip(gy + ty + 1, 0, w + 1)
      xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
      x = xp.transpose(0, 2, 3, 1)[gb, gx, gy].transpose(0, 3, 1, 2)
    elif op == 'cutout':
      cs = int(h * 0.5 + 0.5), int(w * 0.5 + 0.5)
      ox, oy = (np.asarray(v)[:, None, None] for v in draws['cutout'])
      gb, gx, gy = np.meshgrid(np.arange(b), np.arange(cs[0]), np.arange(cs[1]), indexing='ij')
      gx = np.clip(gx + ox - cs[0] // 2, 0, h - 1)
      gy = np.clip(gy + oy - cs[1] // 2, 0, w - 1)
      mask = np.ones((b, h, w))
      mask[gb, gx, gy] = 0
      x = x * mask[:, None]
  return x.transpose(0, 2, 3, 1)


@pytest.mark.parametrize('shape', [(6, 16, 16, 3), (5, 9, 12, 1)])
@pytest.mark.parametrize('policy', [augment.DIFFAUG_OPS, ('cutout', 'color'), ('translation',)])
def test_diffaugment_matches_the_reference(shape, policy):
  x = _images(shape, 0)
  draws = augment.diffaug_draws(KEY, shape, policy)
  got = np.asarray(jax.jit(augment.diffaug_apply, static_argnums=2)(x, draws, policy))
  np.testing.assert_allclose(got, numpy_diffaugment(x, draws, policy), rtol=1e-5, atol=1e-5)
  assert not np.allclose(got, x)


def test_diffaugment_draw_ranges():
  draws = augment.diffaug_draws(KEY, (4000, 32, 32, 3), augment.DIFFAUG_OPS)
  t, c = np.asarray(draws['translation']), np.asarray(draws['cutout'])
  assert t.min() == -4 and t.max() == 4  # int(32 / 8 + 0.5)
  assert c.min() == 0 and c.max() == 32  # even cutout size 16: offsets in [0, 32]
  u = np.asarray(draws['color'])
  assert u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.02


def test_diffaugment_is_deterministic_per_key():
  x = jnp.asarray(_images((4, 8, 8, 3), 1))
  a = augment.diffaugment(jax.random.key(0), x)
  np.testing.assert_array_equal(a, augment.diffaugment(jax.random.key(0), x))
  assert not np.array_equal(a, augment.diffaugment(jax.random.key(1), x))


def _finite_difference_check(fn, x, seed, n=12, eps=1e-2):
  """fn: x -> scalar. The gradient at n random coordinates against central differences."""
  x = np.asarray(x, np.float32)
  grad = np.asarray(jax.jit(jax.grad(fn))(jnp.asarray(x)))
  assert np.abs(grad).max() > 0
  f = jax.jit(fn)
  rng = np.random.default_rng(seed)
  for flat in rng.choice(x.size, n, replace=False):
    idx = np.unravel_index(flat, x.shape)
    up, down = x.copy(), x.copy()
    up[idx] += eps
    down[idx] -= eps
    fd = (float(f(jnp.asarray(up))) - float(f(jnp.asarray(down)))) / (2 * eps)
    assert fd == pytest.approx(grad[idx], abs=2e-3), idx


def test_diffaugment_gradients_match_finite_differences():
  x = _images((3, 8, 8, 3), 2)
  weights = jnp.asarray(_images((3, 8, 8, 3), 3))
  draws = augment.diffaug_draws(KEY, x.shape, augment.DIFFAUG_OPS)
  fn = lambda x: jnp.sum(weights * augment.diffaug_apply(x, draws, augment.DIFFAUG_OPS))
  _finite_difference_check(fn, x, 4)


# ---- ADA ---------------------------------------------------------------------------------------

def _np_mat(rows):
  return np.array(rows, np.float64)


def numpy_ada(x, raw, p, ops):
  """ADA's augment.py for one image at a time in NumPy/SciPy: inverse geometric matrices composed
  on the right, colour matrices on the left, bilinear resampling with mirrored borders."""
  s = ada.STRENGTH
  r = {op: {k: np.asarray(v, np.float64) for k, v in d.items()} for op, d in raw.items()}
  b, h, w, c = x.shape
  p_rot = 1 - math.sqrt(min(max(1 - p, 0), 1))
  out = np.empty(x.shape, np.float64)
  v = np.array([1, 1, 1, 0]) / math.sqrt(3)
  for n in range(b):
    gate = lambda op, i=0, prob=p: r[op]['gate'][i, n] < prob
    val = lambda op: r[op]['value'][n]
    rot = lambda a: _np_mat([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0],
                             [0, 0, 1]])
    g = np.eye(3)
    if 'xflip' in ops and gate('xflip'):
      g = g @ np.diag([1 / (1 - 2 * math.floor(val('xflip') * 2)), 1, 1])
    if 'rotate90' in ops and gate('rotate90'):
      g = g @ rot(math.pi / 2 * math.floor(val('rotate90') * 4))
    if 'xint' in ops and gate('xint'):
      t = (val('xint') * 2 - 1) * s['xint_max']
      g = g @ _np_mat([[1, 0, -np.round(t[0] * w)], [0, 1, -np.round(t[1] * h)], [0, 0, 1]])
    if 'scale' in ops and gate('scale'):
      k = 2 ** (val('scale') * s['scale_std'])
      g = g @ np.diag([1 / k, 1 / k, 1])
    theta = (val('rotate') * 2 - 1) * math.pi * s['rotate_max'] if 'rotate' in ops else None
    if theta is not None and gate('rotate', 0, p_rot):
      g = g @ rot(theta[0])
    if 'aniso' in ops and gate('aniso'):
      k = 2 ** (val('aniso') * s['aniso_std'])
      g = g @ np.diag([1 / k, k, 1])
    if theta is not None and gate('rotate', 1, p_rot):
      g = g @ rot(theta[1])
    if 'xfrac' in ops and gate('xfrac'):
      t = val('xfrac') * s['xfrac_std']
      g = g @ _np_mat([[1, 0, -t[0] * w], [0, 1, -t[1] * h], [0, 0, 1]])
    img = x[n].astype(np.float64)
    if any(op in ada.GEOMETRIC for op in ops):
      yy, xx = np.meshgrid(np.arange(h) - (h - 1) / 2, np.arange(w) - (w - 1) / 2, indexing='ij')
      src = g @ np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)])
      coords = [src[1].reshape(h, w) + (h - 1) / 2, src[0].reshape(h, w) + (w - 1) / 2]
      img = np.stack([ndimage.map_coordinates(img[..., k], coords, order=1, mode='mirror')
                      for k in range(c)], -1)
    cm = np.eye(4)
    if 'brightness' in ops and gate('brightness'):
      t = np.eye(4)
      t[:3, 3] = val('brightness') * s['brightness_std']
      cm = t @ cm
    if 'contrast' in ops and gate('contrast'):
      k = 2 ** (val('contrast') * s['contrast_std'])
      cm = np.diag([k, k, k, 1]) @ cm
    if 'lumaflip' in ops and gate('lumaflip'):
      cm = (np.eye(4) - 2 * np.outer(v, v) * math.floor(val('lumaflip') * 2)) @ cm
    if 'hue' in ops and c > 1 and gate('hue'):
      a = (val('hue') * 2 - 1) * math.pi * s['hue_max']
      axis = v[:3]
      k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
      rm = np.eye(4)
      rm[:3, :3] = np.eye(3) + math.sin(a) * k + (1 - math.cos(a)) * k @ k  # Rodrigues
      cm = rm @ cm
    if 'saturation' in ops and c > 1 and gate('saturation'):
      k = 2 ** (val('saturation') * s['saturation_std'])
      cm = (np.outer(v, v) + (np.eye(4) - np.outer(v, v)) * k) @ cm
    if c == 3:
      img = img @ cm[:3, :3].T + cm[:3, 3]
    else:
      row = cm[:3].mean(axis=0)
      img = img * row[:3].sum() + row[3]
    out[n] = img
  return out


@pytest.mark.parametrize('shape,p', [((8, 12, 12, 3), 0.5), ((6, 10, 10, 1), 0.7),
                                     ((4, 8, 8, 3), 1.0)])
def test_ada_matches_the_reference(shape, p):
  x = _images(shape, 5)
  ops = ada.OPS
  raw = ada.raw_draws(KEY, shape[0], ops)
  got = np.asarray(jax.jit(ada.augment, static_argnums=3)(KEY, x, p, ops))
  np.testing.assert_allclose(got, numpy_ada(x, raw, p, ops), rtol=1e-4, atol=1e-4)


def test_ada_at_p_zero_is_the_identity_and_groups_expand():
  x = _images((4, 8, 8, 3), 6)
  got = jax.jit(ada.augment, static_argnums=3)(KEY, x, 0.0, ada.OPS)
  np.testing.assert_allclose(np.asarray(got), x, atol=1e-6)
  assert ada.expand(('color', 'xflip')) == ('xflip', *ada.COLOR)


def test_ada_gradients_match_finite_differences():
  x = _images((2, 8, 8, 3), 7)
  weights = jnp.asarray(_images((2, 8, 8, 3), 8))
  fn = lambda x: jnp.sum(weights * ada.augment(KEY, x, 0.8, ada.OPS))
  _finite_difference_check(fn, x, 9)


def test_adjust_p_follows_the_sign_heuristic():
  up = augment.adjust_p(jnp.float32(0.5), jnp.array([1.0, 1.0, 0.0]), 0.6, 320, 10)
  assert float(up) == pytest.approx(0.5 + 320 / 10_000)
  down = augment.adjust_p(jnp.float32(0.001), jnp.array([-1.0, 1.0]), 0.6, 320, 10)
  assert float(down) == 0.0


def _cfg(**kw):
  return ml_collections.ConfigDict(dict(dict(name='diffaug', policy='', p=0.0, ada_target=0.6,
                                             ada_kimg=500.0), **kw))


def test_build_checks_the_config():
  assert augment.build(_cfg(name='none')) is None
  assert not augment.build(_cfg()).adaptive
  assert augment.build(_cfg(name='ada', p=0.2)).adaptive
  assert not augment.build(_cfg(name='ada', ada_target=0.0)).adaptive
  with pytest.raises(UserError, match="unknown augment.name 'mixup'"):
    augment.build(_cfg(name='mixup'))
  with pytest.raises(UserError, match="unknown augment.policy op for diffaug 'flip'"):
    augment.build(_cfg(policy='color,flip'))
  with pytest.raises(UserError, match='augment.p must be in'):
    augment.build(_cfg(name='ada', p=1.5))
  with pytest.raises(UserError, match='names an op twice'):
    augment.build(_cfg(policy='color,color'))


# ---- in the train step ---------------------------------------------------------------------------

def _digits_steps(overrides):
  from common.config import load_config
  from gan.state import build_models
  from gan.steps import GanSteps
  config = load_config('gan/configs/dcgan_digits.py:quick',
                       ['model.features=4', 'data.batch_size=4', *overrides])
  gen, disc = build_models(config, (8, 8, 1))
  return config, GanSteps(gen, disc, config, real_fn=lambda _, b: b['image'])


def _augmented_in_one_round(overrides: list[str], batch_shape: tuple[int, ...]):
  """(shape, p) of every batch the round of the digits steps with `overrides` augments."""
  config, steps = _digits_steps(overrides)
  seen = []

  def recorder(key, x, p):
    seen.append((x.shape, p))
    return steps_augment(key, x, p)

  steps_augment = steps.augment.apply
  steps.augment = steps.augment._replace(apply=recorder)
  state = jax.jit(steps.init, static_argnums=1)(jax.random.key(0), (8, 8, 1))
  jax.eval_shape(steps.round, state, {'image': jnp.asarray(_images(batch_shape, 10))})
  return config, seen


def test_round_augments_real_and_fake_for_d_and_fake_for_g():
  _, seen = _augmented_in_one_round(['augment.name=diffaug', 'train.n_d=2'], (2, 4, 8, 8, 1))
  # Two D steps on [real; fake] (8 images each), then the G step on its 4 fakes.
  assert [s for s, _ in seen] == [(8, 8, 8, 1), (8, 8, 8, 1), (4, 8, 8, 1)]
  assert all(p is None for _, p in seen)


@pytest.mark.slow
@pytest.mark.parametrize('name', ['diffaug', 'ada'])
def test_augmented_digits_runs_are_reproducible(tmp_path, name):
  from common.config import load_config
  from common.writers import read_metrics
  from gan import train
  over = [f'augment.name={name}', 'augment.ada_kimg=1', 'augment.p=0.2', 'train.steps=20',
          'train.log_every=10', 'train.eval_every=20', 'train.checkpoint_every=20']
  rows = []
  for run in ('a', 'b'):
    train.train_and_evaluate(load_config('gan/configs/dcgan_digits.py:quick', over),
                             str(tmp_path / run))
    rows.append([{k: v for k, v in r.items() if 'sec' not in k}
                 for r in read_metrics(str(tmp_path / run))])
  assert rows[0] == rows[1] and len(rows[0]) == 2
  last = rows[0][-1]
  assert all(np.isfinite(v) for v in last.values() if isinstance(v, float))
  if name == 'ada':  # p moved from 0.2 by steps of 64 images / 1000
    assert last['ada_p'] != pytest.approx(0.2) and 0 <= last['ada_p'] <= 1
    assert -1 <= last['ada_rt'] <= 1


def test_augmenting_points_is_refused():
  from common.config import load_config
  from gan import train
  with pytest.raises(UserError, match='augment.name=diffaug augments images'):
    train.validate(load_config('gan/configs/toy2d.py:ring8,quick', ['augment.name=diffaug']))


def test_an_mlp_on_images_sees_augmented_images():
  """The MLP pair trains on image datasets (its G ends in images, its D flattens them), so
  augmentation applies to it as to the convolutional models."""
  from gan import train
  config, seen = _augmented_in_one_round(['augment.name=diffaug', 'model.name=mlp',
                                          'model.hidden=8', 'model.depth=1'], (1, 4, 8, 8, 1))
  train.validate(config)
  # D's [real; fake], then G's fakes.
  assert [s for s, _ in seen] == [(8, 8, 8, 1), (4, 8, 8, 1)]
