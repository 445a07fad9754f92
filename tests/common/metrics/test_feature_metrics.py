"""KID, Inception Score, precision/recall and density/coverage on known and brute-force cases."""
import itertools

import numpy as np
import pytest
from scipy.spatial import distance

from common.metrics import feature_metrics as fm
from common.errors import UserError


def _direct_mmd2(x, y):
  """Unbiased MMD² with k(a, b) = (a·b / d + 1)³, pair by pair."""
  m, d = x.shape
  k = lambda a, b: (a @ b / d + 1) ** 3
  xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2))
  yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(m), 2))
  xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m))
  return xx / (m * (m - 1)) + yy / (m * (m - 1)) - 2 * xy / m ** 2


def test_kid_matches_direct_pairwise_computation():
  rng = np.random.default_rng(0)
  x, y = rng.normal(size=(25, 5)), rng.normal(0.3, 1.2, size=(25, 5))
  # One subset holding every sample: the estimate is the full-set MMD² (order is irrelevant).
  mean, std = fm.kid(x, y, num_subsets=1, subset_size=1000)
  assert mean == pytest.approx(_direct_mmd2(x, y), rel=1e-10)
  assert std == 0.0


def test_kid_near_zero_for_same_distribution_positive_when_shifted():
  rng = np.random.default_rng(1)
  real = rng.normal(size=(300, 16))
  same_mean, same_std = fm.kid(real, real, num_subsets=20, subset_size=100)
  shift_mean, _ = fm.kid(real, real + 1.0, num_subsets=20, subset_size=100)
  assert abs(same_mean) < 0.05
  assert same_std > 0  # different subsets are drawn from the two copies
  assert shift_mean > 1.0
  assert shift_mean > 20 * abs(same_mean)


def test_kid_is_reproducible_with_seed():
  rng = np.random.default_rng(2)
  x, y = rng.normal(size=(60, 4)), rng.normal(size=(50, 4))
  assert fm.kid(x, y, num_subsets=5, subset_size=30, seed=3) == fm.kid(
      x, y, num_subsets=5, subset_size=30, seed=3)


def test_inception_score_of_confident_uniform_predictions_is_num_classes():
  k = 10
  probs = np.eye(k)[np.arange(1000) % k]
  mean, std = fm.inception_score(probs, num_splits=10)
  assert mean == pytest.approx(k, rel=1e-12)
  assert std == pytest.approx(0, abs=1e-12)


def test_inception_score_of_identical_predictions_is_one():
  p = np.random.default_rng(3).dirichlet(np.ones(7))
  mean, _ = fm.inception_score(np.tile(p, (50, 1)), num_splits=5)
  assert mean == pytest.approx(1.0, abs=1e-12)


def test_inception_score_refuses_logits():
  with pytest.raises(UserError, match='softmax'):
    fm.inception_score(np.random.default_rng(4).normal(size=(20, 5)))


def _on_line(xs):
  """1-D points embedded in 2-D, so distances are the hand-computed ones."""
  return np.stack([np.asarray(xs, float), np.zeros(len(xs))], axis=1)


# Hand-made case, k = 1. Real radii are all 1 (nearest neighbours at distance 1). Fake radii:
# 0.5 -> 1.7, 2.2 -> 1.7, 3.9 -> 1.7, 10 -> 6.1.
REAL = _on_line([0, 1, 2, 3, 30, 31])
FAKE = _on_line([0.5, 2.2, 3.9, 10])


def test_precision_recall_hand_made_case():
  precision, recall = fm.precision_recall(REAL, FAKE, k=1)
  assert precision == pytest.approx(3 / 4)  # 10 lies in no real ball
  assert recall == pytest.approx(4 / 6)  # 30 and 31 lie in no fake ball


def test_density_coverage_hand_made_case():
  density, coverage = fm.density_coverage(REAL, FAKE, k=1)
  # Real balls holding each fake: 0.5 in {0, 1}, 2.2 in {2, 3}, 3.9 in {3}, 10 in none.
  assert density == pytest.approx(5 / 4)
  assert coverage == pytest.approx(4 / 6)


def test_identical_sets_are_fully_precise_recalled_covered():
  x = np.random.default_rng(5).normal(size=(80, 8))
  assert fm.precision_recall(x, x) == (1.0, 1.0)
  density, coverage = fm.density_coverage(x, x)
  assert coverage == 1.0
  assert density > 0.5


def test_far_apart_sets_score_zero():
  rng = np.random.default_rng(6)
  real, fake = rng.normal(size=(40, 4)), rng.normal(size=(30, 4)) + 100.0
  assert fm.precision_recall(real, fake) == (0.0, 0.0)
  assert fm.density_coverage(real, fake) == (0.0, 0.0)


def test_blocked_metrics_match_brute_force():
  rng = np.random.default_rng(7)
  real, fake = rng.normal(size=(50, 6)), rng.normal(0.5, 1.0, size=(37, 6))
  k = 3
  d_rr, d_ff = distance.cdist(real, real), distance.cdist(fake, fake)
  d_rf = distance.cdist(real, fake)
  r_real = np.sort(d_rr, axis=1)[:, k]  # column 0 is the point itself
  r_fake = np.sort(d_ff, axis=1)[:, k]
  precision = (d_rf <= r_real[:, None]).any(axis=0).mean()
  recall = (d_rf <= r_fake[None, :]).any(axis=1).mean()
  density = (d_rf < r_real[:, None]).sum(axis=0).mean() / k
  coverage = (d_rf.min(axis=1) < r_real).mean()
  # A block size that leaves a padded last block.
  assert fm.precision_recall(real, fake, k=k, block_size=16) == pytest.approx((precision, recall))
  assert fm.density_coverage(real, fake, k=k, block_size=16) == pytest.approx(
      (density, coverage))


def test_bad_feature_inputs_refused():
  x = np.zeros((10, 4))
  with pytest.raises(UserError, match='same feature network'):
    fm.kid(x, np.zeros((10, 5)))
  with pytest.raises(UserError, match='at least 4'):
    fm.precision_recall(x, np.zeros((3, 4)), k=3)
  bad = x.copy()
  bad[0, 0] = np.inf
  with pytest.raises(UserError, match='NaN or inf'):
    fm.density_coverage(bad, x)
