"""Train a GAN.

  python -m launch.gan [--config=gan/configs/NAME.py[:ARG]] [--workdir=DIR] [--config.KEY=VALUE ...]

With no flags it trains the embedded default, a DCGAN on scikit-learn's digits
(gan/configs/dcgan_digits.py), into runs/dcgan_digits/. Rerunning the same command on an existing
workdir resumes it. `--config=gan/configs/toy2d.py:ring8 --help` shows that config's keys.
"""
import sys

from common import cli, distributed

DEFAULT_CONFIG = 'gan/configs/dcgan_digits.py'


def main(argv: list[str]) -> None:
  from gan.configs.base import HELP
  fv, spec = cli.parse(argv, DEFAULT_CONFIG, doc=__doc__ + '\n' + cli.TRAINING_RUN_HELP,
                       key_help=HELP)
  distributed.initialize()
  workdir = fv.workdir or cli.default_workdir(spec)
  cli.note_workdir(workdir)
  from gan import train  # after flag parsing, so bad flags fail fast
  summary = train.train_and_evaluate(fv.config, workdir)
  if distributed.is_main():
    cli.print_summary(workdir, summary, 'summary.json, metrics.jsonl, images/, checkpoints/')
    from gan.evaluation import floor_line
    line = floor_line(summary)
    if line:
      print(line)


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
