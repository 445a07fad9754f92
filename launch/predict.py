"""Classify new images with a finished transfer run.

  python -m launch.predict --workdir=DIR IMAGE_OR_FOLDER... [--top_k=5] [--output=DIR]

Loads the weights the run selected (DIR/weights), applies its eval transform and preprocessing,
prints the top-k classes with probabilities and writes predictions.csv and predictions.png (a
grid of the images with their predicted labels) to --output (default DIR/predictions). A folder
with one sub-folder per class is labelled by them: the grid shows the true labels and the
accuracy.
"""
import os
import sys

from absl import flags

from common import cli
from common.errors import UserError


def _define(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('workdir', None, 'Workdir of a finished launch.transfer run.',
                      flag_values=fv)
  flags.DEFINE_integer('top_k', 5, 'Classes listed per image.', flag_values=fv)
  flags.DEFINE_string('output', '', 'Directory for predictions.csv and predictions.png '
                      '(default WORKDIR/predictions).', flag_values=fv)
  flags.DEFINE_integer('batch_size', 32, 'Images per forward pass.', flag_values=fv)


def main(argv: list[str]) -> None:
  fv, paths = cli.parse_flags_and_args(argv, _define, __doc__)
  if not fv.workdir:
    raise UserError('--workdir is missing; pass the workdir of a finished launch.transfer run '
                    '(see --help)')
  from transfer import predict  # after flag parsing, so bad flags fail fast
  rows, images, meta = predict.predict_paths(fv.workdir, paths, fv.top_k, fv.batch_size)
  out = fv.output or os.path.join(fv.workdir, 'predictions')
  os.makedirs(out, exist_ok=True)
  predict.write_csv(os.path.join(out, 'predictions.csv'), rows)
  acc = predict.accuracy(rows)
  title = f'{meta["arch"]}: {len(rows)} images' + (
      '' if acc is None else f', accuracy {100 * acc:.1f}%')
  predict.save_grid(os.path.join(out, 'predictions.png'), rows, images, title)
  print(predict.table(rows))
  print(f'{title}; predictions.csv and predictions.png in {out}')


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
