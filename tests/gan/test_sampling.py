"""launch.sample: interpolation paths against their formulas, truncated noise, class choice, and
every output of a trained conditional run (folder, .npz, grid, strips, GIFs, chosen step)."""
import os
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from common import cli
from common.errors import UserError
from gan import sampling


def test_lerp_and_slerp_follow_their_formulas():
  rng = np.random.default_rng(0)
  a, b = rng.standard_normal(16), rng.standard_normal(16)
  t = np.linspace(0, 1, 7)
  np.testing.assert_allclose(sampling.lerp(jnp.asarray(a), jnp.asarray(b), jnp.asarray(t)),
                             a[None] + t[:, None] * (b - a)[None], rtol=1e-5, atol=1e-6)
  omega = np.arccos(a @ b / np.linalg.norm(a) / np.linalg.norm(b))
  want = (np.sin((1 - t) * omega)[:, None] * a + np.sin(t * omega)[:, None] * b) / np.sin(omega)
  got = np.asarray(sampling.slerp(jnp.asarray(a), jnp.asarray(b), jnp.asarray(t)))
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(got[[0, -1]], np.stack([a, b]), rtol=1e-4, atol=1e-5)
  # Unit codes stay unit on the arc; the chord through the interior does not.
  ua, ub = a / np.linalg.norm(a), b / np.linalg.norm(b)
  arc = np.linalg.norm(np.asarray(sampling.slerp(jnp.asarray(ua), jnp.asarray(ub),
                                                 jnp.asarray(t))), axis=1)
  np.testing.assert_allclose(arc, 1.0, rtol=1e-5)
  same = np.asarray(sampling.slerp(jnp.asarray(a), jnp.asarray(2 * a), jnp.asarray(t)))
  np.testing.assert_allclose(same, a[None] * (1 + t[:, None]), rtol=1e-5)  # parallel: lerp


def _fake_steps(noise='gaussian', num_classes=0):
  cfg = types.SimpleNamespace(model=types.SimpleNamespace(noise=noise, noise_dim=4))
  return types.SimpleNamespace(cfg=cfg, conditional=num_classes > 0, num_classes=num_classes,
                               noise=lambda key, n: jax.random.normal(key, (n, 4)))


def test_truncated_noise_stays_within_psi():
  z = np.asarray(sampling.noise(_fake_steps(), jax.random.key(0), 2000, psi=0.5))
  assert np.abs(z).max() <= 0.5 and z.std() > 0.2
  u = np.asarray(sampling.noise(_fake_steps('uniform'), jax.random.key(0), 2000, psi=0.3))
  assert np.abs(u).max() <= 0.3
  with pytest.raises(UserError, match='--truncation must be > 0'):
    sampling.noise(_fake_steps('uniform'), jax.random.key(0), 4, psi=2.0)


def test_class_labels():
  steps = _fake_steps(num_classes=10)
  assert list(sampling.class_labels(steps, 5, None)) == [0, 1, 2, 3, 4]
  assert list(sampling.class_labels(steps, 5, [3, 7])) == [3, 7, 3, 7, 3]
  with pytest.raises(UserError, match=r'--classes \[12\] are out of range.*0..9'):
    sampling.class_labels(steps, 5, [1, 12])
  with pytest.raises(UserError, match='--classes needs a conditional run'):
    sampling.class_labels(_fake_steps(), 5, [1])
  assert sampling.parse_classes('1, 5') == [1, 5] and sampling.parse_classes('') is None
  with pytest.raises(UserError, match='--classes takes class indices'):
    sampling.parse_classes('cat')


def _sample(argv):
  import launch.sample
  cli.main_guard(lambda: launch.sample.main(['launch.sample', *argv]))


@pytest.mark.slow
def test_sample_writes_every_output_of_a_conditional_run(tmp_path, capsys):
  from common.config import load_config
  from gan import train
  wd = str(tmp_path / 'run')
  train.train_and_evaluate(load_config('gan/configs/cgan_digits.py:quick',
                                       ['eval.metrics=()']), wd)
  _sample([f'--workdir={wd}', '--num=30', f'--out={tmp_path}/pngs', '--grid=20',
           '--interpolations=3', '--frames=5'])
  pngs = sorted(os.listdir(tmp_path / 'pngs'))
  assert len(pngs) == 30 and pngs[0] == '000000.png'
  assert np.asarray(Image.open(tmp_path / 'pngs' / pngs[0])).shape == (8, 8)
  pictures = os.path.join(wd, 'images', 'sample-40')
  assert sorted(os.listdir(pictures)) == [
      'grid.png', 'interpolation_linear.gif', 'interpolation_linear.png',
      'interpolation_spherical.gif', 'interpolation_spherical.png']
  strip = Image.open(os.path.join(pictures, 'interpolation_linear.png'))
  assert strip.size == (16 * (5 * 9 + 1), 16 * (3 * 9 + 1))  # 5 frames x 3 walks, x16 scale
  gif = Image.open(os.path.join(pictures, 'interpolation_spherical.gif'))
  assert gif.n_frames == 5 + 3  # there and back
  # An .npz of chosen classes, truncated, from the earlier checkpoint.
  _sample([f'--workdir={wd}', '--num=7', f'--out={tmp_path}/s.npz', '--classes=3,5',
           '--truncation=0.7', '--step=20', f'--pictures={tmp_path}/pics'])
  with np.load(tmp_path / 's.npz') as f:
    assert f['images'].shape == (7, 8, 8, 1) and f['images'].dtype == np.uint8
    assert list(f['labels']) == [3, 5, 3, 5, 3, 5, 3]
  assert 'at step 20' in capsys.readouterr().out
  # Bad requests: one line, exit 2.
  for argv, match in [(['--step=30'], 'no checkpoint at step 30; it has 20, 40'),
                      (['--classes=10'], 'out of range'), (['--frames=1'], '--frames at least 2')]:
    with pytest.raises(SystemExit) as e:
      _sample([f'--workdir={wd}', f'--out={tmp_path}/x', *argv])
    assert e.value.code == 2 and match in capsys.readouterr().err
