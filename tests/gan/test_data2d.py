"""2D sources: shapes, statistics that define them, and the points-file reader."""
import warnings

import jax
import numpy as np
import pytest

from common.errors import UserError
from gan import data2d


@pytest.mark.parametrize('name', sorted(data2d.DISTRIBUTIONS))
def test_every_distribution_samples(name):
  src = data2d.get_source(name)
  x = np.asarray(src.sample(jax.random.key(0), 4000))
  assert x.shape == (4000, 2) and x.dtype == np.float32 and np.isfinite(x).all()
  xmin, xmax, ymin, ymax = src.bounds
  inside = (x[:, 0] > xmin) & (x[:, 0] < xmax) & (x[:, 1] > ymin) & (x[:, 1] < ymax)
  assert inside.mean() > 0.99


def test_ring_is_the_gan_lab_ellipse():
  x = np.asarray(data2d.ring().sample(jax.random.key(1), 20000), np.float64)
  u, v = (x[:, 0] - 0.5) / 0.3, (x[:, 1] - 0.45) / 0.25
  r = np.sqrt(u**2 + v**2)
  assert np.median(r) == pytest.approx(1.0, abs=0.02)
  assert x.mean(0) == pytest.approx([0.5, 0.45], abs=0.01)


def test_mixture_modes_and_sigma():
  src = data2d.grid25()
  x = np.asarray(src.sample(jax.random.key(2), 50000), np.float64)
  d = x[:, None] - src.modes[None]
  nearest = np.argmin((d**2).sum(-1), 1)
  resid = x - src.modes[nearest]
  assert resid.std(0) == pytest.approx([0.05, 0.05], rel=0.03)
  assert np.bincount(nearest, minlength=25).min() > 1700  # all 25 modes used about equally


def test_points_csv_with_header_and_npy(tmp_path):
  pts = np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], np.float32)
  csv = tmp_path / 'p.csv'
  csv.write_text('x,y\n' + '\n'.join(f'{a},{b}' for a, b in pts))
  np.save(tmp_path / 'p.npy', pts)
  for path in (csv, tmp_path / 'p.npy'):
    src = data2d.get_source('points', str(path))
    x = np.asarray(src.sample(jax.random.key(0), 300))
    assert set(map(tuple, x.tolist())) <= set(map(tuple, pts.tolist()))
    assert src.num_points == 3


def test_points_txt_whitespace_or_comma_with_comments(tmp_path):
  path = tmp_path / 'p.txt'
  path.write_text('# exported points\n0.1  0.2\n\n0.3\t0.4  # a comment\n0.5,0.6\n')
  np.testing.assert_array_equal(data2d.load_points(str(path)),
                                np.array([[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]], np.float32))


@pytest.mark.parametrize('content,suffix,match', [
    ('1,2,3\n4,5,6\n', '.csv', r'has 3 values on line 1; expect \[N, 2\]'),
    ('a,b\nx,y\n', '.csv', "cannot read points file .*: line 2 is not numbers \\('x,y'\\)"),
    ('0.1,0.2\n', '.csv', 'has only 1 point; it needs at least 2'),
    ('', '.csv', 'has no points; it needs at least 2'),
    ('# only a comment\n', '.txt', 'has no points'),
    ('1 2\n', '.dat', 'must end in .csv, .txt or .npy'),
    (b'\x93NUMPY garbage', '.npy', 'cannot read points file'),
])
def test_malformed_points_files(tmp_path, content, suffix, match):
  path = tmp_path / ('p' + suffix)
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  with pytest.raises(UserError, match=match) as info:
    data2d.get_source('points', str(path))
  assert '\n' not in str(info.value)


def test_empty_csv_warns_nothing(tmp_path):
  path = tmp_path / 'p.csv'
  path.write_text('')
  with warnings.catch_warnings():
    warnings.simplefilter('error')
    with pytest.raises(UserError, match='has no points'):
      data2d.load_points(str(path))


def test_non_finite_rows_are_refused_by_line_and_row(tmp_path):
  pts = np.random.default_rng(0).random((100, 2))
  pts[41] = np.nan
  csv, npy = tmp_path / 'p.csv', tmp_path / 'p.npy'
  csv.write_text('x,y\n' + '\n'.join(f'{a},{b}' for a, b in pts))
  np.save(npy, pts)
  with pytest.raises(UserError, match=r'has 1 of 100 rows with NaN or inf, at line 43; fix or '):
    data2d.load_points(str(csv))  # line 43: the header is line 1
  with pytest.raises(UserError, match=r'at row 41 \(0-based\)'):
    data2d.load_points(str(npy))
  pts[[3, 7, 20, 21, 50, 90]] = np.inf
  np.save(npy, pts)
  with pytest.raises(UserError, match=r'has 7 of 100 rows .* at rows 3, 7, 20, 21, 41, \.\.\.'):
    data2d.load_points(str(npy))


def test_unknown_distribution_and_missing_file():
  with pytest.raises(UserError, match='unknown 2D distribution'):
    data2d.get_source('spiral')
  with pytest.raises(UserError, match='not found'):
    data2d.get_source('points', '/nonexistent/p.csv')
