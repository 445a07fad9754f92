"""One transfer-learning run: `run(config, workdir)` trains one mode and seed, then evaluates.

Each phase (`transfer.steps.plan_phases`) runs for `train.epochs` (phases that train the
backbone) or `train.head_epochs` (head-only phases); head-only phases train on cached backbone
features when nothing could change them (no augmentation, BatchNorm in inference mode).
One code path serves 1 device and many (`common.sharding.data_mesh`): in a multi-process run
each process reads its slice of every batch and process 0 alone writes metrics and images.
The bookkeeping around the loop (workdir, checkpoints, metrics, progress) is
`common.loop.Run`'s.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import time
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from common import data as common_data
from common import distributed
from common import rng as rng_lib
from common import sharding
from common.errors import UserError
from common.loop import Run, is_due, steps_to_boundary
from transfer import data as data_lib
from transfer import convert, evaluate, features, freeze, heads, models, precise_bn, selection
from transfer import steps as steps_lib
from transfer import weights as weights_lib
from transfer.validation import validate

@dataclasses.dataclass
class _Context:
  """What the loop needs about one run, resolved once, and its train metrics since the last
  log row (`window`; a checkpoint between log rows keeps them). With a validation split,
  `select` tracks the best evaluation and `best` holds its weights."""
  config: ml_collections.ConfigDict
  workdir: str
  data: data_lib.TransferData
  model: Any  # a transfer.models model
  style: str
  weights: str
  mesh: Mesh
  phases: list[steps_lib.Phase]
  fns: list[steps_lib.PhaseFns]
  cached: list[bool]  # whether each phase trains on cached backbone features
  eval_every: int  # steps between evaluations (validation when there is a split, else test)
  select: selection.Selection | None = None
  best: dict | None = None
  window: list[dict] = dataclasses.field(default_factory=list)
  last_train: dict = dataclasses.field(default_factory=dict)
  bn_stats_fn: Any = None  # train.precise_bn: built on first use

  def cached_split(self, variables, split: str) -> tuple[np.ndarray, np.ndarray]:
    source, key = {'train': (self.data.train, self.data.train_key),
                   'val': (self.data.val, self.data.val_key),
                   'test': (self.data.test, self.data.test_key)}[split]
    cache_dir = self.config.features.dir or os.path.join(self.workdir, 'features')
    name = (f'{key}-{weights_lib.feature_key(self.weights, self.style, self.config.seed)}'
            + features_tag(self.model))
    return features.cached_features(cache_dir, name, self.model, variables, self.style, source,
                                    self.config.data.eval_batch_size, self.mesh)


def features_tag(model) -> str:
  """Names the head's input in feature-cache files: '' for globally pooled features."""
  if model.head == 'global_pool' or (model.head is None and models.ARCHS[model.arch] != 'vgg'):
    return ''
  return f'-{model.head or "top"}'


def _evaluate(ctx: _Context, state: dict, backbone_unchanged: bool, split: str = 'test') -> dict:
  """Metrics of `split` (test or val); an untouched frozen backbone is evaluated through cached
  features."""
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  source = ctx.data.val if split == 'val' else ctx.data.test
  if backbone_unchanged and ctx.config.features.cache:
    feats, labels = ctx.cached_split(variables, split)
    logits = distributed.to_host(steps_lib.head_fn()(heads.top_params(state['params']), feats))
  else:
    fn = features.sharded_forward(ctx.model, ctx.style, ctx.mesh)
    batch = ctx.config.data.eval_batch_size
    if split == 'val':  # a small split evaluated often: no padding to a large batch
      batch = min(batch, len(source))
    logits, labels = evaluate.predict(lambda x: fn(variables, x)[0], source, batch)
  return evaluate.classification_metrics(logits, labels, ctx.data.num_classes)


def _for_evaluation(ctx: _Context, i: int, state: dict) -> dict:
  """`state` as phase i evaluates it: with `train.precise_bn`, and when the phase trains
  BatchNorm on images, the statistics of the BatchNorms it trains re-estimated on training
  batches (transfer/precise_bn.py); the training state itself is left as it is."""
  num_batches = ctx.config.train.precise_bn
  if (not num_batches or ctx.cached[i] or not ctx.phases[i].bn_train
      or not jax.tree.leaves(state['batch_stats'])):
    return state
  if ctx.bn_stats_fn is None:
    ctx.bn_stats_fn = precise_bn.statistics_fn(ctx.model, ctx.style)
  stats = precise_bn.estimate(ctx.bn_stats_fn, state, ctx.data.train, ctx.config.data.batch_size,
                              num_batches, ctx.data.image_size)
  stats = freeze.keep_frozen_stats(stats, state['batch_stats'], ctx.fns[i].labels)
  return {**state, 'batch_stats': stats}


def _test_row(m: dict) -> dict:
  """Test metrics for metrics.jsonl; top-5 only where there are more than 5 classes."""
  top5 = {} if m['top5'] is None else {'test_top5': m['top5']}
  return {'test_top1': m['top1'], **top5, 'test_loss': m['loss']}


def _mean_rows(rows: list[dict]) -> dict:
  return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _finite(x: float) -> float | None:
  return None if not math.isfinite(x) else float(x)


def _phase_batches(ctx: _Context, i: int, state: dict, meta: dict):
  """(batch iterator, steps per call) of phase i; each process reads its slice of every
  global batch, and a checkpoint taken in this phase restores the iterator's position."""
  config = ctx.config
  if ctx.cached[i]:
    feats, labels = ctx.cached_split(state, 'train')
    source = common_data.ArraySource({'feature': feats, 'label': labels})
    per_call = config.features.steps_per_call
  else:
    source, per_call = ctx.data.train, config.train.steps_per_call
  it = common_data.BatchIterator(common_data.batched(
      source, config.data.batch_size, seed=config.seed * 1009 + i,
      shard_index=jax.process_index(), shard_count=jax.process_count()))
  if meta.get('phase') == i and 'data' in meta:
    it.set_state(meta['data'])
  return it, per_call


def _train_phase(run: Run, ctx: _Context, i: int, state: dict, meta: dict,
                 aug_key: jax.Array) -> dict:
  """Phase i from `run.step` to its end; returns the state."""
  ph, fn, t, mesh = ctx.phases[i], ctx.fns[i], ctx.config.train, ctx.mesh
  it, per_call = _phase_batches(ctx, i, state, meta)
  while run.step < ph.end:
    step = run.step
    room = steps_to_boundary(step, ph.end, t.log_every, ctx.eval_every, t.checkpoint_every)
    # Image steps: full chunks, and single steps up to a log/eval/checkpoint boundary or a
    # phase end that the chunk length does not divide, so at most two compilations of the
    # heavy step. The cheap cached-feature head takes any chunk length.
    k = min(per_call, room) if ctx.cached[i] else (per_call if room >= per_call else 1)
    with run.throughput.call(k, shape=(i, k)):
      local = it.take(k)
      local.pop('index', None)
      batches = {name: sharding.global_batch(v, mesh, batch_axis=1) for name, v in local.items()}
      sub = {'params': state['params'], 'batch_stats': state['batch_stats'],
             'opt': state['opt'][f'phase{i}']}
      sub, metrics = fn.chunk(sub, batches, steps_lib.hparams(ph, ctx.config, step, aug_key,
                                                              mesh))
      state = {'params': sub['params'], 'batch_stats': sub['batch_stats'],
               'opt': {**state['opt'], f'phase{i}': sub['opt']}}
      metrics = jax.tree.map(distributed.to_host, metrics)
    run.check_losses({'loss': metrics['loss']}, f'near step {step} in phase {ph.name}',
                     'lower the learning rates', ctx.config.guard.max_abs_loss)
    ctx.window += [{name: float(v[j]) for name, v in metrics.items()} for j in range(k)]
    run.advance(k, ctx.window[-1])
    if run.is_due(t.log_every, end=ph.end):
      ctx.last_train = _mean_rows(ctx.window)
      run.write({**ctx.last_train, 'phase': ph.name})
      ctx.window = []
    stop = False
    if ctx.select is not None:
      if is_due(run.step, ctx.eval_every, end=ph.end):
        stop = _validate(run, ctx, i, state)
    elif run.step < run.total and is_due(run.step, ctx.eval_every):
      run.write(_test_row(_evaluate(ctx, _for_evaluation(ctx, i, state),
                                    all(ctx.cached[:i + 1]))))
    if stop:
      run.advance(ph.end - run.step)  # the phase ends here
    saved = state if ctx.best is None else {**state, 'best': ctx.best}
    run.checkpoint(saved, lambda: {'phase': i, 'data': it.get_state(), 'window': ctx.window,
                                   'selection': ctx.select.state() if ctx.select else None},
                   due=run.is_due(t.checkpoint_every) or stop)
  return state


def _validate(run: Run, ctx: _Context, i: int, state: dict) -> bool:
  """Evaluates the validation split, keeps the weights if they are the best so far; True when
  the phase should stop early."""
  state = _for_evaluation(ctx, i, state)  # the weights kept are the ones evaluated
  m = _evaluate(ctx, state, all(ctx.cached[:i + 1]), 'val')
  row = {'val_top1': m['top1'], 'val_loss': m['loss'],
         **({} if m['top5'] is None else {'val_top5': m['top5']})}
  sel = ctx.select
  if sel.update(row, run.step):
    ctx.best = selection.snapshot(state)
  row[f'best_{sel.metric}'] = sel.best
  stop = sel.should_stop() and run.step < ctx.phases[i].end
  if stop:
    sel.stopped.append(ctx.phases[i].name)
    row['early_stop'] = ctx.phases[i].name
    if ctx.window:  # the train metrics since the last log row
      run.write({**_mean_rows(ctx.window), 'phase': ctx.phases[i].name})
      ctx.window = []
  run.write(row)
  return stop


def _summary(run: Run, ctx: _Context, state: dict, train_seconds: float) -> dict:
  """The final test evaluation (confusion matrix, metrics row) and the run's summary."""
  m = _evaluate(ctx, state, all(ctx.cached))
  names, config = ctx.data.class_names, ctx.config
  if distributed.is_main():
    path = os.path.join(ctx.workdir, 'images', 'confusion.png')
    evaluate.save_confusion_png(path, m['confusion'], names, title=f'{config.mode}, seed '
                                f'{config.seed}: top-1 {m["top1"]:.3f}')
    run.writer.image_file('confusion', run.step, path)
  run.write(_test_row(m))
  rate = run.throughput.rate()
  return {
      'step': run.step, 'mode': config.mode, 'seed': config.seed, 'top1': m['top1'],
      **({} if m['top5'] is None else {'top5': m['top5']}), 'test_loss': m['loss'],
      'per_class_accuracy': {str(n): _finite(a) for n, a in zip(names, m['per_class'])},
      'phases': [p.name for p in ctx.phases], 'cached_features': [bool(c) for c in ctx.cached],
      'num_train': len(ctx.data.train), 'num_test': len(ctx.data.test), 'weights': ctx.weights,
      **_selection_summary(ctx),
      'preprocess_style': ctx.style, 'train_seconds': train_seconds,
      **{f'train_{k}': v for k, v in ctx.last_train.items() if k != 'lr'},
      **({'train_images_per_sec': rate * config.data.batch_size} if rate else {}),
  }


def _selection_summary(ctx: _Context) -> dict:
  if ctx.select is None:
    return {}
  sel = ctx.select
  return {'num_val': len(ctx.data.val), 'selected_step': sel.best_step,
          f'selected_{sel.metric}': sel.best, 'stopped_early': list(sel.stopped)}


def export_weights(ctx: _Context, variables: dict) -> str:
  """The selected weights as `WORKDIR/weights` (converted-weights format, with the class names
  and the preprocessing), for launch.predict and as weights of later runs."""
  config, m = ctx.config, ctx.model
  out = os.path.join(ctx.workdir, 'weights')
  if os.path.exists(out):
    shutil.rmtree(out)  # an export cut short: metadata.json is written last
  convert.save_converted(out, variables, {
      'arch': m.arch, 'style': m.style, 'include_top': True, 'num_classes': m.num_classes,
      'preprocess_style': ctx.style, 'head': m.head, 'head_hidden': list(m.head_hidden),
      'head_dropout': m.head_dropout, 'image_size': config.data.image_size,
      # Digits are resized whole; other data as the eval transform (resize, centre crop).
      'resize_size': (config.data.image_size if config.data.name == 'digits'
                      else config.data.resize_size),
      'class_names': [str(n) for n in ctx.data.class_names],
      'source': f'transfer run in {os.path.abspath(ctx.workdir)} ({config.mode}, seed '
                f'{config.seed})',
      'selected_step': ctx.select.best_step if ctx.select else None})
  return out


def run(config: ml_collections.ConfigDict, workdir: str,
        weights: str | Callable[[], str] | None = None) -> tuple[dict, dict | None]:
  """Train (or resume) one run; returns (summary, final {'params', 'batch_stats'}).

  `weights` replaces `config.model.weights`; a callable is called once the config, data and
  workdir have been checked (transfer.train pretrains the source model for 'pretrain' that
  way). The variables are None when the run had finished before and kept no checkpoint.
  """
  validate(config)  # the batch is checked against the devices here, before any heavy work
  mesh = sharding.data_mesh()
  data = data_lib.load_data(config.data, seed=config.seed)
  batch = config.data.batch_size
  if batch > len(data.train):
    kept = (f', data.train_per_class={config.data.train_per_class} per class'
            if config.data.train_per_class else '')
    raise UserError(f'data.batch_size {batch} is larger than the training split '
                    f'({len(data.train)} examples{kept}); lower data.batch_size'
                    + (' or raise data.train_per_class (0: all)' if kept else ''))
  model = models.model_for(config, data.num_classes)
  steps_per_epoch = len(data.train) // batch
  phases = steps_lib.plan_phases(config, steps_per_epoch)
  run_ = Run(workdir, config, phases[-1].end, keep=config.train.keep_checkpoints,
             checkpoint=config.train.checkpoint, desc=config.mode)
  weights, style = weights_lib.resolve_weights(config, weights() if callable(weights) else weights)
  if not weights and config.mode != 'scratch' and distributed.is_main():
    print(f'note: model.weights is empty, so {config.mode} starts from a random backbone',
          flush=True)
  weights_lib.check_head(config, weights, data.num_classes)
  fns, cached = steps_lib.phase_functions(config, model, style, data.image_size, phases, mesh)
  key = rng_lib.root_key(config.seed)
  variables = weights_lib.init_variables(model, config, weights, rng_lib.stream(key, 'init'))
  t = config.train
  ctx = _Context(config, workdir, data, model, style, weights, mesh, phases, fns, cached,
                 eval_every=(t.eval_every or steps_per_epoch) if data.val else t.eval_every)
  state = {'params': variables['params'], 'batch_stats': variables['batch_stats'],
           'opt': {f'phase{i}': f.tx.init(variables['params']) for i, f in enumerate(fns)}}
  if data.val is not None:
    ctx.select = selection.Selection(t.select, t.patience, t.min_delta)
    state['best'] = selection.snapshot(state)
  # Replicated (committed) arrays everywhere, like the step's outputs: a mix would compile twice.
  state, meta, done = run_.restore(sharding.replicate(state, mesh))
  if ctx.select is not None:
    ctx.best = state.pop('best')
    ctx.select.restore(meta.get('selection'))
  final = lambda s: ctx.best or {'params': s['params'], 'batch_stats': s['batch_stats']}
  if done is not None:
    if run_.step < run_.total:
      return done, None
    return done, final(state if ctx.best else _for_evaluation(ctx, len(phases) - 1, state))
  run_.start()
  ctx.window = list(meta.get('window', []))
  aug_key = rng_lib.stream(key, 'augment')
  t0 = time.perf_counter()
  for i, phase in enumerate(phases):
    if run_.step < phase.end:
      if ctx.select is not None and i > 0 and run_.step == phase.start:
        state = {**state, **selection.snapshot(ctx.best)}  # a phase starts from the best weights
        ctx.select.waited = 0
      state = _train_phase(run_, ctx, i, state, meta, aug_key)
  if ctx.best is not None:
    state = {**state, **ctx.best}  # the selected weights are the ones tested
  else:
    state = _for_evaluation(ctx, len(phases) - 1, state)
  jax.block_until_ready(state)
  summary = _summary(run_, ctx, state, time.perf_counter() - t0)
  if config.train.checkpoint:
    export_weights(ctx, final(state))
  return run_.finish(summary), final(state)
