"""Measure a finished GAN run: python -m launch.evaluate --workdir=DIR [--metrics=fid,kid,is,pr,cas]
[--num_samples=N] [--inception_weights=PATH] [--reference_stats=PATH]

Rebuilds the models from DIR/config.json, samples the EMA generator of the latest checkpoint,
appends the results to DIR/metrics.jsonl (with the checkpoint's step) and merges them into
DIR/summary.json. Defaults: the run's eval.metrics (else fid,kid,pr, plus cas for conditional
digits runs) and eval.num_samples.
"""
import sys

from absl import flags

from common import cli
from common.errors import UserError


def parse(argv: list[str]) -> flags.FlagValues:
  fv = flags.FlagValues()
  flags.DEFINE_string('workdir', None, 'Workdir of a launch.gan run.', flag_values=fv)
  flags.DEFINE_string('metrics', '', 'Comma-separated: fid, kid, is, pr, cas.', flag_values=fv)
  flags.DEFINE_integer('num_samples', None, 'Generated samples to measure.', flag_values=fv)
  flags.DEFINE_string('inception_weights', '', "pytorch-fid's InceptionV3 .pth (TFDS datasets).",
                      flag_values=fv)
  flags.DEFINE_string('reference_stats', '', 'Statistics .npz to use instead of the cached ones.',
                      flag_values=fv)
  try:
    rest = fv(argv)
  except flags.Error as e:
    raise UserError(f'bad flag: {" ".join(str(e).split())}') from None
  if len(rest) > 1:
    raise UserError(f'unexpected argument {rest[1]!r}; flags take the form --name=value')
  if not fv.workdir:
    raise UserError('--workdir is missing; pass the workdir of a launch.gan run')
  return fv


def main(argv: list[str]) -> None:
  fv = parse(argv)
  from gan import evaluate_run  # after flag parsing, so bad flags fail fast
  step, results = evaluate_run.evaluate_workdir(fv.workdir, fv.metrics or None, fv.num_samples,
                                              fv.inception_weights, fv.reference_stats)
  print(f'step {step} of {fv.workdir}; appended to metrics.jsonl and summary.json')
  print(' '.join(f'{k}={v:.4g}' if isinstance(v, float) else f'{k}={v}'
                 for k, v in results.items()))


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
