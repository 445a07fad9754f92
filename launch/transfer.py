"""Transfer learning: feature extraction vs fine-tuning of a pretrained ResNet.

  python -m launch.transfer [--config=transfer/configs/NAME.py[:ARG]] [--workdir=DIR]
      [--config.KEY=VALUE ...]

With no flags it runs the embedded default (transfer/configs/digits.py): the digits 0-4 -> 5-9
ablation of scratch vs feature extraction vs fine-tuning vs two-phase over 5 seeds, into
runs/digits/. Your own images: --config.data.name=folder --config.data.path=DIR (one subfolder
per class). Rerunning the same command on an existing workdir resumes it.
"""
import os
import sys

from common import cli, distributed

DEFAULT_CONFIG = 'transfer/configs/digits.py'


def main(argv: list[str]) -> None:
  from transfer.configs.base import HELP
  fv, spec = cli.parse(argv, DEFAULT_CONFIG, doc=__doc__ + '\n' + cli.TRAINING_RUN_HELP,
                       key_help=HELP)
  distributed.initialize()
  workdir = fv.workdir or cli.default_workdir(spec)
  cli.note_workdir(workdir)
  from transfer import train  # after flag parsing, so bad flags fail fast
  summary = train.train_and_evaluate(fv.config, workdir)
  if not distributed.is_main():
    return
  if fv.config.ablation.modes:
    cli.print_summary(workdir, summary, 'results.md, results.csv, images/ablation.png, '
                      'summary.json, metrics.jsonl, runs/')
    with open(os.path.join(workdir, 'results.md')) as f:
      print(f.read())
  else:
    cli.print_summary(workdir, summary, 'summary.json, metrics.jsonl, images/confusion.png, '
                      'checkpoints/')


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
