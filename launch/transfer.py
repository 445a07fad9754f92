"""Transfer learning: feature extraction vs fine-tuning of a pretrained ResNet.

  python -m launch.transfer [--config=transfer/configs/NAME.py[:ARG]] [--workdir=DIR]
      [--config.KEY=VALUE ...]

With no flags it runs the embedded default (transfer/configs/digits.py): the digits 0-4 -> 5-9
ablation of scratch vs feature extraction vs fine-tuning vs two-phase over 5 seeds, into
runs/digits/. Your own images: --config.data.name=folder --config.data.path=DIR (one subfolder
per class). Rerunning the same command on an existing workdir resumes it.

A run keeps its workdir to itself (WORKDIR/.lock): a second launch on it stops at once, naming
the holder. SIGTERM or SIGINT (preemption, scancel, Ctrl-C) ends the chunk of steps in progress,
saves a checkpoint there and prints 'preempted at step N'; the same command resumes it. In a
multi-process run a lost process stops the others within ADVCNN_PEER_TIMEOUT seconds (default
60). Exit codes: 0 done; 2 bad input or no space left on the device (one line on stderr);
75 stopped early, nothing lost (a signal or a lost process): rerun to resume (requeue on it).
"""
import os
import sys

from common import cli, distributed

DEFAULT_CONFIG = 'transfer/configs/digits.py'


def main(argv: list[str]) -> None:
  from transfer.configs.base import HELP
  fv, spec = cli.parse(argv, DEFAULT_CONFIG, doc=__doc__, key_help=HELP)
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
