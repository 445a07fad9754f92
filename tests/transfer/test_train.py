"""Transfer training end to end: cached features, resume, the embedded ablation, bad input."""
import csv
import dataclasses
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import launch.transfer
from common import cli, rng
from common.config import load_config
from common.writers import read_metrics
from transfer import convert, data as data_lib, features, loop, preprocess, resnet, steps, weights

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DIGITS = 'transfer/configs/digits.py'
ABLATION_MODES = ('scratch', 'feature_extraction', 'fine_tune', 'two_phase', 'linear_probe')


def _random_variables(config, num_classes=5):
  model = resnet.create_model(config.model.arch, num_classes, config.model.style)
  key = rng.stream(rng.root_key(0), 'init')
  return model, jax.device_get(weights.init_variables(model, config, '', key))


@pytest.mark.slow
def test_cached_features_equal_on_the_fly_features(tmp_path):
  config = load_config(f'{DIGITS}:feature_extraction,quick', ['data.test_limit=60'])
  data = data_lib.load_data(config.data, seed=0)
  model, variables = _random_variables(config)
  args = (str(tmp_path), 'key', model, variables, 'torchvision', data.test, 50)
  cached, labels = features.cached_features(*args)
  assert os.path.exists(tmp_path / 'key.npz')
  again, _ = features.cached_features(*args)  # read back from the npz
  assert np.array_equal(cached, again)

  records = data_lib.read_all(data.test)
  backbone = resnet.create_model('resnet18', None, include_top=False)
  params = {k: v for k, v in variables['params'].items() if k != 'head'}
  direct = backbone.apply({'params': params, 'batch_stats': variables['batch_stats']},
                          preprocess(records['image'], 'torchvision'))
  assert cached.shape == (60, 512) and np.array_equal(labels, records['label'])
  np.testing.assert_allclose(cached, np.asarray(direct), rtol=1e-5, atol=1e-5)
  # The head on cached features gives the full model's logits.
  logits = model.apply(variables, preprocess(records['image'], 'torchvision'))
  np.testing.assert_allclose(features.head_logits(variables['params']['head'], cached),
                             logits, rtol=1e-4, atol=1e-4)


def _leaves(workdir):
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  step = max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  state = ocp.StandardCheckpointer().restore(os.path.join(ckpt_dir, str(step), 'state'))
  leaves = jax.tree_util.tree_flatten_with_path(state)[0]
  return step, {jax.tree_util.keystr(path): np.asarray(v) for path, v in leaves}


@pytest.mark.slow
def test_interrupted_two_phase_run_resumes_bitwise(tmp_path):
  config = load_config(f'{DIGITS}:two_phase,quick', [
      'model.weights=', 'train.head_epochs=2', 'train.epochs=1', 'train.log_every=1',
      'train.checkpoint_every=1', 'train.keep_checkpoints=4', 'data.test_limit=50'])
  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  first, _ = loop.run(config, straight)
  loop.run(config, resumed)
  # Interrupted after step 1 (in the head phase): later checkpoints and the summary are lost.
  for step in (2, 3):
    shutil.rmtree(os.path.join(resumed, 'checkpoints', str(step)))
  os.remove(os.path.join(resumed, 'summary.json'))
  again, _ = loop.run(config, resumed)
  assert again['phases'] == ['head', 'fine_tune']
  step_a, a = _leaves(straight)
  step_b, b = _leaves(resumed)
  assert step_a == step_b == 3 and a.keys() == b.keys()
  # Bitwise on XLA:CPU, and on a GPU with deterministic ops. Without them, XLA:GPU's conv
  # gradients may round differently from one compilation to the next (on an H100: Adam moments
  # one ulp apart after the resumed steps), so there the resumed run is checked to float rounding.
  if jax.default_backend() == 'cpu' or '--xla_gpu_deterministic_ops=true' in os.environ.get(
      'XLA_FLAGS', ''):
    assert again['top1'] == first['top1']
    for k in a:
      assert np.array_equal(a[k], b[k]), k
    assert read_metrics(straight) == read_metrics(resumed)
  else:
    for k in a:
      np.testing.assert_allclose(a[k], b[k], rtol=1e-4, atol=1e-6, err_msg=k)


@pytest.mark.slow
def test_image_steps_run_in_chunks_that_match_single_steps(tmp_path, monkeypatch):
  # 7 image steps, a log row every 5, chunks of 3: a chunk where 3 steps fit before the next
  # boundary (log row or phase end), single steps otherwise (at most two compilations).
  config = load_config(f'{DIGITS}:fine_tune,quick', [
      'model.weights=', 'train.epochs=7', 'train.log_every=5', 'train.checkpoint=False',
      'data.test_limit=50'])
  lengths = []
  phase_fns = steps.phase_fns

  def spy(spec):
    fns = phase_fns(spec)

    def chunk(state, batches, hp):
      lengths.append(batches['label'].shape[0])
      return fns.chunk(state, batches, hp)
    return dataclasses.replace(fns, chunk=chunk)

  monkeypatch.setattr(steps, 'phase_fns', spy)
  results = {}
  for per_call in (1, 3):
    lengths.clear()
    config.train.steps_per_call = per_call
    wd = str(tmp_path / f'per_call{per_call}')
    summary, variables = loop.run(config, wd)
    results[per_call] = (summary, jax.device_get(variables), read_metrics(wd))
    assert lengths == ([1] * 7 if per_call == 1 else [3, 1, 1, 1, 1])
  (s1, v1, m1), (s3, v3, m3) = results[1], results[3]
  assert s1['step'] == s3['step'] == 7
  assert [m['step'] for m in m1] == [m['step'] for m in m3]
  # The same step function inside lax.scan: bitwise equal on XLA:CPU (measured), to float
  # rounding elsewhere.
  if jax.default_backend() == 'cpu':
    for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v3)):
      assert np.array_equal(a, b)
    assert m1 == m3
  else:
    for a, b in zip(jax.tree.leaves(v1), jax.tree.leaves(v3)):
      np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)

@pytest.mark.slow
def test_quick_ablation_runs_end_to_end_via_launch(tmp_path, capsys):
  wd = str(tmp_path / 'ablation')
  launch.transfer.main(['prog', f'--config={DIGITS}:quick', f'--workdir={wd}'])
  out = capsys.readouterr().out
  assert f'results in {wd}' in out
  for name in ('config.json', 'metrics.jsonl', 'summary.json', 'results.md', 'results.csv',
               'images/ablation.png', 'pretrain/weights/metadata.json'):
    assert os.path.exists(os.path.join(wd, name)), name
  with open(os.path.join(wd, 'results.md')) as f:
    table = [l for l in f if l.startswith('| ')]
  assert [l.split('|')[1].strip() for l in table[1:]] == list(ABLATION_MODES)
  with open(os.path.join(wd, 'results.csv')) as f:
    rows = list(csv.DictReader(f))
  assert [r['mode'] for r in rows] == list(ABLATION_MODES)
  assert all(r['n_seeds'] == '2' and 0 <= float(r['top1_mean']) <= 1 for r in rows)
  metrics = read_metrics(wd)
  assert len(metrics) == 2 * len(ABLATION_MODES) and all('top1' in m for m in metrics)
  for mode in ABLATION_MODES[:-1]:
    assert os.path.exists(os.path.join(wd, 'runs', f'{mode}-seed1', 'images', 'confusion.png'))
  # The source model is stored like converted weights, and loads as such.
  variables, meta = convert.load_converted(os.path.join(wd, 'pretrain', 'weights'))
  assert (meta['arch'], meta['style'], meta['num_classes']) == ('resnet18', 'torchvision', 5)
  assert variables['params']['head']['kernel'].shape == (512, 5)
  # Rerunning the command reuses every finished run and gives the same accuracies.
  launch.transfer.main(['prog', f'--config={DIGITS}:quick', f'--workdir={wd}'])
  with open(os.path.join(wd, 'results.csv')) as f:
    again = list(csv.DictReader(f))
  for r in rows + again:
    r.pop('train_seconds_mean')  # the linear probe is refitted and timed again
  assert again == rows


def _three_class_weights(path):
  config = load_config(f'{DIGITS}:fine_tune,quick')
  _, variables = _random_variables(config)
  head = variables['params']['head']
  variables['params']['head'] = {'kernel': head['kernel'][:, :3], 'bias': head['bias'][:3]}
  convert.save_converted(path, variables, {'arch': 'resnet18', 'style': 'torchvision',
                                           'include_top': True, 'num_classes': 3})


def _bad_input_cases(tmp):
  empty = tmp / 'no_classes'
  empty.mkdir()
  hollow = tmp / 'hollow'
  (hollow / 'a').mkdir(parents=True)
  quick = [f'--config={DIGITS}:fine_tune,quick', '--config.model.weights=']
  return {
      'unlabelled': (quick + ["--config.freeze.rules=(('^head/', 'head'), ('^stage', 'backbone'))"],
                     'match no freezing rule'),
      'no_classes': (quick + ['--config.data.name=folder', f'--config.data.path={empty}'],
                     'no class sub-folders'),
      'empty_class': (quick + ['--config.data.name=folder', f'--config.data.path={hollow}'],
                      'has no readable images'),
      'tfds': (['--config=transfer/configs/tf_flowers.py:quick', f'--config.data.data_dir={tmp}'],
               'tfds build tf_flowers'),
      'include_top': ([f'--config={DIGITS}:fine_tune,quick', f'--config.model.weights={tmp}/w3',
                       '--config.model.include_top=True'], '3-class head but the data has 5'),
      'missing_weights': (quick[:1] + [f'--config.model.weights={tmp}/nope'], 'not found'),
      'layer_decay': (quick + ['--config.freeze.layer_decay=1.5'], 'layer_decay in (0, 1]'),
      'steps_per_call': (quick + ['--config.train.steps_per_call=0'],
                         'train.steps_per_call must be at least 1, got 0'),
  }


@pytest.mark.parametrize('case', ['unlabelled', 'no_classes', 'empty_class', 'tfds',
                                  'include_top', 'missing_weights', 'layer_decay',
                                  'steps_per_call'])
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case):
  if case == 'include_top':
    _three_class_weights(tmp_path / 'w3')
  args, message = _bad_input_cases(tmp_path)[case]
  args = args + [f'--workdir={tmp_path}/run']
  with pytest.raises(SystemExit) as exit_info:
    cli.main_guard(lambda: launch.transfer.main(['prog', *args]))
  err = capsys.readouterr().err
  assert exit_info.value.code == 2
  assert err.startswith('error: ') and err.count('\n') == 1 and message in err, err


def test_cli_unknown_mode_exits_2_with_one_stderr_line(tmp_path):
  proc = subprocess.run(
      [sys.executable, '-m', 'launch.transfer', f'--config={DIGITS}:fine_tune,quick',
       '--config.mode=finetune', f'--workdir={tmp_path}/run'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert proc.returncode == 2
  assert proc.stderr.count('\n') == 1 and "unknown mode 'finetune'" in proc.stderr, proc.stderr
  assert not os.path.exists(tmp_path / 'run')  # refused before anything was written
