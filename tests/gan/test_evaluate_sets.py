"""launch.evaluate on any two sets: folders give the numbers the arrays give, .npz images and
statistics (pytorch-fid's untagged files included) round-trip, bad sets are one-line errors."""
import json
import os

import numpy as np
import pytest
from PIL import Image

import launch.evaluate
from common import cli
from common.metrics import feature_metrics as fm
from common.metrics import fid as fid_lib
from gan import evaluate_sets, evaluation, feature_net
from gan.images import digits_arrays


def _uint8_digits():
  x, _ = digits_arrays()
  return np.clip(np.round((x + 1) * 127.5), 0, 255).astype(np.uint8)


def _write_folder(path, pixels):
  os.makedirs(path, exist_ok=True)
  for i, p in enumerate(pixels):
    Image.fromarray(p[..., 0]).save(os.path.join(path, f'{i:04d}.png'))
  return str(path)


@pytest.fixture(scope='module')
def sets(tmp_path_factory):
  """Real: 700 digits; fake: 500 others, blurred by a pixel shift so the sets differ."""
  root = tmp_path_factory.mktemp('sets')
  pixels = _uint8_digits()
  real, fake = pixels[:700], np.roll(pixels[700:1200], 1, axis=2)
  return {'real': real, 'fake': fake, 'real_dir': _write_folder(root / 'real', real),
          'fake_dir': _write_folder(root / 'fake', fake), 'root': root}


def _evaluate(argv, capsys=None):
  cli.main_guard(lambda: launch.evaluate.main(['launch.evaluate', *argv]))


def _float(pixels):
  return pixels.astype(np.float32) / 127.5 - 1.0


def test_two_folders_give_the_fid_of_the_arrays(sets, tmp_path):
  out = tmp_path / 'r.json'
  _evaluate([f'--real={sets["real_dir"]}', f'--fake={sets["fake_dir"]}', '--features=digits',
             f'--out={out}'])  # fid by default
  got = json.loads(out.read_text())
  net = feature_net.digits_net()
  real_f, fake_f = net.features(_float(sets['real'])), net.features(_float(sets['fake']))
  want_fid = fid_lib.frechet_distance(*fid_lib.compute_stats(real_f),
                                      *fid_lib.compute_stats(fake_f))
  assert got['fid_digits'] == pytest.approx(want_fid, rel=1e-9)
  assert got['num_real'] == 700 and got['num_fake'] == 500 and got['fid_digits'] > 1


@pytest.mark.slow
def test_every_metric_of_folders_and_npz_images_matches_the_arrays(sets, tmp_path):
  got = evaluate_sets.evaluate_sets(sets['real_dir'], sets['fake_dir'],
                                    ['fid', 'kid', 'is', 'pr', 'dc'], 'digits')
  net = feature_net.digits_net()
  real_f, fake_f = net.features(_float(sets['real'])), net.features(_float(sets['fake']))
  assert got['kid_digits'] == pytest.approx(fm.kid(real_f, fake_f)[0], rel=1e-9)
  assert (got['precision_digits'], got['recall_digits']) == fm.precision_recall(real_f, fake_f)
  assert (got['density_digits'], got['coverage_digits']) == fm.density_coverage(real_f, fake_f)
  # The same images as an .npz (what launch.sample writes) give the same numbers.
  np.savez(tmp_path / 'fake.npz', images=sets['fake'])
  again = evaluate_sets.evaluate_sets(sets['real_dir'], str(tmp_path / 'fake.npz'),
                                      ['fid', 'kid', 'is', 'pr', 'dc'], 'digits')
  assert again == got


def test_saved_statistics_round_trip(sets, tmp_path):
  stats = str(tmp_path / 'real_stats.npz')
  direct = evaluate_sets.evaluate_sets(sets['real_dir'], sets['fake_dir'], ['fid'], 'digits',
                                       save_stats=stats)
  with np.load(stats) as f:  # how pytorch-fid reads a statistics file
    mu, sigma = f['mu'][:], f['sigma'][:]
  net = feature_net.digits_net()
  want_mu, want_sigma = fid_lib.compute_stats(net.features(_float(sets['real'])))
  np.testing.assert_array_equal(mu, want_mu)
  np.testing.assert_array_equal(sigma, want_sigma)
  from_stats = evaluate_sets.evaluate_sets(stats, sets['fake_dir'], ['fid'], 'digits')
  assert from_stats['fid_digits'] == direct['fid_digits'] and from_stats['num_real'] == 700


def _untagged_inception(monkeypatch):
  """The digits CNN passed off as the InceptionV3 (what untagged files are assumed to hold), so
  the untagged path runs without the 299 px network."""
  from common.metrics import inception
  digits = evaluation.feature_net_by_name('digits')
  fake_net = evaluation.FeatureNet(inception.FEATURE_NET, '', digits.dim, digits.apply)
  monkeypatch.setattr(evaluation, 'feature_net_by_name', lambda name, weights='': fake_net)
  return fake_net


def test_untagged_pytorch_fid_statistics_are_accepted_for_inception_only(sets, tmp_path,
                                                                         monkeypatch):
  net = feature_net.digits_net()
  mu, sigma = fid_lib.compute_stats(net.features(_float(sets['real'])))
  path = str(tmp_path / 'pytorch_fid.npz')
  np.savez_compressed(path, mu=mu, sigma=sigma)  # exactly what pytorch-fid --save-stats writes
  with pytest.raises(evaluate_sets.UserError, match='untagged statistics of dimension 64'):
    evaluate_sets.evaluate_sets(path, sets['fake_dir'], ['fid'], 'digits')
  _untagged_inception(monkeypatch)
  got = evaluate_sets.evaluate_sets(path, sets['fake_dir'], ['fid'], 'inception')
  want = evaluate_sets.evaluate_sets(sets['real_dir'], sets['fake_dir'], ['fid'], 'inception')
  assert got['fid'] == pytest.approx(want['fid'], rel=1e-9)


def _expect_exit_2(capsys, argv, match):
  capsys.readouterr()
  with pytest.raises(SystemExit) as e:
    _evaluate(argv)
  err = capsys.readouterr().err.strip().splitlines()
  assert e.value.code == 2 and len(err) == 1 and match in err[0], err


def test_bad_sets_are_one_line_errors(sets, tmp_path, capsys):
  real, fake = f'--real={sets["real_dir"]}', f'--fake={sets["fake_dir"]}'
  stats = str(tmp_path / 's.npz')
  fid_lib.save_stats(stats, fid_lib.FeatureStats(np.zeros(3), np.eye(3), 'other-net'))
  mixed = tmp_path / 'mixed'
  _write_folder(mixed, _uint8_digits()[:3])
  Image.fromarray(np.zeros((9, 8), np.uint8)).save(mixed / 'odd.png')
  np.save(tmp_path / 'x.npy', np.zeros(3))
  np.savez(tmp_path / 'vec.npz', images=np.zeros((4, 5)))
  for argv, match in [
      ([real], 'pass both --real and --fake'),
      ([f'--real={stats}', fake, '--metrics=kid', '--features=digits'], 'kid needs images'),
      ([f'--real={stats}', fake, '--features=digits'], "statistics of 'other-net'"),
      ([real, f'--fake={mixed}', '--features=digits'], f'{mixed}/odd.png is 8x9'),
      ([real, f'--fake={tmp_path}/x.npy'], 'is not a folder or an .npz'),
      ([real, f'--fake={tmp_path}/vec.npz'], 'expected images [N, H, W, C]'),
      ([real, fake, '--metrics=cas'], 'any of fid, kid, is, pr, dc'),
      ([real, fake, '--features=vgg'], "unknown feature network 'vgg'"),
      ([real, fake], 'need the FID InceptionV3 weights'),
      ([real, fake, f'--workdir={tmp_path}'], 'pass one or the other'),
      ([f'--workdir={tmp_path}', '--protocol=standard', '--num_samples=10'], 'drop --num_samples'),
      ([f'--workdir={tmp_path}', '--protocol=paper'], "unknown --protocol 'paper'"),
  ]:
    _expect_exit_2(capsys, argv, match)
  # --image_size squares every image, so the odd one is welcome then.
  got = evaluate_sets.evaluate_sets(sets['real_dir'], str(mixed), ['kid'], 'digits',
                                    image_size=8)
  assert got['num_fake'] == 4


@pytest.mark.slow
def test_standard_protocol_samples_50000_against_the_training_split(tmp_path, capsys):
  from common.config import load_config
  from common.writers import read_metrics
  from gan import train
  wd = str(tmp_path / 'run')
  train.train_and_evaluate(load_config('gan/configs/dcgan_digits.py:quick'), wd)
  _evaluate([f'--workdir={wd}', '--protocol=standard'])
  row = read_metrics(wd)[-1]
  assert row['eval_num_samples'] == 50_000 and row['eval_protocol'] == 'standard'
  assert set(k for k in row if k.startswith('fid')) == {'fid_digits'}
