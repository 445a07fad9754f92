"""Train a GAN.

  python -m launch.gan [--config=gan/configs/NAME.py[:ARG]] [--workdir=DIR] [--config.KEY=VALUE ...]

With no flags it trains the embedded default, a DCGAN on scikit-learn's digits
(gan/configs/dcgan_digits.py), into runs/dcgan_digits/. Rerunning the same command on an existing
workdir resumes it. `--config=gan/configs/toy2d.py:ring8 --help` shows that config's keys.

A run keeps its workdir to itself (WORKDIR/.lock): a second launch on it stops at once, naming
the holder. SIGTERM or SIGINT (preemption, scancel, Ctrl-C) ends the chunk of steps in progress,
saves a checkpoint there and prints 'preempted at step N'; the same command resumes it. In a
multi-process run a lost process stops the others within ADVCNN_PEER_TIMEOUT seconds (default
60). Exit codes: 0 done; 2 bad input or no space left on the device (one line on stderr);
75 stopped early, nothing lost (a signal or a lost process): rerun to resume (requeue on it).
"""
import sys

from common import cli, distributed

DEFAULT_CONFIG = 'gan/configs/dcgan_digits.py'


def main(argv: list[str]) -> None:
  from gan.configs.base import HELP
  fv, spec = cli.parse(argv, DEFAULT_CONFIG, doc=__doc__, key_help=HELP)
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
