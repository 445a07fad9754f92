"""Transfer learning: python -m launch.transfer --config=transfer/configs/NAME.py[:ARG] --workdir=DIR [--config.k=v]

With no flags it runs the embedded default: the digits 0-4 -> 5-9 ablation of
scratch vs feature extraction vs fine-tuning vs two-phase over 5 seeds.
"""
import os
import sys

from common import cli, distributed

DEFAULT_CONFIG = 'transfer/configs/digits.py'


def main(argv: list[str]) -> None:
  fv, spec = cli.parse(argv, DEFAULT_CONFIG)
  distributed.initialize()
  workdir = fv.workdir or cli.default_workdir(spec)
  from transfer import train  # after flag parsing, so bad flags fail fast
  summary = train.train_and_evaluate(fv.config, workdir)
  if not distributed.is_main():
    return
  if fv.config.ablation.modes:
    print(f'results in {workdir}: results.md, results.csv, images/ablation.png, summary.json, '
          f'metrics.jsonl, runs/')
    with open(os.path.join(workdir, 'results.md')) as f:
      print(f.read())
  else:
    print(f'results in {workdir}: summary.json, metrics.jsonl, images/confusion.png, checkpoints/')
    print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                   for k, v in summary.items() if not isinstance(v, (dict, list))))


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
