"""GAN evaluation: the digits feature net, cached reference statistics, the conditional quick
config end to end with in-run metrics, launch.evaluate on its workdir, and one-line errors."""
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image

import launch.evaluate
from common import cli
from common.metrics import fid as fid_lib
from common.config import load_config
from common.writers import read_metrics
from gan import evaluation, feature_net, train
from gan.images import digits_arrays

SPEC = 'gan/configs/cgan_digits.py:quick'


@pytest.fixture(autouse=True)
def _shared_cache(tmp_path_factory, monkeypatch):
  # The directory test_conditional uses too, so the digits feature net trains once per run.
  monkeypatch.setenv('ADVCNN_CACHE', str(tmp_path_factory.getbasetemp() / 'advcnn-cache'))


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
  """(workdir, summary) of the conditional quick config, run once for the tests below."""
  with pytest.MonkeyPatch.context() as mp:
    mp.setenv('ADVCNN_CACHE', str(tmp_path_factory.getbasetemp() / 'advcnn-cache'))
    wd = str(tmp_path_factory.mktemp('quick') / 'run')
    summary = train.train_and_evaluate(load_config(SPEC), wd)
  return wd, summary


def _digits_config():
  return load_config('gan/configs/dcgan_digits.py:quick')


def test_digits_net_is_accurate_cached_and_deterministic():
  net = feature_net.digits_net()
  assert net.held_out_accuracy >= 0.97
  mtime = os.path.getmtime(net.path)
  again = feature_net.digits_net()
  assert os.path.getmtime(net.path) == mtime and again.held_out_accuracy == net.held_out_accuracy
  # The held-out split is disjoint from the train split and holds 30% of every class.
  train_idx, test_idx = feature_net.digits_split()
  _, y = digits_arrays()
  assert not set(train_idx) & set(test_idx) and len(train_idx) + len(test_idx) == len(y)
  for c in range(10):
    assert abs(np.mean(y[test_idx] == c) - np.mean(y == c)) < 0.01


def test_real_vs_real_fid_is_small_against_a_clearly_different_set():
  config = _digits_config()
  net = evaluation.create_feature_net(config)
  floor = evaluation.real_vs_real(config, net, kid_subsets=5)
  x, y = digits_arrays()
  half = np.random.default_rng(0).permutation(len(x))[:len(x) // 2]
  # Independent computation: pytorch-fid's formula on the features of both sets.
  ones = x[y == 1]  # one class only: a clearly different distribution
  feats_a, feats_ones = net.apply(x[half])[0], net.apply(np.concatenate([ones] * 5))[0]
  different = fid_lib.frechet_distance(*fid_lib.compute_stats(feats_a),
                                       *fid_lib.compute_stats(feats_ones))
  assert floor['fid_digits'] < 10 and different > 20 * floor['fid_digits']
  assert floor['precision_digits'] > 0.8 and floor['recall_digits'] > 0.8


def test_reference_stats_are_cached_and_refused_for_another_network(tmp_path, monkeypatch):
  config = _digits_config()
  net = evaluation.create_feature_net(config)
  first = evaluation.reference_stats(config, net)
  stats_path, feats_path = evaluation.reference_paths('digits', 'all', net.name)
  mtime = os.path.getmtime(stats_path)
  monkeypatch.setattr(evaluation, '_compute_reference',
                      lambda *a: pytest.fail('recomputed cached reference statistics'))
  second = evaluation.reference_stats(config, net)
  assert os.path.getmtime(stats_path) == mtime
  np.testing.assert_array_equal(first.sigma, second.sigma)
  assert evaluation.reference_features(config, net).shape == (1797, net.dim)
  # The statistics are those of the real digits' features, computed independently here.
  mu, sigma = fid_lib.compute_stats(net.apply(digits_arrays()[0])[0])
  np.testing.assert_allclose(first.mu, mu, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(first.sigma, sigma, rtol=1e-4, atol=1e-5)
  # Another network's file, passed by the user or found under this network's key, is refused.
  other = evaluation.FeatureNet('other-net', '_digits', net.dim, net.apply)
  with pytest.raises(evaluation.UserError, match="computed with 'digits-cnn-.*not 'other-net'"):
    evaluation.reference_stats(config, other, path=stats_path)
  mislabelled = evaluation.reference_paths('digits', 'all', 'other-net')[0]
  shutil.copyfile(stats_path, mislabelled)
  with pytest.raises(evaluation.UserError, match="not 'other-net'"):
    evaluation.reference_stats(config, other)


@pytest.mark.slow
def test_conditional_quick_config_end_to_end_with_metrics_and_class_grid(quick_run):
  wd, summary = quick_run
  metric_rows = [r for r in read_metrics(wd) if 'fid_digits' in r]
  assert [r['step'] for r in metric_rows] == [20, 40]  # every eval.fid_every and at the end
  for key in ('fid_digits', 'kid_digits', 'precision_digits', 'recall_digits', 'cas_label_acc',
              'cas', 'cas_real', 'cas_classifier_acc'):
    assert np.isfinite(summary[key]), key
  assert 0 <= summary['cas_label_acc'] <= 1 and summary['cas_classifier_acc'] >= 0.97
  # One row per class (10), grid_size // 10 = 3 columns, 8 px + 1 px padding, x16 scale.
  grid = Image.open(os.path.join(wd, 'images', 'samples.png'))
  assert grid.size == ((3 * 9 + 1) * 16, (10 * 9 + 1) * 16)
  # Every column is one noise vector and every row one class: the 10 images of a column differ.
  pixels = np.asarray(grid.convert('L'))[::16, ::16]  # undo the x16 scale: [91, 28]
  for c in range(3):
    column = {pixels[1 + 9 * r:9 + 9 * r, 1 + 9 * c:9 + 9 * c].tobytes() for r in range(10)}
    assert len(column) == 10


def _evaluate(argv):
  cli.main_guard(lambda: launch.evaluate.main(['launch.evaluate', *argv]))


def test_launch_evaluate_appends_to_metrics_and_merges_summary(quick_run, capsys):
  quick_run, _ = quick_run
  before_rows = read_metrics(quick_run)
  with open(os.path.join(quick_run, 'summary.json')) as f:
    before = json.load(f)
  _evaluate([f'--workdir={quick_run}', '--metrics=fid,pr,is,dc,cas', '--num_samples=100'])
  assert 'step=40' in capsys.readouterr().out
  rows = read_metrics(quick_run)
  assert rows[:-1] == before_rows
  row = rows[-1]
  assert row['step'] == 40 and row['eval_num_samples'] == 100
  for key in ('fid_digits', 'precision_digits', 'recall_digits', 'is_digits', 'cas_label_acc',
              'cas', 'density_digits', 'coverage_digits'):
    assert np.isfinite(row[key]), key
  assert 1 <= row['is_digits'] <= 10
  with open(os.path.join(quick_run, 'summary.json')) as f:
    summary = json.load(f)
  assert summary['fid_digits'] == row['fid_digits'] and summary['eval_step'] == 40
  assert summary['loss_d'] == before['loss_d']  # training's summary is kept
  # Same checkpoint, same samples: a second evaluation repeats the numbers.
  _evaluate([f'--workdir={quick_run}', '--metrics=fid,pr,is,dc,cas', '--num_samples=100'])
  again = read_metrics(quick_run)[-1]
  assert again == row


def _expect_exit_2(capsys, argv, match):
  with pytest.raises(SystemExit) as e:
    _evaluate(argv)
  err = capsys.readouterr().err
  assert e.value.code == 2, err
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  assert match in lines[0], lines[0]


def test_bad_evaluate_input_exits_2(quick_run, tmp_path, capsys):
  quick_run, _ = quick_run
  _expect_exit_2(capsys, [f'--workdir={quick_run}', '--metrics=fid,fvd'],
                 "unknown metric 'fvd'; choose one of: cas, dc, fid, is, kid, pr")
  _expect_exit_2(capsys, [f'--workdir={tmp_path}'], 'has no config.json')
  no_ckpt = tmp_path / 'no_ckpt'
  no_ckpt.mkdir()
  shutil.copyfile(os.path.join(quick_run, 'config.json'), no_ckpt / 'config.json')
  _expect_exit_2(capsys, [f'--workdir={no_ckpt}'], 'has no checkpoints')
  _expect_exit_2(capsys, [f'--workdir={quick_run}', '--metrics=fid', '--num_samples=50'],
                 'a full-rank 64x64 feature covariance (fid) needs 65')
  other = tmp_path / 'other.npz'
  fid_lib.save_stats(str(other), fid_lib.FeatureStats(np.zeros(64), np.eye(64), 'some-other-net'))
  _expect_exit_2(capsys, [f'--workdir={quick_run}', f'--reference_stats={other}'],
                 "computed with 'some-other-net'")
  rows = len(read_metrics(quick_run))
  _expect_exit_2(capsys, [f'--workdir={quick_run}', '--metrics=cas,kid', '--bogus=1'],
                 "Unknown command line flag 'bogus'")
  assert len(read_metrics(quick_run)) == rows  # nothing written by a refused evaluation


def test_in_run_metrics_need_inception_weights_for_tfds_data(tmp_path):
  config = load_config('gan/configs/dcgan_mnist.py:quick', ['eval.metrics=fid'])
  with pytest.raises(evaluation.UserError, match='eval.inception_weights=PATH'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  config = load_config('gan/configs/dcgan_digits.py:quick', ['eval.metrics=fid,psnr'])
  with pytest.raises(evaluation.UserError, match="unknown metric 'psnr'"):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


@pytest.mark.slow
def test_default_style_run_reports_quality_next_to_the_real_vs_real_floor(tmp_path, capsys):
  import launch.gan
  wd = str(tmp_path / 'run')
  launch.gan.main(['launch.gan', '--config=gan/configs/dcgan_digits.py:quick', f'--workdir={wd}',
                   '--config.eval.metrics=fid,pr', '--config.eval.num_samples=200'])
  out = capsys.readouterr().out
  summary = json.load(open(os.path.join(wd, 'summary.json')))
  for key in ('fid_digits', 'precision_digits', 'recall_digits'):
    assert f'floor_{key}' in summary and f'{key} ' in out.splitlines()[-1]
  # The floor is the metric between two halves of the real digits: small FID, high precision.
  assert summary['floor_fid_digits'] < 10 and summary['floor_precision_digits'] > 0.8
  assert out.splitlines()[-1].startswith('quality: fid_digits ')
