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

from common import rng as rng_lib
from common import sharding
from common.errors import UserError
from common.loop import Run, TrainingDiverged, steps_to_boundary
from common.writers import read_metrics
from gan import edits
from gan.data import build_data
from gan.evaluator import Evaluator
from gan.state import build_models, init_state
from gan.steps import GanSteps, chunk_means, hyperparams
from gan.validation import validate, validate_edits

__all__ = ['TrainingDiverged', 'UserError', 'train_and_evaluate', 'validate', 'validate_edits']

ADVICE = 'lower the learning rates or add a gradient penalty'
JS_MAX = 0.99 * math.log(2)  # JS of 2D histograms that no longer overlap at all


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       return_state: bool = False):
  """Train (or resume) the GAN in `config`, writing the workdir contract.

  Returns the summary dict, or (summary, final train state) with `return_state`.
  """
  validate(config)
  edit_list = validate_edits(config)
  gdata = build_data(config)
  mesh = sharding.data_mesh()
  sharding.check_batch(config.data.batch_size, mesh)
  t, total = config.train, config.train.steps
  run = Run(workdir, config, total, keep=t.keep_checkpoints, desc='gan', unit='round')
  # The config in force where the run resumes: the edits of earlier rounds applied.
  live = edits.at(config, edit_list, run.ckpt.latest_step() or 0) if edit_list else config
  if live is not config:
    gdata = build_data(live)
  generator, discriminator = build_models(live, gdata.shape)
  steps = GanSteps(generator, discriminator, live, gdata.real_fn, mesh)
  key = rng_lib.root_key(config.seed)
  state = init_state(steps, live, rng_lib.stream(key, 'init'), gdata.shape, mesh)
  state, meta, done = run.restore(state)
  if done is not None:
    return (done, state) if return_state else done
  if gdata.iterator is not None and run.step:
    gdata.iterator.set_state(meta['data'])
  run.start()
  history = [m for m in read_metrics(workdir) if 'loss_d' in m] if run.step else []
  evaluator = Evaluator(live, steps, gdata, workdir, rng_lib.stream(key, 'eval'), run.writer)
  everys = (t.log_every, t.eval_every, t.checkpoint_every,
            config.eval.fid_every if evaluator.metrics else 0)
  last_eval, js_at_max = {}, 0
  iterator_meta = lambda: {'data': gdata.iterator.get_state()} if gdata.iterator is not None else {}
  while run.step < total:
    step = run.step
    if any(r == step for r, _, _ in edit_list):
      new = edits.at(config, edit_list, step, include_step=True)
      old_pieces = (gdata, steps)
      gdata, steps = edits.rebuild(live, new, gdata, steps, mesh)
      live = new
      if (gdata, steps) != old_pieces:
        state, _ = edits.carry_state(state, steps)
        evaluator = Evaluator(live, steps, gdata, workdir, rng_lib.stream(key, 'eval'),
                              run.writer)
    k = min(t.rounds_per_call, steps_to_boundary(step, total, *everys),
            (edits.next_round(edit_list, step) or total) - step)
    batches = gdata.next_chunk(k, live.train.n_d, mesh, length=t.rounds_per_call)
    with run.throughput.call(k, id(steps)):  # padded chunks: one compilation per steps
      state, chunk = steps.train_chunk(state, batches, k, hyperparams(live))
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
    run.checkpoint(state, iterator_meta, due=run.is_due(t.checkpoint_every))
  evaluator.finish(history)
  rate = run.throughput.rate()
  summary = {'step': run.step, **last_eval, **evaluator.floor(last_eval),
             **({'rounds_per_sec': rate} if rate else {}),
             **({k: v for k, v in history[-1].items() if k != 'step'} if history else {})}
  run.finish(summary)
  return (summary, state) if return_state else summary
