"""Train a GAN: python -m launch.gan --config=gan/configs/NAME.py[:ARG] --workdir=DIR [--config.k=v]

With no flags it trains the embedded default (DCGAN on scikit-learn's digits).
"""
import sys

from common import cli, distributed

DEFAULT_CONFIG = 'gan/configs/dcgan_digits.py'


def main(argv: list[str]) -> None:
  fv, spec = cli.parse(argv, DEFAULT_CONFIG)
  distributed.initialize()
  workdir = fv.workdir or cli.default_workdir(spec)
  from gan import train  # after flag parsing, so bad flags fail fast
  summary = train.train_and_evaluate(fv.config, workdir)
  if not distributed.is_main():
    return
  print(f'results in {workdir}: summary.json, metrics.jsonl, images/, checkpoints/')
  print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                 for k, v in summary.items()))


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
