"""The docs that are generated from the code stay in sync with it.

Regenerate docs/config.md with: python tests/test_docs.py
"""
import os

from common.config import REPO_ROOT, reference_markdown

CONFIG_MD = os.path.join(REPO_ROOT, 'docs', 'config.md')


def render_config_reference() -> str:
  from gan.configs.base import HELP as gan_help, base_config as gan_base
  from transfer.configs.base import HELP as transfer_help, base_config as transfer_base
  head = ('# Config reference\n\nEvery key of the two config families with its default (the '
          'values of `gan/configs/base.py` and\n`transfer/configs/base.py`; each config file '
          'overrides some) and its meaning.\n`python -m launch.gan --config=FILE --help` prints '
          'the same for one config file, with that\nfile\'s values. Regenerate this page with '
          '`python tests/test_docs.py`.\n\n')
  return (head + reference_markdown('GAN configs (`python -m launch.gan`)', gan_base(), gan_help)
          + '\n' + reference_markdown('Transfer configs (`python -m launch.transfer`)',
                                      transfer_base(), transfer_help))


def test_config_reference_matches_the_configs():
  with open(CONFIG_MD) as f:
    assert f.read() == render_config_reference(), 'docs/config.md is stale; see its docstring'


def test_readme_names_no_missing_file():
  import re
  with open(os.path.join(REPO_ROOT, 'README.md')) as f:
    text = f.read()
  for path in set(re.findall(r'\]\(((?:docs|gan|transfer|common)/[^)#]+)\)', text)):
    assert os.path.exists(os.path.join(REPO_ROOT, path)), path


if __name__ == '__main__':
  with open(CONFIG_MD, 'w') as f:
    f.write(render_config_reference())
