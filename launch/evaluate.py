"""Measure a finished GAN run.

  python -m launch.evaluate --workdir=DIR [--metrics=fid,kid,is,pr,cas] [--num_samples=N]
      [--inception_weights=PATH] [--reference_stats=PATH]

Rebuilds the models from DIR/config.json, samples the EMA generator of the latest checkpoint,
appends the results to DIR/metrics.jsonl (with the checkpoint's step) and merges them into
DIR/summary.json. Defaults: the run's eval.metrics (else fid,kid,pr, plus cas for conditional
digits runs) and eval.num_samples.
"""
import sys

from absl import flags

from common import cli
from common.errors import UserError


def _define(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('workdir', None, 'Workdir of a launch.gan run.', flag_values=fv)
  flags.DEFINE_string('metrics', '', 'Comma-separated: fid, kid, is, pr, cas.', flag_values=fv)
  flags.DEFINE_integer('num_samples', None, 'Generated samples to measure.', flag_values=fv)
  flags.DEFINE_string('inception_weights', '', "pytorch-fid's InceptionV3 .pth (TFDS datasets).",
                      flag_values=fv)
  flags.DEFINE_string('reference_stats', '', 'Statistics .npz to use instead of the cached ones.',
                      flag_values=fv)


def main(argv: list[str]) -> None:
  fv = cli.parse_flags(argv, _define, __doc__)
  if not fv.workdir:
    raise UserError('--workdir is missing; pass the workdir of a launch.gan run (see --help)')
  from gan import evaluate_run  # after flag parsing, so bad flags fail fast
  step, results = evaluate_run.evaluate_workdir(fv.workdir, fv.metrics or None, fv.num_samples,
                                                fv.inception_weights, fv.reference_stats)
  cli.print_summary(fv.workdir, {'step': step, **results},
                    'appended to metrics.jsonl and summary.json')


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
