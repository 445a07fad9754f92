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
import time
from typing import Callable

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh

from common import data as common_data
from common import distributed
from common import optim as optim_lib
from common import rng as rng_lib
from common import sharding
from common.errors import UserError, unknown_name
from common.loop import Run, check_cadence, is_due, steps_to_boundary
from transfer import data as data_lib
from transfer import evaluate, features, freeze, resnet
from transfer import steps as steps_lib
from transfer import weights as weights_lib

RULE_LABELS = ('trainable', 'head', 'backbone', 'stem', *freeze.STAGES)


def validate(config: ml_collections.ConfigDict) -> None:
  """Reject bad values before any work is done (each a one-line UserError)."""
  if config.mode not in freeze.MODES:
    raise unknown_name('mode', config.mode, freeze.MODES)
  o, t, f, m = config.optim, config.train, config.freeze, config.model
  optim_lib.check(o)
  check_cadence(t)
  for key in ('lr', 'head_lr'):
    if not o[key] > 0:
      raise UserError(f'optim.{key} must be positive, got {o[key]}')
  for key in ('epochs', 'head_epochs'):
    if not t[key] >= 1:
      raise UserError(f'train.{key} must be at least 1, got {t[key]}')
  if not config.guard.max_abs_loss >= 0:
    raise UserError(f'guard.max_abs_loss must be >= 0 (0: off), got {config.guard.max_abs_loss}')
  if not t.two_phase_lr_scale > 0:
    raise UserError(f'train.two_phase_lr_scale must be positive, got {t.two_phase_lr_scale}')
  if config.data.batch_size < 1 or config.data.eval_batch_size < 1:
    raise UserError('data.batch_size and data.eval_batch_size must be at least 1')
  if f.backbone_lr_mult < 0 or not 0 < f.layer_decay <= 1:
    raise UserError(f'freeze.backbone_lr_mult must be >= 0 and freeze.layer_decay in (0, 1]; got '
                    f'{f.backbone_lr_mult} and {f.layer_decay}')
  for rule in f.rules:
    if len(rule) != 2 or not all(isinstance(x, str) for x in rule):
      raise UserError(f'freeze.rules entries must be (regex, label) pairs, got {rule!r}')
    if rule[1] not in RULE_LABELS and rule[1] != freeze.FROZEN:
      raise unknown_name('freezing label', rule[1], (*RULE_LABELS, freeze.FROZEN))
  if config.mode == 'partial' and not 1 <= f.trainable_stages <= 4:
    raise UserError(f'freeze.trainable_stages must be in 1..4, got {f.trainable_stages}')
  resnet.arch_spec(m.arch, m.style)
  weights_lib.check_weights(config)  # a mismatched file is named now, not after the data loads
  if m.weights and m.weights != weights_lib.PRETRAIN and not os.path.exists(m.weights):
    raise UserError(f'weights {m.weights!r} not found; convert them with python -m launch.convert '
                    'or fix model.weights')
  if m.include_top and (config.mode == 'scratch' or not m.weights):
    raise UserError('model.include_top=True keeps the weights\' classifier, but this run has no '
                    'pretrained weights; set model.include_top=False')
  if not 0 < config.data.crop_scale <= 1:
    raise UserError(f'data.crop_scale must be in (0, 1], got {config.data.crop_scale}')
  for name in ('features', 'train'):
    if config[name].steps_per_call < 1:
      raise UserError(f'{name}.steps_per_call must be at least 1, got '
                      f'{config[name].steps_per_call}')
  mesh = sharding.data_mesh()
  sharding.check_batch(config.data.batch_size, mesh)
  n = mesh.devices.size
  if m.weights == weights_lib.PRETRAIN and config.mode != 'scratch' and config.pretrain.batch_size % n:
    raise UserError(f'pretrain.batch_size {config.pretrain.batch_size} is not divisible by the '
                    f'{n} devices; use a multiple of {n}')


@dataclasses.dataclass
class _Context:
  """What the loop needs about one run, resolved once, and its train metrics since the last
  log row (`window`; a checkpoint between log rows keeps them)."""
  config: ml_collections.ConfigDict
  workdir: str
  data: data_lib.TransferData
  model: resnet.ResNet
  style: str
  weights: str
  mesh: Mesh
  phases: list[steps_lib.Phase]
  fns: list[steps_lib.PhaseFns]
  cached: list[bool]  # whether each phase trains on cached backbone features
  window: list[dict] = dataclasses.field(default_factory=list)
  last_train: dict = dataclasses.field(default_factory=dict)

  def cached_split(self, variables, split: str) -> tuple[np.ndarray, np.ndarray]:
    source, key = ((self.data.train, self.data.train_key) if split == 'train'
                   else (self.data.test, self.data.test_key))
    cache_dir = self.config.features.dir or os.path.join(self.workdir, 'features')
    name = f'{key}-{weights_lib.feature_key(self.weights, self.style, self.config.seed)}'
    return features.cached_features(cache_dir, name, self.model, variables, self.style, source,
                                    self.config.data.eval_batch_size, self.mesh)


def _evaluate(ctx: _Context, state: dict, backbone_unchanged: bool) -> dict:
  """Test metrics; the frozen, untouched backbone is evaluated through cached features."""
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  if backbone_unchanged and ctx.config.features.cache:
    feats, labels = ctx.cached_split(variables, 'test')
    logits = distributed.to_host(steps_lib.head_fn()(state['params']['head'], feats))
  else:
    fn = features.sharded_forward(ctx.model, ctx.style, ctx.mesh)
    logits, labels = evaluate.predict(lambda x: fn(variables, x)[0], ctx.data.test,
                                      ctx.config.data.eval_batch_size)
  return evaluate.classification_metrics(logits, labels, ctx.data.num_classes)


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
    room = steps_to_boundary(step, ph.end, t.log_every, t.eval_every, t.checkpoint_every)
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
    if run.step < run.total and is_due(run.step, t.eval_every):
      run.write(_test_row(_evaluate(ctx, state, all(ctx.cached[:i + 1]))))
    run.checkpoint(state, lambda: {'phase': i, 'data': it.get_state(), 'window': ctx.window},
                   due=run.is_due(t.checkpoint_every))
  return state


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
      'preprocess_style': ctx.style, 'train_seconds': train_seconds,
      **{f'train_{k}': v for k, v in ctx.last_train.items() if k != 'lr'},
      **({'train_images_per_sec': rate * config.data.batch_size} if rate else {}),
  }


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
  model = resnet.create_model(config.model.arch, data.num_classes, config.model.style)
  phases = steps_lib.plan_phases(config, len(data.train) // batch)
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
  ctx = _Context(config, workdir, data, model, style, weights, mesh, phases, fns, cached)
  state = {'params': variables['params'], 'batch_stats': variables['batch_stats'],
           'opt': {f'phase{i}': f.tx.init(variables['params']) for i, f in enumerate(fns)}}
  # Replicated (committed) arrays everywhere, like the step's outputs: a mix would compile twice.
  state, meta, done = run_.restore(sharding.replicate(state, mesh))
  final = lambda s: {'params': s['params'], 'batch_stats': s['batch_stats']}
  if done is not None:
    return done, final(state) if run_.step >= run_.total else None
  run_.start()
  ctx.window = list(meta.get('window', []))
  aug_key = rng_lib.stream(key, 'augment')
  t0 = time.perf_counter()
  for i, phase in enumerate(phases):
    if run_.step < phase.end:
      state = _train_phase(run_, ctx, i, state, meta, aug_key)
  jax.block_until_ready(state)
  summary = _summary(run_, ctx, state, time.perf_counter() - t0)
  return run_.finish(summary), final(state)
