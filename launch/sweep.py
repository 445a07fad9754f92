"""Sweep a config over a grid and seeds:

  python -m launch.sweep --config=gan/configs/toy2d.py:ring8 --workdir=runs/sweep \
      --sweep="loss.name=ns,hinge,wgan seed=0:5" [--parallel=2] [--metrics=modes,high_quality]

Writes DIR/points/<point>/ (one workdir per point), DIR/results.csv, DIR/results.md and
DIR/results_<metric>.png. Rerunning skips finished points and resumes interrupted ones.
"""
import sys

from absl import flags

from common import cli, sweep
from common.config import resolve_config_spec
from common.errors import UserError


def main(argv: list[str]) -> None:
  fv = flags.FlagValues()
  flags.DEFINE_string('config', None, 'PKG/configs/NAME.py[:ARG] to sweep.', flag_values=fv)
  flags.DEFINE_string('workdir', None, 'Sweep directory.', flag_values=fv)
  flags.DEFINE_string('sweep', None, 'FIELD=V1,V2 ... seed=A:B', flag_values=fv)
  flags.DEFINE_integer('parallel', 1, 'Points run at once (separate processes).', flag_values=fv)
  flags.DEFINE_list('metrics', None, 'Summary metrics in the table (default: all numeric).',
                    flag_values=fv)
  try:
    rest = fv(argv)
  except flags.Error as e:
    raise UserError(f'bad flag: {e}') from None
  if len(rest) > 1:
    raise UserError(f'unexpected argument {rest[1]!r}; flags take the form --name=value')
  for name in ('config', 'workdir', 'sweep'):
    if not fv[name].value:
      raise UserError(f'--{name} is required; see python -m launch.sweep --help')
  resolve_config_spec(fv.config)
  out = sweep.run_sweep(fv.config, fv.workdir, fv.sweep, fv.parallel, fv.metrics)
  print(f'{out["points"]} points: {out["ran"]} ran, {out["skipped"]} skipped (finished before), '
        f'{out["failed"]} failed; table in {fv.workdir}/results.md')
  for name, err in out['failures']:
    print(f'failed: {name}: {err}')


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
