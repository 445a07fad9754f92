"""Absurd values never crash: every key of every shipped config (quick variants), given a
negative, zero, huge, NaN, infinite, unknown or wrongly typed value, is refused with one line
(a UserError: exit code 2 from a launcher) or accepted; nothing else escapes validation.

Validation runs in-process, before any work. The slow test then runs each value that the toy
GAN and a transfer fine-tuning accept, for real: it must finish, or stop with exit code 2 and
one line (a diverged run does), within a time limit."""
import contextlib
import glob
import io
import json
import os
import signal
import sys

import pytest

from common.config import flatten_config, load_config
from common.errors import UserError
from gan import train as gan_train
from transfer import train as transfer_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOSTILE = ('-1', '0', '1000000000', '1e9', 'nan', 'inf', '-inf', 'bogus', '(1, 2)', '')
SPECS = sorted(os.path.relpath(p, REPO) + ':quick'
               for pkg in ('gan', 'transfer') for p in glob.glob(f'{REPO}/{pkg}/configs/*.py')
               if os.path.basename(p) not in ('__init__.py', 'base.py'))
SPECS.append('transfer/configs/digits.py:fine_tune,quick')  # digits.py:quick is an ablation


def _validate(spec: str, config) -> None:
  (gan_train if spec.startswith('gan/') else transfer_train).validate(config)


def outcomes(spec: str) -> dict[tuple[str, str], str]:
  """(key, value) -> 'refused' or 'accepted', for every key of `spec` and every hostile value;
  an exception other than a one-line UserError fails the test that asked."""
  out = {}
  for key in flatten_config(load_config(spec)):
    for value in HOSTILE:
      try:
        _validate(spec, load_config(spec, [f'{key}={value}']))
        out[key, value] = 'accepted'
      except UserError as e:
        assert '\n' not in str(e) and str(e).strip(), (key, value, str(e))
        out[key, value] = 'refused'
      except Exception as e:  # noqa: BLE001 -- what this test is for
        pytest.fail(f'{spec} {key}={value!r}: {type(e).__name__}: {e}')
  return out


def test_every_shipped_config_is_covered():
  names = {s.split(':')[0] for s in SPECS}
  assert {'gan/configs/toy2d.py', 'gan/configs/dcgan_digits.py', 'gan/configs/cgan_digits.py',
          'transfer/configs/digits.py', 'transfer/configs/cifar10.py'} <= names


@pytest.mark.parametrize('spec', SPECS)
def test_hostile_values_are_refused_with_one_line_or_accepted(spec):
  results = outcomes(spec)
  # What no run could survive is refused whatever else the config says.
  for key, value in (('train.steps', '1000000000'), ('data.batch_size', '1000000000'),
                     ('data.batch_size', '-1'), ('optim.b1', 'nan'), ('seed', '-1'),
                     ('train.log_every', '0'), ('train.keep_checkpoints', '0')):
    if (key, value) in results:
      assert results[key, value] == 'refused', (key, value)
  for key in ('model.hidden', 'model.features', 'data.image_size', 'data.eval_batch_size',
              'eval.num_samples'):
    if (key, '1000000000') in results and key.split('.')[1] in _used(spec):
      assert results[key, '1000000000'] == 'refused', key


def _used(spec):
  """Size keys the config's model or data really reads."""
  if spec.startswith('gan/'):
    width = 'hidden' if load_config(spec).model.name == 'mlp' else 'features'
    return {width, 'num_samples', 'batch_size'}
  return {'image_size', 'eval_batch_size', 'batch_size'}


# The runs of the slow test: the toy GAN, and fine-tuning without pretraining (pretrain.* is
# then not read: its values are checked in-process above), both cut short where the key under
# test allows.
RUNS = {
    'gan/configs/toy2d.py:ring8,quick': ('launch.gan', [
        'train.steps=20', 'train.rounds_per_call=10', 'train.log_every=10', 'eval.plots=False',
        'eval.num_samples=200']),
    'transfer/configs/digits.py:fine_tune,quick': ('launch.transfer', [
        'model.weights=', 'train.epochs=1', 'data.test_limit=20', 'data.eval_batch_size=10']),
}


class _Hang(Exception):
  pass


def _run(module, spec, overrides, workdir, limit_s=300):
  """`python -m module` in this process, under a time limit: (exit code, stderr)."""
  import importlib

  from common import cli
  main = importlib.import_module(module).main
  argv = [module, f'--config={spec}', f'--workdir={workdir}',
          *[f'--config.{o}' for o in overrides]]
  err = io.StringIO()

  def hang(*_):
    raise _Hang(f'{overrides[-1]} ran past {limit_s} s')

  previous = signal.signal(signal.SIGALRM, hang)
  signal.alarm(limit_s)
  try:
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
      try:
        cli.main_guard(lambda: main(argv))
        code = 0
      except SystemExit as e:
        code = e.code
  finally:
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
  return code, err.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize('spec', sorted(RUNS))
def test_accepted_values_run_or_stop_with_one_line(spec, tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)  # relative paths given as values land here
  module, base = RUNS[spec]
  seen, ran = set(), []
  for (key, value), outcome in sorted(outcomes(spec).items()):
    if outcome != 'accepted' or key.startswith('pretrain.'):
      continue
    overrides = [o for o in base if o.split('=')[0] != key] + [f'{key}={value}']
    resolved = json.dumps(load_config(spec, overrides).to_dict(), sort_keys=True, default=str)
    if resolved in seen:
      continue  # the same run as an earlier value (e.g. a value the config ignores)
    seen.add(resolved)
    code, err = _run(module, spec, overrides, str(tmp_path / f'run{len(ran)}'))
    errors = [l for l in err.splitlines() if l.startswith('error:')]
    assert 'Traceback' not in err, (key, value, err[-3000:])
    assert code == 0 or (code == 2 and len(errors) == 1), (key, value, code, err[-3000:])
    ran.append((key, value, code))
  print(f'{len(ran)} runs:', ', '.join(f'{k}={v}: {c}' for k, v, c in ran), file=sys.stderr)
