"""train.edits: mid-run changes that `launch.gan` replays, checked values, and the lab session
whose exported config replays bitwise (CPU)."""
import jax
import ml_collections
import numpy as np
import pytest

from common.config import load_config
from common.errors import UserError
from gan import edits
from gan.lab.session import Session, lab_config
from gan.train import train_and_evaluate, validate_edits

TINY = ['model.depth=1', 'model.hidden=8', 'data.batch_size=16', 'train.rounds_per_call=8',
        'train.log_every=4', 'train.eval_every=0', 'train.checkpoint_every=0',
        'eval.num_samples=200', 'eval.plots=False']


def tiny(*overrides):
  return load_config('gan/configs/toy2d.py:line,quick', TINY + list(overrides))


def with_edits(config, items):
  config.train.edits = [list(e) for e in items]
  return config


@pytest.mark.parametrize('items,message', [
    ([[3, 'model.depth', 2]], 'cannot change mid-run'),
    ([[3, 'seed', 1]], 'cannot change mid-run'),
    ([[3, 'optim.d_lr', 'fast']], 'takes a float'),
    ([[3, 'train.n_d', 1.5]], 'takes an integer'),
    ([[5, 'optim.d_lr', 1e-4], [2, 'optim.g_lr', 1e-4]], 'round order'),
    ([[-1, 'optim.d_lr', 1e-4]], 'integer >= 0'),
    ([[1, 'optim.d_lr']], 'triples'),
    ([[1, 'loss.name', 'nope']], 'unknown loss'),
    ([[1, 'optim.d_lr', -1.0]], 'must be positive'),
    ([[1, 'train.n_d', 0], [1, 'train.n_g', 0]], 'not both 0'),
    ([[1, 'data.name', 'points'], [1, 'data.path', '/no/such/file.csv']], 'not found'),
])
def test_bad_edits_are_one_line_errors(items, message):
  with pytest.raises(UserError, match=message) as e:
    validate_edits(with_edits(tiny(), items))
  assert '\n' not in str(e.value)


def test_only_runtime_values_compile_alike():
  a = tiny()
  assert edits.compiled_alike(a, edits.apply(a, [('optim.d_lr', 5e-4), ('optim.g_lr', 2e-3)]))
  assert not edits.compiled_alike(a, edits.apply(a, [('loss.name', 'lsgan')]))
  assert not edits.compiled_alike(a, edits.apply(a, [('loss.gp_weight', 1.0)]))  # turns GP on
  on = edits.apply(a, [('loss.gp_weight', 1.0)])
  assert edits.compiled_alike(on, edits.apply(on, [('loss.gp_weight', 5.0)]))


def _host(tree):
  return jax.tree.map(np.asarray, tree)


def assert_bitwise(a, b):
  la, lb = jax.tree.leaves_with_path(_host(a)), jax.tree.leaves_with_path(_host(b))
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (path, x), (_, y) in zip(la, lb):
    assert x.dtype == y.dtype and np.array_equal(x, y), jax.tree_util.keystr(path)


def test_a_session_trains_in_slices_stops_when_asked_and_matches_one_chunk(tmp_path):
  """The lab's play loop: `train(stop=...)` runs slices of `lab_slice` rounds in a scan of that
  length and stops after the slice in which stop() turns true; the state is bitwise that of the
  same rounds in one chunk."""
  base, _ = lab_config(tiny())
  session = Session(base, str(tmp_path / 'session'))
  start = _host(session.state)
  session.steps.lab_slice = 3
  asked = []
  session.train(50, stop=lambda: asked.append(session.round) or len(asked) == 2)
  assert asked == [3, 6] and session.round == 6
  sliced = _host(session.state)
  session.state = jax.tree.map(jax.numpy.asarray, start)
  session.train(6)  # one chunk
  assert_bitwise(sliced, session.state)


def test_the_lab_sets_d_fourier_features_as_a_new_session_and_reads_older_configs(tmp_path):
  """D's Fourier features change its shape: setting them starts a new session whose D's first
  layer sees x and 2 x 16 features; a config saved before the option opens without them."""
  from gan.lab.controller import Lab
  published = []
  lab = Lab(tiny('model.d_fourier=0'), str(tmp_path / 'lab'), published.append)
  assert lab.session.state['d']['params']['Linear_0']['kernel'].shape == (2, 8)
  lab._set('model.d_fourier', 16)
  assert lab.session.round == 0 and lab.session.base.model.d_fourier == 16
  assert lab.session.state['d']['params']['Linear_0']['kernel'].shape == (2 + 2 * 16, 8)
  assert lab.settings()['model.d_fourier'] == 16
  assert any('starts at round 0' in m.get('message', '') for m in published if isinstance(m, dict))
  old = tiny().to_dict()
  del old['model']['d_fourier'], old['model']['d_fourier_scale']
  base, _ = lab_config(ml_collections.ConfigDict(old))
  assert (base.model.d_fourier, base.model.d_fourier_scale) == (0, 8.0)


@pytest.mark.slow
def test_a_session_with_live_edits_replays_bitwise(tmp_path):
  """Chunks of any length, a learning-rate change (no recompilation), a D-only round and a
  G-only round: `train_and_evaluate` on the exported config ends on the session's state."""
  base, _ = lab_config(tiny())
  session = Session(base, str(tmp_path / 'session'))
  session.train(3)
  session.edit([('optim.d_lr', 3e-3)])
  before = _host(session.state)
  session.train_player('d')  # D only: G, its optimiser and the EMA stay bitwise as they were
  after = _host(session.state)
  for key in ('g', 'g_opt', 'ema'):
    assert_bitwise(before[key], after[key])
  assert not np.array_equal(before['d']['params']['Dense_0']['kernel'] if 'Dense_0' in
                            before['d']['params'] else jax.tree.leaves(before['d'])[0],
                            jax.tree.leaves(after['d'])[0])
  session.train(5)
  session.train_player('g')
  session.train(2)
  assert session.round == 12
  config = session.export_config()
  assert config.train.steps == 12 and len(config.train.edits) >= 5
  _, replayed = train_and_evaluate(config, str(tmp_path / 'replay'), return_state=True)
  assert_bitwise(replayed, session.state)


@pytest.mark.slow
def test_saved_session_resumes_reopens_and_replays_with_a_new_loss(tmp_path):
  """A loss change (recompiled), an optimiser change (state restarted), a drawn distribution:
  the saved workdir resumes as finished, reopens at its round, and replays bitwise."""
  base, _ = lab_config(tiny())
  session = Session(base, str(tmp_path / 'session'))
  session.train(4)
  session.edit([('loss.name', 'lsgan')])
  session.train(3)
  notices = session.edit([('optim.g_name', 'sgd')])
  assert any('generator' in n for n in notices)
  session.train(2)
  pts = tmp_path / 'session' / 'points'
  pts.mkdir(parents=True)
  np.savetxt(pts / 'drawn.csv', np.random.default_rng(0).uniform(0.2, 0.4, (50, 2)),
             delimiter=',')
  session.edit([('data.name', 'points'), ('data.path', str(pts / 'drawn.csv'))])
  session.train(5)
  workdir = session.save()
  from common.config import load_config as load
  exported = load(f'{workdir}/lab_config.py')
  summary = train_and_evaluate(exported, workdir)  # resumes: already at its last round
  assert summary['step'] == 14
  _, replayed = train_and_evaluate(exported, str(tmp_path / 'replay'), return_state=True)
  assert_bitwise(replayed, session.state)
  reopened = Session.open(workdir)
  assert reopened.round == 14 and reopened.edits == session.edits
  assert_bitwise(reopened.state, session.state)
