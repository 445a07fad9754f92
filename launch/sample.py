"""Sample a trained GAN.

  python -m launch.sample --workdir=DIR --num=N --out=PATH [--step=S] [--truncation=PSI]
      [--classes=C[,C...]] [--seed=0] [--grid=64] [--interpolations=8] [--frames=16]
      [--pictures=DIR]

Loads the EMA generator of DIR's latest checkpoint (or --step) and writes N samples to PATH: a
folder of PNGs, or, when PATH ends in .npz, one file with 'images' (uint8 [N, H, W, C]) and, for
conditional runs, 'labels'. Pictures go to --pictures (default DIR/images/sample-STEP/): grid.png,
and for linear and spherical latent interpolation a strip PNG (a row per walk) and a looping GIF.
--truncation=PSI > 0 draws truncated noise; --classes picks the classes of a conditional run.
"""
import sys

from absl import flags

from common import cli


def _define(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('workdir', None, 'Workdir of a launch.gan image run.', flag_values=fv)
  flags.DEFINE_integer('num', 64, 'Samples to write to --out.', flag_values=fv)
  flags.DEFINE_string('out', '', 'A folder for PNGs, or a path ending in .npz.', flag_values=fv)
  flags.DEFINE_integer('step', None, 'Checkpoint step (default: the latest).', flag_values=fv)
  flags.DEFINE_float('truncation', 0.0, 'Truncation psi > 0 (0: none).', flag_values=fv)
  flags.DEFINE_string('classes', '', 'Conditional runs: classes to draw, e.g. 3 or 1,5.',
                      flag_values=fv)
  flags.DEFINE_integer('seed', 0, 'Seed of the noise.', flag_values=fv)
  flags.DEFINE_integer('grid', 64, 'Samples in grid.png.', flag_values=fv)
  flags.DEFINE_integer('interpolations', 8, 'Walks in each interpolation picture.',
                       flag_values=fv)
  flags.DEFINE_integer('frames', 16, 'Steps along each walk (at least 2).', flag_values=fv)
  flags.DEFINE_string('pictures', '', 'Folder for the grid and interpolations (default: '
                      'WORKDIR/images/sample-STEP).', flag_values=fv)


def main(argv: list[str]) -> None:
  fv = cli.parse_flags(argv, _define, __doc__)
  from common.errors import UserError
  if not fv.workdir:
    raise UserError('--workdir is missing; pass the workdir of a launch.gan run (see --help)')
  from gan import sampling  # after flag parsing, so bad flags fail fast
  written = sampling.sample_workdir(
      fv.workdir, fv.num, fv.out, fv.step, fv.truncation, sampling.parse_classes(fv.classes),
      fv.seed, fv.grid, fv.interpolations, fv.frames, fv.pictures)
  step = written.pop('step')
  print(f'samples of {fv.workdir} at step {step}:')
  for what, path in written.items():
    print(f'  {what}: {path}')


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
