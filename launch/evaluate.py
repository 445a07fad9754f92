"""Measure a finished GAN run, or any two sets of images.

  python -m launch.evaluate --workdir=DIR [--metrics=fid,kid,is,pr,dc,cas] [--num_samples=N]
      [--protocol=standard] [--inception_weights=PATH] [--reference_stats=PATH]
  python -m launch.evaluate --real=FOLDER|NPZ --fake=FOLDER|NPZ [--metrics=fid,kid,is,pr,dc]
      [--features=inception|digits] [--inception_weights=PATH] [--image_size=S]
      [--save_stats=PATH] [--out=JSON]

With --workdir: rebuilds the models from DIR/config.json, samples the EMA generator of the latest
checkpoint, appends the results to DIR/metrics.jsonl (with the checkpoint's step) and merges them
into DIR/summary.json. Defaults: the run's eval.metrics (else fid,kid,pr, plus cas for conditional
digits runs) and eval.num_samples. --protocol=standard is the papers' protocol: 50,000 samples
against the statistics of the whole training split (FID unless --metrics says more).

With --real and --fake: each is a folder of images, an .npz of images (launch.sample writes
them) or an .npz of statistics (this project's or pytorch-fid's); default metric fid.
--save_stats writes the real set's statistics for later runs.
"""
import json
import sys

from absl import flags

from common import cli
from common.errors import UserError, unknown_name

PROTOCOLS = {'standard': 50_000}


def _define(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('workdir', None, 'Workdir of a launch.gan run.', flag_values=fv)
  flags.DEFINE_string('real', '', 'Real set: folder, .npz of images or of statistics.',
                      flag_values=fv)
  flags.DEFINE_string('fake', '', 'Fake set: folder, .npz of images or of statistics.',
                      flag_values=fv)
  flags.DEFINE_string('metrics', '', 'Comma-separated: fid, kid, is, pr, dc (density/coverage), '
                      'cas (runs only).', flag_values=fv)
  flags.DEFINE_integer('num_samples', None, 'Generated samples to measure.', flag_values=fv)
  flags.DEFINE_string('protocol', '', 'standard: 50,000 samples against the training split.',
                      flag_values=fv)
  flags.DEFINE_string('inception_weights', '', "pytorch-fid's InceptionV3 .pth (TFDS datasets, "
                      'folders, --features=inception).', flag_values=fv)
  flags.DEFINE_string('reference_stats', '', 'Statistics .npz to use instead of the cached ones.',
                      flag_values=fv)
  flags.DEFINE_string('features', 'inception', 'Two sets: inception | digits.', flag_values=fv)
  flags.DEFINE_integer('image_size', 0, 'Two sets: resize and centre-crop images to S x S.',
                       flag_values=fv)
  flags.DEFINE_string('save_stats', '', 'Two sets: write the real set\'s statistics here.',
                      flag_values=fv)
  flags.DEFINE_string('out', '', 'Two sets: also write the results to this JSON file.',
                      flag_values=fv)


def _two_sets(fv: flags.FlagValues) -> None:
  from gan import evaluate_sets, evaluation  # after flag parsing, so bad flags fail fast
  if fv.workdir or fv.num_samples is not None or fv.protocol or fv.reference_stats:
    raise UserError('--real/--fake compare two sets; --workdir, --num_samples, --protocol and '
                    '--reference_stats belong to evaluating a run: pass one or the other')
  metrics = evaluation.parse_metrics(fv.metrics or 'fid')
  results = evaluate_sets.evaluate_sets(fv.real, fv.fake, metrics, fv.features,
                                        fv.inception_weights, fv.image_size, fv.save_stats)
  if fv.out:
    with open(fv.out, 'w') as f:
      json.dump({'real': fv.real, 'fake': fv.fake, **results}, f, indent=2, sort_keys=True)
  cli.print_summary(f'{fv.fake} vs {fv.real}', results,
                    f'also in {fv.out}' if fv.out else 'printed here')


def main(argv: list[str]) -> None:
  fv = cli.parse_flags(argv, _define, __doc__)
  if fv.real or fv.fake:
    return _two_sets(fv)
  if not fv.workdir:
    raise UserError('--workdir is missing; pass the workdir of a launch.gan run, or --real and '
                    '--fake (see --help)')
  num_samples, metrics = fv.num_samples, fv.metrics or None
  if fv.protocol:
    if fv.protocol not in PROTOCOLS:
      raise unknown_name('--protocol', fv.protocol, PROTOCOLS)
    if num_samples not in (None, PROTOCOLS[fv.protocol]):
      raise UserError(f'--protocol={fv.protocol} samples {PROTOCOLS[fv.protocol]:,} images; '
                      'drop --num_samples')
    num_samples, metrics = PROTOCOLS[fv.protocol], metrics or 'fid'
  from gan import evaluate_run  # after flag parsing, so bad flags fail fast
  step, results = evaluate_run.evaluate_workdir(fv.workdir, metrics, num_samples,
                                                fv.inception_weights, fv.reference_stats,
                                                fv.protocol)
  cli.print_summary(fv.workdir, {'step': step, **results},
                    'appended to metrics.jsonl and summary.json')


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
