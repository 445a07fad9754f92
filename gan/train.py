"""The GAN training loop: `train_and_evaluate(config, workdir)`.

Rounds run in chunks of up to `train.rounds_per_call` fused by `lax.scan`; chunk boundaries fall
on every log, eval, metrics (`eval.fid_every`, when `eval.metrics` names any) and checkpoint step
and depend on the step alone, so a resumed run replays exactly the chunks of an uninterrupted
one. The bookkeeping around the loop (workdir, checkpoints, metrics, progress) is
`common.loop.Run`'s.
"""
from __future__ import annotations

import math

import ml_collections

from common import optim as optim_lib
from common import rng as rng_lib
from common import sharding
from common.errors import UserError, unknown_name
from common.loop import Run, TrainingDiverged, check_cadence, steps_to_boundary
from common.writers import read_metrics
from gan import conditional, evaluation, losses, models
from gan.data import build_data
from gan.evaluator import Evaluator
from gan.state import build_models, compute_dtype, init_state
from gan.steps import GanSteps, chunk_means

__all__ = ['TrainingDiverged', 'train_and_evaluate', 'validate']

ADVICE = 'lower the learning rates or add a gradient penalty'
JS_MAX = 0.99 * math.log(2)  # JS of 2D histograms that no longer overlap at all


def validate(config: ml_collections.ConfigDict) -> None:
  """Reject bad values before any work is done (each a one-line UserError)."""
  t, o = config.train, config.optim
  for key in ('g_lr', 'd_lr'):
    if not o[key] > 0:
      raise UserError(f'optim.{key} must be positive, got {o[key]}')
  optim_lib.check(o)
  check_cadence(t)
  if not config.guard.max_abs_loss >= 0 or not config.guard.js_patience >= 0:
    raise UserError('guard.max_abs_loss and guard.js_patience must be >= 0 (0: off), got '
                    f'{config.guard.max_abs_loss} and {config.guard.js_patience}')
  if config.data.batch_size <= 0:
    raise UserError(f'data.batch_size must be positive, got {config.data.batch_size}')
  for key in ('steps', 'n_d', 'n_g', 'rounds_per_call'):
    if t[key] < 1:
      raise UserError(f'train.{key} must be at least 1, got {t[key]}')
  if not 0 <= t.ema_decay < 1:
    raise UserError(f'train.ema_decay must be in [0, 1), got {t.ema_decay}')
  losses.get_loss(config.loss.name)
  if config.loss.gp_weight < 0 or config.loss.r1_gamma < 0:
    raise UserError('loss.gp_weight and loss.r1_gamma must be >= 0')
  if config.loss.get('r1_every', 1) < 1:
    raise UserError(f'loss.r1_every must be >= 1 (1 = R1 every round), got {config.loss.r1_every}')
  if config.model.name not in models.MODELS:
    raise unknown_name('model.name', config.model.name, models.MODELS)
  compute_dtype(config.model.dtype)
  if config.model.num_classes < 0:
    raise UserError('model.num_classes must be >= 0 (0: unconditional), got '
                    f'{config.model.num_classes}')
  if config.model.num_classes > 0:
    conditional.check_config(config.model, config.data.name)
  metric_names = evaluation.parse_metrics(config.eval.metrics)
  if metric_names and config.eval.fid_every < 1:
    raise UserError(f'eval.fid_every must be at least 1, got {config.eval.fid_every}')
  evaluation.check_metrics(config, metric_names, config.eval.num_samples,
                           config.eval.inception_weights, config.eval.reference_stats)
  sharding.check_param_mode(config.sharding.params, config.sharding.min_size)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       return_state: bool = False):
  """Train (or resume) the GAN in `config`, writing the workdir contract.

  Returns the summary dict, or (summary, final train state) with `return_state`.
  """
  validate(config)
  gdata = build_data(config)
  generator, discriminator = build_models(config, gdata.shape)
  mesh = sharding.data_mesh()
  sharding.check_batch(config.data.batch_size, mesh)
  t, total = config.train, config.train.steps
  run = Run(workdir, config, total, keep=t.keep_checkpoints, desc='gan', unit='round')
  steps = GanSteps(generator, discriminator, config, gdata.real_fn, mesh)
  key = rng_lib.root_key(config.seed)
  state = init_state(steps, config, rng_lib.stream(key, 'init'), gdata.shape, mesh)
  state, meta, done = run.restore(state)
  if done is not None:
    return (done, state) if return_state else done
  if gdata.iterator is not None and run.step:
    gdata.iterator.set_state(meta['data'])
  run.start()
  history = [m for m in read_metrics(workdir) if 'loss_d' in m] if run.step else []
  evaluator = Evaluator(config, steps, gdata, workdir, rng_lib.stream(key, 'eval'), run.writer)
  everys = (t.log_every, t.eval_every, t.checkpoint_every,
            config.eval.fid_every if evaluator.metrics else 0)
  last_eval, js_at_max = {}, 0
  meta = lambda: {'data': gdata.iterator.get_state()} if gdata.iterator is not None else {}
  while run.step < total:
    step = run.step
    k = min(t.rounds_per_call, steps_to_boundary(step, total, *everys))
    batches = gdata.next_chunk(k, t.n_d, mesh, length=t.rounds_per_call)
    with run.throughput.call(k):  # chunks are padded to one length: only the first compiles
      state, chunk = steps.train_chunk(state, batches, k)
    run.check_losses(chunk, f'between rounds {step} and {step + k}', ADVICE,
                     config.guard.max_abs_loss)
    row = chunk_means(chunk)
    run.advance(k, row)
    if run.is_due(t.log_every):
      run.write(row)
      history.append({'step': run.step, **row})
    if evaluator.due(run.step, total):
      last_eval = evaluator(state, run.step, history, total)
      if last_eval:
        run.write(last_eval)
      js_at_max = js_at_max + 1 if last_eval.get('js', 0.0) >= JS_MAX else 0
      if config.guard.js_patience and js_at_max >= config.guard.js_patience:
        run.diverged(f'JS divergence stayed at its ln 2 maximum for {js_at_max} evaluations '
                     f'(up to round {run.step})', ADVICE)
    run.checkpoint(state, meta, due=run.is_due(t.checkpoint_every))
  evaluator.finish(history)
  rate = run.throughput.rate()
  summary = {'step': run.step, **last_eval, **evaluator.floor(last_eval),
             **({'rounds_per_sec': rate} if rate else {}),
             **({k: v for k, v in history[-1].items() if k != 'step'} if history else {})}
  run.finish(summary)
  return (summary, state) if return_state else summary
