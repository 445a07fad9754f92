"""Config files with --config.* overrides, the workdir contract, checkpoints and writers."""
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common import cli
from common.checkpoint import Checkpointer
from common.config import load_config
from common.errors import UserError
from common.workdir import prepare_workdir
from common.writers import MetricWriter, image_grid, read_metrics

TOY = 'gan/configs/toy2d.py'


def test_overrides_are_typed_and_arg_selects_a_variant():
  c = load_config(TOY + ':grid25', ['optim.d_lr=0.0005', 'data.batch_size=32'])
  assert c.data.name == 'grid25' and c.optim.d_lr == 0.0005 and c.data.batch_size == 32


@pytest.mark.parametrize('overrides,match', [
    (['train.dlr=1'], 'unknown config key'),
    (['optim.d_lr=fast'], 'could not convert'),
    (['nosuchsection.x=1'], 'unknown config key|Unknown command line flag'),
])
def test_bad_overrides_are_one_line_user_errors(overrides, match):
  with pytest.raises(UserError, match=match) as e:
    load_config(TOY, overrides)
  assert '\n' not in str(e.value)


def test_missing_config_file():
  with pytest.raises(UserError, match='not found'):
    load_config('gan/configs/nope.py')


def test_cli_default_config_and_leftovers():
  fv, spec = cli.parse(['prog', '--config.train.steps=7'], TOY + ':ring')
  assert spec == TOY + ':ring' and fv.config.train.steps == 7 and fv.config.data.name == 'ring'
  with pytest.raises(UserError, match='unexpected argument'):
    cli.parse(['prog', 'stray'], TOY)


def test_workdir_refuses_a_different_config(tmp_path):
  wd = str(tmp_path / 'run')
  assert prepare_workdir(wd, load_config(TOY)) is False
  record = json.load(open(os.path.join(wd, 'config.json')))
  assert record['config']['data']['name'] == 'ring8' and 'jax' in record['versions']
  assert record['devices']['count'] >= 1
  assert prepare_workdir(wd, load_config(TOY)) is True
  with pytest.raises(UserError, match='different config.*optim.g_lr'):
    prepare_workdir(wd, load_config(TOY, ['optim.g_lr=0.5']))
  assert json.load(open(os.path.join(wd, 'config.json'))) == record  # nothing overwritten


def test_workdir_of_the_old_config_format_is_refused_in_one_line(tmp_path):
  # A workdir written before the optimiser and cadence keys were unified.
  wd = tmp_path / 'old'
  wd.mkdir()
  old = {'config': {'seed': 0, 'log_every': 100, 'train': {'g_lr': 0.001}}, 'versions': {}}
  (wd / 'config.json').write_text(json.dumps(old))
  with pytest.raises(UserError, match='older config format.*start a new --workdir') as e:
    prepare_workdir(str(wd), load_config(TOY))
  assert '\n' not in str(e.value)
  assert json.loads((wd / 'config.json').read_text()) == old


def test_workdir_not_writable(tmp_path):
  blocker = tmp_path / 'file'
  blocker.write_text('x')
  with pytest.raises(UserError, match='cannot create workdir'):
    prepare_workdir(str(blocker / 'run'), load_config(TOY))


def test_checkpoint_round_trip_keeps_last_n(tmp_path):
  ckpt = Checkpointer(str(tmp_path), keep=2)
  state = {'w': jnp.arange(6.0).reshape(2, 3), 'rng': jax.random.key_data(jax.random.key(5)),
           'step': jnp.int32(0)}
  for s in (1, 2, 3):
    ckpt.save(s, {**state, 'step': jnp.int32(s)}, {'data': {'next_index': 10 * s}})
  restored, meta, step = Checkpointer(str(tmp_path)).restore(state)
  assert step == 3 and meta == {'data': {'next_index': 30}} and int(restored['step']) == 3
  np.testing.assert_array_equal(restored['w'], state['w'])
  np.testing.assert_array_equal(restored['rng'], state['rng'])
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['2', '3']


def test_metric_writer_resume_drops_lines_after_the_checkpoint(tmp_path):
  w = MetricWriter(str(tmp_path), tensorboard=False)
  for s in (10, 20, 30):
    w.write(s, {'loss': np.float32(s / 10), 'nan': float('nan')})
  w.close()
  MetricWriter(str(tmp_path), start_step=20, tensorboard=False).close()
  rows = read_metrics(str(tmp_path))
  assert [r['step'] for r in rows] == [10, 20] and rows[0]['loss'] == 1.0 and rows[0]['nan'] == 'nan'


def test_image_grid_layout():
  imgs = np.stack([np.full((2, 3, 1), v, np.float32) for v in (-1.0, 0.0, 1.0)])
  g = image_grid(imgs, ncol=2, pad=1)
  assert g.shape == (2 * 3 + 1, 2 * 4 + 1, 1) and g.dtype == np.uint8
  assert g[1, 1, 0] == 0 and g[1, 5, 0] == 128 and g[4, 1, 0] == 255


def _cache_settings(env):
  """jax's compilation-cache settings after `enable_compile_cache` in a fresh interpreter."""
  code = ('import jax; from common import cli; cli.enable_compile_cache(); '
          'print(jax.config.jax_compilation_cache_dir); '
          'print(jax.config.jax_persistent_cache_min_compile_time_secs)')
  env = {k: v for k, v in os.environ.items()
         if k not in ('ADVCNN_CACHE', 'ADVCNN_COMPILE_CACHE', 'JAX_COMPILATION_CACHE_DIR')} | env
  out = subprocess.run([sys.executable, '-c', code], env=env, capture_output=True, text=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.dirname(__file__))), check=True)
  return out.stdout.split()


@pytest.mark.slow
def test_compile_cache_location_and_switch(tmp_path):
  assert _cache_settings({'ADVCNN_CACHE': str(tmp_path)}) == [str(tmp_path / 'xla'), '0.5']
  mine = str(tmp_path / 'mine')
  assert _cache_settings({'ADVCNN_CACHE': str(tmp_path),
                          'JAX_COMPILATION_CACHE_DIR': mine})[0] == mine
  assert _cache_settings({'ADVCNN_CACHE': str(tmp_path), 'ADVCNN_COMPILE_CACHE': '0'})[0] == 'None'
