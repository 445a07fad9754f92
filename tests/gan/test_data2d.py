"""2D sources: shapes, statistics that define them, and the points-file reader."""
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


@pytest.mark.parametrize('content,suffix,match', [
    ('1,2,3\n4,5,6\n', '.csv', 'expect .N, 2.'),
    ('a,b\nx,y\n', '.csv', 'cannot read points file'),
    ('0.1,0.2\n', '.csv', 'at least 2'),
    ('1 2\n', '.txt', 'must end in .csv or .npy'),
    (b'\x93NUMPY garbage', '.npy', 'cannot read points file'),
])
def test_malformed_points_files(tmp_path, content, suffix, match):
  path = tmp_path / ('p' + suffix)
  path.write_bytes(content if isinstance(content, bytes) else content.encode())
  with pytest.raises(UserError, match=match):
    data2d.get_source('points', str(path))


def test_unknown_distribution_and_missing_file():
  with pytest.raises(UserError, match='unknown 2D distribution'):
    data2d.get_source('spiral')
  with pytest.raises(UserError, match='not found'):
    data2d.get_source('points', '/nonexistent/p.csv')
