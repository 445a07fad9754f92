"""End to end: every config's quick variant, resume after SIGKILL, determinism, bad input."""
import glob
import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

import launch.gan
from common import cli
from common.config import load_config
from common.writers import read_metrics
from gan import train
from gan.data import build_data
from gan.state import build_models, init_state

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOY = 'gan/configs/toy2d.py'
# A toy run short enough for tests, long enough to checkpoint twice mid-way.
RESUME = ['train.steps=600', 'train.rounds_per_call=50', 'model.hidden=32', 'data.batch_size=64', 'train.log_every=50', 'train.eval_every=300',
          'train.checkpoint_every=100', 'eval.plots=False', 'eval.num_samples=500']


def _final_state(workdir):
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  step = max(int(d) for d in os.listdir(ckpt_dir) if d.isdigit())
  path = os.path.join(ckpt_dir, str(step), 'state')
  # Restore onto this process's first device, whatever topology wrote the checkpoint.
  ckptr = ocp.StandardCheckpointer()
  one = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=one),
                        ckptr.metadata(path).item_metadata.tree)
  return step, ckptr.restore(path, target)


def assert_same_finished_run(a: str, b: str, step: int | None = None,
                             timing: tuple[str, ...] = ()) -> None:
  """Both workdirs end (at `step`, when given) with bitwise-equal final states and equal
  metrics.jsonl rows, keys containing any of `timing` aside."""
  (step_a, state_a), (step_b, state_b) = _final_state(a), _final_state(b)
  assert step_a == step_b and step in (None, step_a)
  fa, fb = _flat(state_a), _flat(state_b)
  assert fa.keys() == fb.keys()
  for k in fa:
    assert np.array_equal(fa[k], fb[k]), k
  strip = lambda rows: [{k: v for k, v in r.items() if not any(t in k for t in timing)}
                        for r in rows]
  assert strip(read_metrics(a)) == strip(read_metrics(b))


def _flat(tree, prefix=''):
  if isinstance(tree, dict):
    out = {}
    for k, v in tree.items():
      out.update(_flat(v, f'{prefix}{k}/'))
    return out
  if isinstance(tree, (list, tuple)):
    out = {}
    for i, v in enumerate(tree):
      out.update(_flat(v, f'{prefix}{i}/'))
    return out
  return {prefix: np.asarray(tree)}


def _run_cli(args, **kw):
  return subprocess.run([sys.executable, '-m', 'launch.gan', *args], cwd=REPO, capture_output=True,
                        text=True, timeout=600, **kw)


@pytest.mark.parametrize('spec', [
    'gan/configs/toy2d.py:ring8,quick', 'gan/configs/dcgan_digits.py:quick',
    *(pytest.param(f'gan/configs/toy2d.py:{name},quick', marks=pytest.mark.slow)
      for name in ('grid25', 'ring', 'line', 'gaussians', 'disjoint')),
])
def test_quick_variants_run_end_to_end(tmp_path, spec):
  wd = str(tmp_path / 'run')
  summary = train.train_and_evaluate(load_config(spec), wd)
  for name in ('config.json', 'metrics.jsonl', 'summary.json'):
    assert os.path.exists(os.path.join(wd, name))
  rows = read_metrics(wd)
  assert rows and all('step' in r for r in rows)
  assert np.isfinite(summary['loss_d']) and np.isfinite(summary['loss_g'])
  if 'digits' in spec:
    assert os.path.exists(os.path.join(wd, 'images', 'samples.png'))
    assert os.path.exists(os.path.join(wd, 'images', 'samples.gif'))
  else:
    assert os.path.exists(os.path.join(wd, 'images', 'progress.gif'))
    assert ('modes' in summary) == (spec.split(':')[1].split(',')[0] in ('ring8', 'grid25', 'disjoint'))
    assert 0 <= summary['js'] <= np.log(2) and summary['kl'] >= 0


@pytest.mark.slow
def test_quick_mlp_on_digits_trains(tmp_path):
  # model.name=mlp on images: G's tanh output is reshaped to [B, 8, 8, 1], D flattens it.
  config = load_config('gan/configs/dcgan_digits.py:quick',
                       ['model.name=mlp', 'model.hidden=32', 'model.depth=2',
                        'model.activation=leaky_relu'])
  wd = str(tmp_path / 'run')
  summary = train.train_and_evaluate(config, wd)
  assert summary['step'] == config.train.steps
  assert np.isfinite(summary['loss_d']) and np.isfinite(summary['loss_g'])
  assert os.path.exists(os.path.join(wd, 'images', 'samples.png'))


@pytest.mark.parametrize('spec', ['gan/configs/dcgan_mnist.py:quick',
                                  'gan/configs/dcgan_cifar10.py:quick',
                                  'gan/configs/sngan_cifar10.py:cond,quick',
                                  'gan/configs/sngan_celeba.py:quick',
                                  'gan/configs/sngan_stl10.py:64,quick'])
def test_tfds_configs_ask_for_prepared_data(tmp_path, spec):
  config = load_config(spec, [f'data.data_dir={tmp_path}/tfds'])
  with pytest.raises(train.UserError, match='tfds build'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))


@pytest.mark.slow
def test_toy_run_finds_ring_modes(tmp_path):
  config = load_config(TOY + ':ring8', ['train.steps=1500', 'eval.plots=False',
                                        'train.eval_every=1500', 'train.checkpoint_every=1500'])
  summary = train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert summary['modes'] >= 7 and summary['high_quality'] > 0.5


@pytest.mark.slow
def test_sigkill_then_resume_is_bitwise_equal_to_uninterrupted(tmp_path):
  killed = str(tmp_path / 'killed')
  args = [f'--config={TOY}:ring8', f'--workdir={killed}'] + [f'--config.{o}' for o in RESUME]
  proc = subprocess.Popen([sys.executable, '-m', 'launch.gan', *args], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  deadline = time.time() + 300
  while not os.path.exists(os.path.join(killed, 'checkpoints', '200')):
    assert proc.poll() is None, 'run ended before it could be killed'
    assert time.time() < deadline
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  steps_at_kill = sorted(int(d) for d in os.listdir(os.path.join(killed, 'checkpoints')) if d.isdigit())
  assert steps_at_kill[-1] < 600, 'the run finished before the kill; make it longer'
  resumed = _run_cli(args)
  assert resumed.returncode == 0, resumed.stderr
  straight = str(tmp_path / 'straight')
  train.train_and_evaluate(load_config(TOY + ':ring8', RESUME), straight)
  assert_same_finished_run(killed, straight, 600)


@pytest.mark.slow
def test_same_seed_same_metrics_other_seed_differs(tmp_path):
  base = load_config(TOY + ':grid25,quick', ['eval.plots=False'])
  other = load_config(TOY + ':grid25,quick', ['eval.plots=False', 'seed=1'])
  for name, cfg in (('a', base), ('b', base), ('c', other)):
    train.train_and_evaluate(cfg, str(tmp_path / name))
  a, b, c = (open(tmp_path / n / 'metrics.jsonl').read() for n in 'abc')
  assert a == b and a != c
  sa, sc = _flat(_final_state(str(tmp_path / 'a'))[1]['ema']), _flat(_final_state(str(tmp_path / 'c'))[1]['ema'])
  assert any(not np.array_equal(sa[k], sc[k]) for k in sa)


@pytest.mark.slow
def test_images_run_resumes_data_iterator(tmp_path):
  spec = 'gan/configs/dcgan_digits.py:quick'
  wd = str(tmp_path / 'part')
  train.train_and_evaluate(load_config(spec, ['train.steps=20']), wd)
  # Same config, longer: refused (a workdir belongs to one config) ...
  with pytest.raises(train.UserError, match='different config'):
    train.train_and_evaluate(load_config(spec), wd)
  # ... so emulate an interruption by deleting the final checkpoint of a full run.
  full, cut = str(tmp_path / 'full'), str(tmp_path / 'cut')
  train.train_and_evaluate(load_config(spec), full)
  train.train_and_evaluate(load_config(spec), cut)
  import shutil
  shutil.rmtree(os.path.join(cut, 'checkpoints', '40'))
  os.remove(os.path.join(cut, 'summary.json'))
  train.train_and_evaluate(load_config(spec), cut)
  fa, fb = _flat(_final_state(full)[1]), _flat(_final_state(cut)[1])
  for k in fa:
    assert np.array_equal(fa[k], fb[k]), k


def _tree_digest(path):
  h = hashlib.sha256()
  for f in sorted(glob.glob(os.path.join(path, '**'), recursive=True)):
    if os.path.isfile(f):
      h.update(f.encode())
      h.update(open(f, 'rb').read())
  return h.hexdigest()


def _expect_exit_2(capsys, argv, match):
  capsys.readouterr()  # what earlier runs in this test printed
  with pytest.raises(SystemExit) as e:
    cli.main_guard(lambda: launch.gan.main(['launch.gan', *argv]))
  err = capsys.readouterr().err
  assert e.value.code == 2, err
  # A run stopped mid-way may have printed progress lines (stderr is not a terminal) first.
  lines = [l for l in err.strip().splitlines() if not re.match(r'gan: \d+/\d+ rounds ', l)]
  assert len(lines) == 1 and lines[0].startswith('error: '), err
  assert match in lines[0], lines[0]


@pytest.mark.parametrize('argv,match', [
    (['--config.train.glr=1'], 'unknown config key'),
    (['--config.data.name=spiral'], "unknown dataset 'spiral'; choose one of: celeb_a, cifar10"),
    (['--config.model.name=resnet'], "unknown model.name 'resnet'"),
    (['--config.loss.name=kl'], "unknown loss.name 'kl'"),
    (['--config.optim.g_lr=0'], 'optim.g_lr must be positive'),
    (['--config.optim.d_lr=-1e-3'], 'optim.d_lr must be positive'),
    (['--config.data.batch_size=0'], 'data.batch_size must be positive'),
    (['--config.train.n_d=-1'], 'train.n_d and train.n_g must be >= 0'),
    (['--config.train.n_d=0', '--config.train.n_g=0'], 'not both 0'),
    (['--config.model.d_fourier=-4'], 'model.d_fourier must be'),
    (['--config.model.d_fourier=8', '--config.model.d_fourier_scale=0'],
     'model.d_fourier_scale must be'),
])
def test_bad_toy_input_exits_2(tmp_path, capsys, argv, match):
  _expect_exit_2(capsys, [f'--config={TOY}:ring8,quick', f'--workdir={tmp_path}/w', *argv], match)
  assert not os.path.exists(tmp_path / 'w' / 'checkpoints')


def test_bad_points_files_and_batch_larger_than_data(tmp_path, capsys):
  pts = tmp_path / 'p.csv'
  pts.write_text('0.1,0.2\n0.3,0.4\n0.5,0.5\n')
  base = [f'--config={TOY}:points,quick', f'--workdir={tmp_path}/w', f'--config.data.path={pts}']
  _expect_exit_2(capsys, base, 'larger than the points file')
  bad = tmp_path / 'bad.csv'
  bad.write_text('1;2\n3;4\n')
  _expect_exit_2(capsys, base[:2] + [f'--config.data.path={bad}'],
                 "cannot read points file {!r}: line 2 is not numbers ('3;4')".format(str(bad)))
  nan = tmp_path / 'nan.csv'
  nan.write_text('0.1,0.2\nnan,0.4\n0.5,0.5\n')
  _expect_exit_2(capsys, base[:2] + [f'--config.data.path={nan}'],
                 'has 1 of 3 rows with NaN or inf, at line 2; fix or remove them')
  _expect_exit_2(capsys, base[:2] + ['--config.data.path=missing.npy'], 'not found')
  digits = ['--config=gan/configs/dcgan_digits.py:quick', f'--workdir={tmp_path}/d',
            '--config.data.batch_size=5000']
  _expect_exit_2(capsys, digits, 'larger than the dataset')
  _expect_exit_2(capsys, digits[:2] + ['--config.model.d_fourier=8'],
                 'model.d_fourier=8 applies to the MLP on points; this config trains dcgan on digits')


def test_missing_tfds_dataset_and_unwritable_workdir(tmp_path, capsys):
  _expect_exit_2(capsys, ['--config=gan/configs/dcgan_mnist.py:quick', f'--workdir={tmp_path}/m',
                          f'--config.data.data_dir={tmp_path}/tfds'], 'tfds build mnist')
  (tmp_path / 'file').write_text('x')
  _expect_exit_2(capsys, [f'--config={TOY}:ring8,quick', f'--workdir={tmp_path}/file/sub'],
                 'cannot create workdir')


def test_different_config_refused_and_nothing_lost(tmp_path, capsys):
  wd = str(tmp_path / 'run')
  train.train_and_evaluate(load_config(TOY + ':ring8,quick', ['eval.plots=False']), wd)
  before = _tree_digest(wd)
  _expect_exit_2(capsys, [f'--config={TOY}:ring8,quick', f'--workdir={wd}', '--config.eval.plots=False',
                          '--config.optim.g_lr=0.01'], 'different config')
  assert _tree_digest(wd) == before


@pytest.mark.slow
def test_cli_prints_results_and_errors_without_traceback(tmp_path):
  ok = _run_cli([f'--config={TOY}:disjoint,quick', f'--workdir={tmp_path}/ok'])
  assert ok.returncode == 0, ok.stderr
  assert f'results in {tmp_path}/ok' in ok.stdout and 'js=' in ok.stdout
  # stderr is a pipe, not a terminal: progress comes as plain lines, the last at the end.
  assert re.search(r'^gan: 200/200 rounds \(100%\), [\d.]+ rounds/s, ETA 0s \| .*loss_d=',
                   ok.stderr, re.M), ok.stderr
  bad = _run_cli([f'--config={TOY}:disjoint,quick', f'--workdir={tmp_path}/bad',
                  '--config.train.batch=3'])
  assert bad.returncode == 2
  assert len(bad.stderr.strip().splitlines()) == 1 and 'Traceback' not in bad.stderr


def test_real_divergence_is_stopped_with_a_clear_message(tmp_path):
  config = load_config(TOY + ':ring8,quick', ['optim.g_lr=1e30', 'optim.d_lr=1e30', 'eval.plots=False'])
  with pytest.raises(train.TrainingDiverged, match='became NaN/inf between rounds 0 and 50'):
    train.train_and_evaluate(config, str(tmp_path / 'run'))
  assert not os.path.exists(tmp_path / 'run' / 'checkpoints' / '50')


def test_large_learning_rate_exits_2_as_diverged_and_keeps_the_last_good_checkpoint(
    tmp_path, capsys):
  # Warm-up to a learning rate of 100 kills the MLPs between rounds 100 and 150: the losses stay
  # small, but the generated points no longer overlap the data (JS at ln 2) at rounds 50-150.
  wd = str(tmp_path / 'run')
  _expect_exit_2(capsys, [f'--config={TOY}:ring8,quick', f'--workdir={wd}',
                          '--config.optim.g_lr=100', '--config.optim.d_lr=100',
                          '--config.optim.warmup_steps=20000', '--config.train.eval_every=50',
                          '--config.train.checkpoint_every=50', '--config.eval.plots=False'],
                 'JS divergence stayed at its ln 2 maximum for 3 evaluations')
  summary = json.load(open(os.path.join(wd, 'summary.json')))
  assert summary['diverged'] is True and summary['step'] == 150
  assert sorted(os.listdir(os.path.join(wd, 'checkpoints'))) == ['100', '50']
  step, state = _final_state(wd)  # the last good checkpoint restores
  assert step == 100 and int(state['step']) == 100
  assert all(np.all(np.isfinite(x)) for x in jax.tree.leaves(state['g']))


def test_loss_beyond_the_guard_exits_2_before_any_nan(tmp_path, capsys):
  wd = str(tmp_path / 'run')
  _expect_exit_2(capsys, [f'--config={TOY}:ring8,quick', f'--workdir={wd}', '--config.optim.g_lr=10',
                          '--config.optim.d_lr=10', '--config.eval.plots=False'],
                 'beyond guard.max_abs_loss=100000')
  assert json.load(open(os.path.join(wd, 'summary.json')))['diverged'] is True


def test_chunks_of_any_length_share_one_compilation_and_match_one_chunk():
  """3 + 5 rounds (one compilation, unused slots skipped) equal 8 rounds in one call, bitwise;
  image batches padded past the round count leave the result unchanged too."""
  from common import sharding
  from gan.steps import GanSteps
  config = load_config(TOY + ':ring8,quick', ['train.rounds_per_call=8', 'model.hidden=16',
                                              'data.batch_size=32', 'loss.r1_gamma=0.1',
                                              'loss.r1_every=2'])
  gdata = build_data(config)
  g, d = build_models(config, gdata.shape)
  mesh = sharding.data_mesh()
  results = []
  for split in ((8,), (3, 5)):
    steps = GanSteps(g, d, config, gdata.real_fn, mesh)
    state = init_state(steps, config, jax.random.key(0), gdata.shape, mesh)
    per_round = []
    for k in split:
      state, metrics = steps.train_chunk(state, None, k)
      assert all(v.shape == (k,) for v in metrics.values())
      per_round.append(metrics['loss_d'])
    assert steps._rounds._cache_size() == 1
    assert int(state['step']) == 8
    results.append((_flat(jax.tree.map(np.asarray, state)), np.concatenate(per_round)))
  (one, losses_one), (two, losses_two) = results
  np.testing.assert_array_equal(losses_one, losses_two)
  assert one.keys() == two.keys()
  for k in one:
    np.testing.assert_array_equal(one[k], two[k], err_msg=k)


def test_padded_image_chunks_run_only_their_rounds():
  """An image chunk of 2 rounds padded to 4 with zero batches gives the unpadded result."""
  import jax.numpy as jnp
  from gan.steps import GanSteps
  config = load_config('gan/configs/dcgan_digits.py:quick', ['data.batch_size=8',
                                                            'train.rounds_per_call=4'])
  g, d = build_models(config, (8, 8, 1))
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (2, 1, 8, 8, 8, 1)).astype(np.float32)
  padded = np.concatenate([images, np.zeros_like(images)])
  out = []
  for batches in (images, padded):
    steps = GanSteps(g, d, config, real_fn=lambda _, b: b['image'])
    state = jax.jit(steps.init, static_argnums=1)(jax.random.key(0), (8, 8, 1))
    state, metrics = steps.train_chunk(state, {'image': jnp.asarray(batches)}, 2)
    assert metrics['loss_d'].shape == (2,)
    out.append((_flat(jax.tree.map(np.asarray, state)), metrics['loss_d']))
  np.testing.assert_array_equal(out[0][1], out[1][1])
  for k in out[0][0]:
    np.testing.assert_array_equal(out[0][0][k], out[1][0][k], err_msg=k)


def test_nan_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
  """Poison the third chunk's loss: the run stops, checkpoints 50 and 100 stay and are finite."""
  import jax.numpy as jnp
  from gan.steps import GanSteps
  real_init = GanSteps.__init__
  calls = []

  def patched_init(self, *args, **kwargs):
    real_init(self, *args, **kwargs)
    inner = self.train_chunk

    def chunk(state, batches, k, *rest):
      state, metrics = inner(state, batches, k, *rest)
      calls.append(k)
      if len(calls) == 3:
        metrics = {**metrics, 'loss_g': metrics['loss_g'] * jnp.nan}
      return state, metrics

    self.train_chunk = chunk

  monkeypatch.setattr(GanSteps, '__init__', patched_init)
  config = load_config(TOY + ':ring8,quick', ['train.checkpoint_every=50', 'eval.plots=False'])
  wd = str(tmp_path / 'run')
  with pytest.raises(train.TrainingDiverged, match=r'between rounds 100 and 150; the last good checkpoint \(step 100\)'):
    train.train_and_evaluate(config, wd)
  step, state = _final_state(wd)
  assert step == 100
  assert all(np.isfinite(v).all() for v in _flat(state).values() if v.dtype.kind == 'f')


@pytest.mark.slow
def test_bfloat16_compute_tracks_float32(tmp_path):
  """Mixed precision (bf16 compute, f32 params/optimiser) follows the f32 loss trajectory."""
  runs = {}
  for dtype in ('float32', 'bfloat16'):
    cfg = load_config('gan/configs/dcgan_digits.py:quick', [f'model.dtype={dtype}', 'train.log_every=10'])
    train.train_and_evaluate(cfg, str(tmp_path / dtype))
    runs[dtype] = [r for r in read_metrics(str(tmp_path / dtype)) if 'loss_d' in r]
    state = _flat(_final_state(str(tmp_path / dtype))[1])
    assert all(v.dtype == np.float32 for k, v in state.items() if 'params' in k)
  f32, bf16 = runs['float32'], runs['bfloat16']
  assert [r['step'] for r in f32] == [r['step'] for r in bf16] == [10, 20, 30, 40]
  for a, b in zip(f32, bf16):
    for key in ('loss_d', 'loss_g'):
      assert abs(a[key] - b[key]) <= 0.05 * abs(a[key]) + 0.02, (key, a, b)
  assert any(a['loss_d'] != b['loss_d'] for a, b in zip(f32, bf16))  # bf16 really ran
