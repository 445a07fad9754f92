r"""Sweep a config over a grid and seeds:

  python -m launch.sweep --config=gan/configs/toy2d.py:ring8 --workdir=runs/sweep \
      --sweep="loss.name=ns,hinge,wgan seed=0:5" [--parallel=2] [--metrics=modes,high_quality]
  python -m launch.sweep ... --executor=slurm --parallel=50 --slurm_partition=gpu

Each point runs `python -m launch.gan|launch.transfer --workdir=DIR/points/<point>` here
(--executor=local), as a SLURM job (slurm) or a submitit job on this machine (submitit_local;
job logs in DIR/submitit/). Every start and end is printed as it happens, with the point's
metrics, error or divergence. Writes DIR/results.csv, DIR/results.md and one
DIR/results_<metric>.png per metric. Rerunning skips finished points and resumes interrupted
ones. SIGTERM or SIGINT stops the running points, each after saving a checkpoint (submitit jobs
are cancelled). Exit code 1 when any point failed or diverged (after writing the results; 0 with
--allow_failures), 2 for bad input, 75 when stopped by a signal (rerun to resume).
"""
import sys

from absl import flags

from common import cli, sweep
from common.config import resolve_config_spec
from common.errors import UserError


def _define_flags(fv: flags.FlagValues) -> None:
  flags.DEFINE_string('config', None, 'PKG/configs/NAME.py[:ARG] to sweep.', flag_values=fv)
  flags.DEFINE_string('workdir', None, 'Sweep directory.', flag_values=fv)
  flags.DEFINE_string('sweep', None, 'FIELD=V1,V2 ... seed=A:B', flag_values=fv)
  flags.DEFINE_integer('parallel', 1, 'Points running at once (processes here, or jobs).',
                       flag_values=fv)
  flags.DEFINE_list('metrics', None, 'Summary metrics in the table, the plots and the progress '
                    'lines (default: all numeric).', flag_values=fv)
  flags.DEFINE_enum('executor', 'local', sweep.EXECUTORS, 'Where points run: local '
                    'subprocesses, SLURM jobs, or submitit jobs on this machine.', flag_values=fv)
  flags.DEFINE_bool('allow_failures', False, 'Exit 0 even when points failed or diverged '
                    '(default: exit code 1).', flag_values=fv)
  for name, (_, kind, default, help_) in sweep.SLURM_PARAMS.items():
    define = flags.DEFINE_string if kind is str else flags.DEFINE_integer
    define(f'slurm_{name}', default, help_, flag_values=fv)


def main(argv: list[str]) -> None:
  fv = cli.parse_flags(argv, _define_flags, __doc__)
  for name in ('config', 'workdir', 'sweep'):
    if not fv[name].value:
      raise UserError(f'--{name} is required; see python -m launch.sweep --help')
  cli.note_workdir(None)  # an interrupted sweep resumes its points: none is the run
  resolve_config_spec(fv.config)
  slurm = {name: fv[f'slurm_{name}'].value for name in sweep.SLURM_PARAMS}
  out = sweep.run_sweep(fv.config, fv.workdir, fv.sweep, fv.parallel, fv.metrics,
                        executor=fv.executor, slurm=slurm)
  print(f'{out["points"]} points: {out["ran"]} ran, {out["skipped"]} skipped (finished before), '
        f'{out["failed"]} failed, {out["diverged"]} diverged; table in {fv.workdir}/results.md')
  for name, err in out['failures']:
    print(f'failed: {name}: {err}')
  for name, reason in out['diverged_points']:
    print(f'diverged: {name}: {reason}')
  bad = f'{out["failed"]} failed, {out["diverged"]} diverged'
  if out['failed'] or out['diverged']:
    if fv.allow_failures:
      print(f'{bad}; exit code 0 (--allow_failures)', flush=True)
    else:
      print(f'exit code 1: {bad} (rerun to retry them; --allow_failures exits 0)', flush=True)
      sys.exit(1)


if __name__ == '__main__':
  cli.main_guard(lambda: main(sys.argv))
