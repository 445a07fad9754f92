"""2D metrics on hand-made sample sets with known answers."""
import numpy as np
import pytest

from gan import data2d, metrics


def test_samples_exactly_on_three_of_eight_modes():
  src = data2d.ring8()
  samples = np.repeat(src.modes[[0, 3, 5]], 100, axis=0)
  m = metrics.mode_metrics(samples, src.modes, src.sigma)
  assert m['modes'] == 3
  assert m['high_quality'] == 1.0
  # p̂ uniform over 3 of 8 modes: KL(p̂ ‖ U8) = log(8/3)
  assert m['reverse_kl'] == pytest.approx(np.log(8 / 3), rel=1e-12)


def test_all_modes_uniform_has_zero_reverse_kl():
  src = data2d.grid25()
  samples = np.repeat(src.modes, 4, axis=0)
  m = metrics.mode_metrics(samples, src.modes, src.sigma)
  assert m == {'modes': 25, 'high_quality': 1.0, 'reverse_kl': 0.0}


def test_high_quality_uses_three_sigma_per_axis():
  modes = np.array([[0.0, 0.0], [10.0, 0.0]])
  sigma = 0.1
  samples = np.array([[0.29, 0.0],    # inside 3σ on x
                      [0.31, 0.0],    # just outside on x
                      [0.2, 0.29],    # inside on both axes
                      [0.0, -0.31],   # outside on y
                      [9.9, 0.1]])    # near mode 1
  m = metrics.mode_metrics(samples, modes, sigma)
  assert m['high_quality'] == pytest.approx(3 / 5)
  assert m['modes'] == 2
  p = np.array([4 / 5, 1 / 5])
  assert m['reverse_kl'] == pytest.approx(np.sum(p * np.log(p * 2)))


def test_low_quality_samples_do_not_cover_modes():
  src = data2d.ring8()
  samples = np.zeros((50, 2))  # the centre: far from every mode
  m = metrics.mode_metrics(samples, src.modes, src.sigma)
  assert m['modes'] == 0 and m['high_quality'] == 0.0


def test_histogram_divergences_identical_and_disjoint():
  rng = np.random.default_rng(0)
  a = rng.uniform(0, 0.5, size=(5000, 2))
  same = metrics.histogram_divergences(a, a, (0, 1, 0, 1))
  assert same['kl'] == pytest.approx(0, abs=1e-9) and same['js'] == pytest.approx(0, abs=1e-12)
  b = rng.uniform(0.5, 1.0, size=(5000, 2))
  far = metrics.histogram_divergences(a, b, (0, 1, 0, 1))
  assert far['js'] == pytest.approx(np.log(2), rel=1e-9)  # disjoint supports: JS = log 2
  assert far['kl'] > 10


def test_histogram_is_normalised_and_counts_outliers():
  pts = np.array([[0.5, 0.5], [5.0, 5.0], [-3.0, 0.2]])
  h = metrics.histogram(pts, (0, 1, 0, 1), bins=30)
  assert h.shape == (30, 30) and h.sum() == pytest.approx(1.0)
  assert h[29, 29] == pytest.approx(1 / 3) and h[0, 6] == pytest.approx(1 / 3)
