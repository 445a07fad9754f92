"""`--help` / `-h` of every entry point prints usage, its flags and (with a config) every config
key with its meaning, and exits 0."""
import importlib

import pytest

from common.config import flatten_config, load_config

CASES = {
    'gan': ['--config', '--workdir', '--config.optim.g_lr=', '--config.train.log_every='],
    'transfer': ['--config', '--workdir', '--config.optim.lr=', '--config.model.weights='],
    'evaluate': ['--workdir', '--metrics', '--num_samples', '--real', '--fake', '--protocol',
                 '--features', '--save_stats'],
    'convert': ['--source', '--arch', '--input', '--output', '--include_top'],
    'lab': ['--config', '--workdir', '--port', '--config.optim.d_lr='],
    'sample': ['--workdir', '--num', '--out', '--step', '--truncation', '--classes'],
    'predict': ['--workdir', '--top_k', '--output'],
}


@pytest.mark.parametrize('module', sorted(CASES))
@pytest.mark.parametrize('flag', ['--help', '-h'])
def test_help_exits_0_and_names_the_flags(module, flag, capsys):
  launcher = importlib.import_module(f'launch.{module}')
  with pytest.raises(SystemExit) as e:
    launcher.main([f'launch.{module}', flag])
  out = capsys.readouterr().out
  assert e.value.code == 0
  assert out.startswith(launcher.__doc__.strip().splitlines()[0])
  for name in CASES[module]:
    assert name in out, (name, out[:2000])


@pytest.mark.parametrize('module,spec', [('gan', 'gan/configs/toy2d.py:ring8'),
                                         ('transfer', 'transfer/configs/digits.py:fine_tune')])
def test_config_help_lists_every_key_with_its_value_and_meaning(module, spec, capsys):
  main = importlib.import_module(f'launch.{module}').main
  with pytest.raises(SystemExit):
    main([f'launch.{module}', f'--config={spec}', '--config.seed=7', '--help'])
  out = capsys.readouterr().out
  lines = {l.split('=', 1)[0].strip(): l for l in out.splitlines() if '--config.' in l}
  for key, value in flatten_config(load_config(spec, ['seed=7'])).items():
    line = lines[f'--config.{key}']
    assert f'={value!r}' in line and '  # ' in line, line  # current value and a meaning
  assert '--config.seed=7' in out  # overrides given with --help are shown applied


def test_every_config_key_has_a_meaning():
  from gan.configs.base import HELP as gan_help, base_config as gan_base
  from transfer.configs.base import HELP as transfer_help, base_config as transfer_base
  assert set(flatten_config(gan_base())) == set(gan_help)
  assert set(flatten_config(transfer_base())) == set(transfer_help)
