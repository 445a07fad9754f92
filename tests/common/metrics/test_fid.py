"""Fréchet distance against closed forms and scipy; streamed statistics against np.cov."""
import numpy as np
import pytest
from scipy import linalg

from common.metrics import fid
from common.errors import UserError


def _random_cov(rng, d):
  a = rng.normal(size=(d, 3 * d))
  return a @ a.T / (3 * d) + 0.1 * np.eye(d)


def test_diagonal_covariances_match_closed_form():
  rng = np.random.default_rng(0)
  d = 32
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  a, b = rng.uniform(0.1, 3, size=d), rng.uniform(0.1, 3, size=d)
  expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = fid.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  assert got == pytest.approx(expected, rel=1e-6)


def test_full_covariances_match_direct_scipy_and_eigen_forms():
  rng = np.random.default_rng(1)
  d = 24
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
  got = fid.frechet_distance(mu1, s1, mu2, s2)

  # pytorch-fid's formula written out with scipy.
  covmean = linalg.sqrtm(s1 @ s2).real
  direct = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  assert got == pytest.approx(direct, rel=1e-8)

  # Tr √(Σ1Σ2) = Σ √λ(√Σ1 Σ2 √Σ1), a symmetric eigenproblem: no sqrtm involved.
  w, v = linalg.eigh(s1)
  root1 = (v * np.sqrt(w)) @ v.T
  tr_sqrt = np.sum(np.sqrt(linalg.eigvalsh(root1 @ s2 @ root1)))
  eigen = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * tr_sqrt
  assert got == pytest.approx(eigen, rel=1e-8)


def test_identical_statistics_give_zero():
  rng = np.random.default_rng(2)
  s = _random_cov(rng, 16)
  mu = rng.normal(size=16)
  assert abs(fid.frechet_distance(mu, s, mu, s)) < 1e-8


def test_non_finite_sqrt_retries_with_offset(monkeypatch):
  rng = np.random.default_rng(3)
  d, eps = 8, 1e-6
  mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
  s1, s2 = _random_cov(rng, d), _random_cov(rng, d)
  real_sqrtm = linalg.sqrtm
  calls = []

  def flaky_sqrtm(m):
    calls.append(m)
    if len(calls) == 1:  # as scipy does for a singular product
      return np.full_like(m, np.nan)
    return real_sqrtm(m)

  monkeypatch.setattr(fid.linalg, 'sqrtm', flaky_sqrtm)
  got = fid.frechet_distance(mu1, s1, mu2, s2, eps=eps)
  off = eps * np.eye(d)
  np.testing.assert_allclose(calls[1], (s1 + off) @ (s2 + off), rtol=1e-12)
  covmean = real_sqrtm((s1 + off) @ (s2 + off)).real
  expected = (mu1 - mu2) @ (mu1 - mu2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean)
  assert got == pytest.approx(expected, rel=1e-10)


def test_non_psd_covariance_raises_naming_imaginary_component():
  mu = np.zeros(2)
  with pytest.raises(UserError, match='imaginary component'):
    fid.frechet_distance(mu, np.diag([1.0, -1.0]), mu, np.eye(2))


def test_mismatched_dims_raise():
  with pytest.raises(UserError, match='do not match'):
    fid.frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))


def test_streamed_stats_equal_numpy_on_concatenation():
  rng = np.random.default_rng(4)
  # A large offset makes raw sums of outer products cancel; the merge must not.
  batches = [1000 + rng.normal(size=(n, 6)).astype(np.float32) for n in (5, 17, 1, 30)]
  acc = fid.StatsAccumulator()
  for b in batches:
    acc.update(b)
  mu, sigma = acc.result()
  allf = np.concatenate(batches).astype(np.float64)
  assert acc.count == len(allf)
  np.testing.assert_allclose(mu, allf.mean(axis=0), rtol=1e-12)
  np.testing.assert_allclose(sigma, np.cov(allf, rowvar=False), rtol=1e-9, atol=1e-12)
  assert mu.dtype == sigma.dtype == np.float64


def test_too_few_samples_for_full_rank_refused():
  acc = fid.StatsAccumulator()
  acc.update(np.random.default_rng(5).normal(size=(8, 8)))
  with pytest.raises(UserError, match='at least 9 samples'):
    acc.result()


def test_nan_features_refused():
  x = np.ones((10, 3))
  x[4, 1] = np.nan
  with pytest.raises(UserError, match='NaN'):
    fid.StatsAccumulator().update(x)


def test_npz_round_trip_and_feature_net_check(tmp_path):
  rng = np.random.default_rng(6)
  mu, sigma = fid.compute_stats(rng.normal(size=(20, 4)))
  stats = fid.FeatureStats(mu, sigma, feature_net='netA', dataset='cifar10', split='train',
                           num_samples=20)
  path = str(tmp_path / 'ref.npz')
  fid.save_stats(path, stats)
  back = fid.load_stats(path, expected_feature_net='netA')
  np.testing.assert_array_equal(back.mu, mu)
  np.testing.assert_array_equal(back.sigma, sigma)
  assert (back.feature_net, back.dataset, back.split, back.num_samples) == (
      'netA', 'cifar10', 'train', 20)
  with pytest.raises(UserError, match="'netA', not 'netB'"):
    fid.load_stats(path, expected_feature_net='netB')


def test_stats_without_metadata_need_explicit_acceptance(tmp_path):
  path = str(tmp_path / 'pytorch_fid_style.npz')
  np.savez(path, mu=np.zeros(3), sigma=np.eye(3))
  with pytest.raises(UserError, match='does not record'):
    fid.load_stats(path, expected_feature_net='netA')
  assert fid.load_stats(path).feature_net is None


def test_corrupt_stats_file_refused(tmp_path):
  path = tmp_path / 'bad.npz'
  path.write_bytes(b'not an npz')
  with pytest.raises(UserError, match='cannot read'):
    fid.load_stats(str(path))
