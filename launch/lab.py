"""GAN Lab in the browser, trained by advcnn's own JAX code.

  python -m launch.lab [--port=8000] [--config=gan/configs/toy2d.py:ring] [--workdir=runs/lab]
      [--config.key=value ...]

Serves one page on 127.0.0.1 (printed at start; open it in a browser on this machine). Every
tab shows the same session. "save" writes the session into --workdir/session-NNN as a normal
workdir; `python -m launch.gan --config=THAT_DIR/lab_config.py --workdir=NEW_DIR` replays it.
Ctrl-C (or closing the last tab) saves it too.
"""
import asyncio
import logging
import sys

from absl import flags

from common import cli
from common.errors import UserError

DEFAULT_CONFIG = 'gan/configs/toy2d.py:ring'


def _flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_integer('port', 8000, 'Port on 127.0.0.1 (0: any free port).', flag_values=fv)


def main(argv: list[str]) -> None:
  from gan.configs.base import HELP
  fv, _ = cli.parse(argv, DEFAULT_CONFIG, doc=__doc__, key_help=HELP, define_extra=_flags)
  if not 0 <= fv.port <= 65535:
    raise UserError(f'--port must be in 0..65535, got {fv.port}')
  workdir = fv.workdir or 'runs/lab'
  logging.basicConfig(level=logging.INFO, format='%(asctime)s %(levelname)s %(message)s')
  from gan.lab.controller import Lab  # after flag parsing, so bad flags fail fast
  from gan.lab.server import serve
  lab = Lab(fv.config, workdir, publish=lambda msg: None)
  try:
    asyncio.run(serve(lab, fv.port, ready=lambda url: print(f'GAN Lab at {url}', flush=True)))
  except KeyboardInterrupt:
    saved = lab.stop()
    if saved:
      print(f'saved the session to {saved}', flush=True)
    elif lab.saved_round is not None:  # saved already, e.g. when the last tab closed
      print(f'the session is saved in {lab.session.workdir} (round {lab.saved_round})',
            flush=True)
    else:
      print('nothing new to save', flush=True)
    raise SystemExit(0) from None


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
