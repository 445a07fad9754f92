"""GAN Lab pictures: a labelled colour bar, a visible mid-tone at D = 0.5, and enough dpi."""
import colorsys

import numpy as np
import pytest
from PIL import Image

from gan import plots


def _figure(path, d_prob, monkeypatch):
  figures = []
  monkeypatch.setattr(plots.plt, 'close', figures.append)  # keep the figure to inspect it
  rng = np.random.default_rng(0)
  real, fake = rng.uniform(0.4, 0.6, (50, 2)), rng.uniform(0.4, 0.6, (50, 2))
  manifold = np.stack(np.meshgrid(np.linspace(0.4, 0.6, 5), np.linspace(0.4, 0.6, 5)), -1)
  history = [{'step': 1, 'loss_d': 1.4, 'loss_g': 0.7}, {'step': 2, 'loss_d': 1.3, 'loss_g': 0.8}]
  plots.plot_2d(str(path), real=real, fake=fake, d_prob=d_prob, bounds=(0, 1, 0, 1),
                manifold=manifold, arrows=rng.normal(size=(20, 2)), history=history, step=2)
  return figures[0]


def test_heatmap_has_a_labelled_colour_bar_and_150_dpi(tmp_path, monkeypatch):
  path = tmp_path / 'images' / 'step.png'
  fig = _figure(path, np.full((20, 20), 0.5), monkeypatch)
  labels = [ax.get_ylabel() for ax in fig.axes]
  assert 'D(x) = P(real)' in labels
  image = Image.open(path)
  assert min(image.info['dpi']) == pytest.approx(150, abs=1)
  # At equilibrium the heatmap is the colour map's middle: a mid grey, not near-white.
  pixels = np.asarray(image.convert('RGB')).reshape(-1, 3).astype(int)
  middle = np.round(np.asarray(plots.D_CMAP(0.5)[:3]) * 255)
  assert np.mean(np.abs(pixels - middle).max(1) <= 3) > 0.1
  assert 100 <= middle.mean() <= 190


def test_colour_map_diverges_from_a_mid_tone_at_one_half():
  lightness = lambda x: colorsys.rgb_to_hls(*plots.D_CMAP(x)[:3])[1]
  hue = lambda x: colorsys.rgb_to_hls(*plots.D_CMAP(x)[:3])[0]
  assert 0.4 <= lightness(0.5) <= 0.75  # visible on white, samples readable on it
  assert abs(hue(0.0) - hue(1.0)) > 0.2  # fake and real ends differ in hue
  assert colorsys.rgb_to_hls(*plots.D_CMAP(0.5)[:3])[2] < 0.05  # the middle is neutral grey


def test_loss_curves_are_saved_at_150_dpi(tmp_path):
  path = tmp_path / 'losses.png'
  plots.save_loss_curves(str(path), [{'step': 1, 'loss_d': 1.0, 'loss_g': 2.0}])
  assert min(Image.open(path).info['dpi']) == pytest.approx(150, abs=1)
