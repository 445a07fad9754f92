"""Transfer-learning loop: `train_and_evaluate(config, workdir)` for one mode and seed.

A mode is one or two phases (`plan_phases`). Each phase has its own freezing
rules, optimiser state and BatchNorm policy and runs for `train.epochs`
(phases that train the backbone) or `train.head_epochs` (head-only phases).
Head-only phases train on cached backbone features when nothing could change
them (no augmentation, BatchNorm in inference mode).

Learning rates and schedules are runtime arguments of the jitted step, so one
compilation serves every seed and every phase with the same structure.

One code path serves 1 device and many: the state is replicated over a mesh
of every device (`common.sharding.data_mesh`), each global batch is split
along its `data` axis, and BatchNorm statistics are those of the global batch.
In a multi-process run each process reads its slice of every batch and
process 0 alone writes metrics, the summary and images.
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh

from common import data as common_data
from common import distributed
from common import rng as rng_lib
from common import sharding
from common.checkpoint import Checkpointer
from common.errors import UserError, unknown_name
from common.progress import progress
from common.workdir import prepare_workdir
from common.writers import MetricWriter
from transfer import data as data_lib
from transfer import evaluate, features, freeze, preprocess, resnet
from transfer.preprocessing import random_resized_crop_flip

SCHEDULES = ('cosine', 'constant')
RULE_LABELS = ('trainable', 'head', 'backbone', 'stem', *freeze.STAGES)


@dataclasses.dataclass(frozen=True)
class Phase:
  """Steps [start, end) trained with one rule set, learning rate and BatchNorm policy."""
  name: str
  start: int
  end: int
  lr: float
  rules: tuple[tuple[str, str], ...]
  multipliers: tuple[tuple[str, float], ...]
  bn_train: bool


def _multipliers_for_custom_rules(f: ml_collections.ConfigDict) -> dict[str, float]:
  out = {'trainable': 1.0, 'head': 1.0, 'backbone': f.backbone_lr_mult, freeze.FROZEN: 0.0}
  for d, part in enumerate(('stage4', 'stage3', 'stage2', 'stage1', 'stem'), start=1):
    out[part] = f.backbone_lr_mult * f.layer_decay ** d
  return out


def plan_phases(config: ml_collections.ConfigDict, steps_per_epoch: int) -> list[Phase]:
  """The phases of `config.mode`, laid end to end in global steps."""
  f, t, o = config.freeze, config.train, config.optim
  phases: list[Phase] = []

  def add(name, rule_mode, epochs, lr, bn_train):
    rules, mults = freeze.mode_rules(rule_mode, trainable_stages=f.trainable_stages,
                                     backbone_lr_mult=f.backbone_lr_mult,
                                     layer_decay=f.layer_decay)
    if f.rules:
      rules, mults = [tuple(r) for r in f.rules], _multipliers_for_custom_rules(f)
    start = phases[-1].end if phases else 0
    phases.append(Phase(name, start, start + epochs * steps_per_epoch, lr,
                        tuple(tuple(r) for r in rules), tuple(sorted(mults.items())), bn_train))

  if config.mode == 'scratch':
    add('scratch', 'scratch', t.epochs, o.lr, True)
  elif config.mode == 'feature_extraction':
    add('feature_extraction', 'feature_extraction', t.head_epochs, o.head_lr, False)
  elif config.mode == 'two_phase':
    add('head', 'feature_extraction', t.head_epochs, o.head_lr, False)
    add('fine_tune', 'fine_tune', t.epochs, o.lr * t.two_phase_lr_scale, f.bn_train)
  else:
    add(config.mode, config.mode, t.epochs, o.lr, f.bn_train)
  return phases


def validate(config: ml_collections.ConfigDict) -> None:
  """Reject bad values before any work is done (each a one-line UserError)."""
  if config.mode not in freeze.MODES:
    raise unknown_name('mode', config.mode, freeze.MODES)
  o, t, f, m = config.optim, config.train, config.freeze, config.model
  if o.name not in freeze.OPTIMIZERS:
    raise unknown_name('optimizer', o.name, freeze.OPTIMIZERS)
  if o.schedule not in SCHEDULES:
    raise unknown_name('schedule', o.schedule, SCHEDULES)
  for key in ('lr', 'head_lr'):
    if not o[key] > 0:
      raise UserError(f'optim.{key} must be positive, got {o[key]}')
  if o.weight_decay < 0 or o.warmup_steps < 0:
    raise UserError('optim.weight_decay and optim.warmup_steps must be >= 0')
  for key in ('epochs', 'head_epochs', 'log_every'):
    if t[key] < 1:
      raise UserError(f'train.{key} must be at least 1, got {t[key]}')
  if t.eval_every < 0 or t.checkpoint_every < 0 or not t.two_phase_lr_scale > 0:
    raise UserError('train.eval_every and train.checkpoint_every must be >= 0 (0: at the end '
                    'only), train.two_phase_lr_scale > 0')
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
  if m.weights and m.weights != 'pretrain' and not os.path.exists(m.weights):
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
  if m.weights == 'pretrain' and config.mode != 'scratch' and config.pretrain.batch_size % n:
    raise UserError(f'pretrain.batch_size {config.pretrain.batch_size} is not divisible by the '
                    f'{n} devices; use a multiple of {n}')


# --- Weights ---------------------------------------------------------------------------------


def resolve_weights(config: ml_collections.ConfigDict, workdir: str) -> tuple[str, str]:
  """(weights path or '' for random init, preprocessing style that goes with them)."""
  m = config.model
  if config.mode == 'scratch' or not m.weights:
    return '', m.style
  path = m.weights
  if path == 'pretrain':
    from transfer import pretrain  # pretraining runs this module's loop
    path = pretrain.ensure_pretrained(config, config.pretrain.dir or
                                      os.path.join(workdir, 'pretrain'))
  style = m.style
  meta_path = os.path.join(path, 'metadata.json')
  if os.path.isdir(path) and os.path.exists(meta_path):
    with open(meta_path) as fh:
      meta = json.load(fh)
    style = meta.get('preprocess_style', meta.get('style', style))
  return path, style


@functools.lru_cache(maxsize=8)
def _init_fn(model: resnet.ResNet, image_size: int):
  # Compiled once per model: initialising a ResNet compiles for seconds, runs in milliseconds.
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return jax.jit(lambda key: model.init(key, x, train=False))


@functools.lru_cache(maxsize=2)
def _load_weights(path: str, weights_id: str, arch: str, style: str, include_top: bool) -> dict:
  """Host copies of converted weights; an ablation loads the same ones for every run."""
  from transfer import convert
  del weights_id  # part of the cache key only: changed files are read again
  return jax.tree.map(np.asarray, convert.load_weights(path, arch, style, include_top=include_top))


def init_variables(model: resnet.ResNet, config: ml_collections.ConfigDict, weights: str,
                   key: jax.Array) -> dict:
  """Random init, then the backbone (and with include_top the head) from `weights`."""
  variables = _init_fn(model, config.data.image_size)(key)
  variables = {'params': dict(variables['params']), 'batch_stats': variables['batch_stats']}
  if not weights:
    return variables
  m = config.model
  loaded = _load_weights(weights, features.weights_id(weights), m.arch, m.style, m.include_top)
  loaded = jax.tree.map(jnp.asarray, loaded)  # fresh buffers: the train step donates its state
  if m.include_top:
    head = loaded['params']['head']['bias'].shape[0]
    if head != model.num_classes:
      raise UserError(f'the weights in {weights} have a {head}-class head but the data has '
                      f'{model.num_classes} classes; set model.include_top=False to train a '
                      'new head')
  params = dict(variables['params'])
  params.update({k: v for k, v in loaded['params'].items()})
  return {'params': params, 'batch_stats': loaded['batch_stats']}


def _check_head(config: ml_collections.ConfigDict, weights: str, num_classes: int) -> None:
  """include_top with a converted directory: compare class counts before any heavy work."""
  meta_path = os.path.join(weights, 'metadata.json') if weights else ''
  if not (config.model.include_top and os.path.isfile(meta_path)):
    return  # original weight files are checked when they are loaded
  with open(meta_path) as fh:
    meta = json.load(fh)
  if not meta.get('include_top'):
    raise UserError(f'the weights in {weights} have no classifier head; set '
                    'model.include_top=False to train a new head')
  if meta.get('num_classes') != num_classes:
    raise UserError(f'the weights in {weights} have a {meta.get("num_classes")}-class head but '
                    f'the data has {num_classes} classes; set model.include_top=False to train '
                    'a new head')


@functools.lru_cache(maxsize=8)
def _abstract_params(model: resnet.ResNet, image_size: int):
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)['params']


def _phase_functions(config: ml_collections.ConfigDict, model: resnet.ResNet, style: str,
                     image_size: int, phases: list[Phase], mesh: Mesh | None = None
                     ) -> tuple[list[PhaseFns], list[bool]]:
  """Each phase's step functions, and whether it trains on cached features."""
  o = config.optim
  fns, cached = [], []
  for ph in phases:
    spec = step_spec(model, style, image_size, ph.rules, dict(ph.multipliers),
                     optimizer=o.name, weight_decay=o.weight_decay, momentum=o.momentum, b1=o.b1,
                     b2=o.b2, decay_norm_and_bias=o.decay_norm_and_bias, bn_train=ph.bn_train,
                     augment=config.data.augment, crop_scale=config.data.crop_scale, mesh=mesh)
    probe = phase_fns(spec)
    head_only = all(l == freeze.FROZEN or p[0] == 'head' for p, l in spec.labels)
    # Cached features hold only while every earlier phase left the backbone alone too.
    use_cache = (head_only and all(cached) and config.features.cache and not config.data.augment
                 and not ph.bn_train)
    cached.append(use_cache)
    fns.append(phase_fns(dataclasses.replace(spec, cached=True)) if use_cache else probe)
  return fns, cached


def feature_key(weights: str, style: str, seed: int) -> str:
  """Names the backbone and preprocessing in feature-cache file names."""
  return f'{features.weights_id(weights)}-{style}' if weights else f'random{seed}-{style}'


# --- Steps -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Everything that shapes a compiled step (hashable, so steps are shared across runs)."""
  model: resnet.ResNet
  style: str
  image_size: int
  labels: tuple  # ((parameter path, freeze.group_labels label), ...)
  optim: tuple  # (name, weight_decay, momentum, b1, b2)
  bn_train: bool
  augment: bool
  cached: bool
  crop_scale: float = 0.08  # smallest crop area fraction of the train augmentation
  mesh: Mesh | None = None  # batches split along its `data` axis, state replicated over it


def step_spec(model: resnet.ResNet, style: str, image_size: int, rules, multipliers: dict, *,
              optimizer: str = 'adamw', weight_decay: float = 0.0, momentum: float = 0.9,
              b1: float = 0.9, b2: float = 0.999, decay_norm_and_bias: bool = False,
              bn_train: bool = False, augment: bool = False, cached: bool = False,
              crop_scale: float = 0.08, mesh: Mesh | None = None) -> StepSpec:
  """The StepSpec of a phase trained with freezing `rules` and lr `multipliers`."""
  labels = freeze.group_labels(_abstract_params(model, image_size), rules, multipliers,
                               weight_decay=weight_decay, decay_norm_and_bias=decay_norm_and_bias)
  flat = tuple(sorted(traverse_util.flatten_dict(labels).items()))
  return StepSpec(model, style, image_size, flat, (optimizer, weight_decay, momentum, b1, b2),
                  bn_train, augment, cached, crop_scale, mesh)


@dataclasses.dataclass
class PhaseFns:
  tx: optax.GradientTransformation
  labels: Any
  chunk: Any  # (state, batches [k, ...], hparams) -> (state, metrics [k])


def _lr(hp: dict, t: jax.Array) -> jax.Array:
  s = (t - hp['start']).astype(jnp.float32)
  warm = jnp.minimum(1.0, (s + 1.0) / jnp.maximum(hp['warmup'], 1.0))
  cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * s / hp['steps']))
  return hp['lr'] * warm * jnp.where(hp['cosine'], cosine, 1.0)


@functools.lru_cache(maxsize=16)
def phase_fns(spec: StepSpec) -> PhaseFns:
  """The optimiser, labels and jitted multi-step function of one phase."""
  model = spec.model
  labels = traverse_util.unflatten_dict(dict(spec.labels))
  name, wd, momentum, b1, b2 = spec.optim
  tx = freeze.optimizer_for_labels(labels, optimizer=name, weight_decay=wd, momentum=momentum,
                                   b1=b1, b2=b2)

  def step(state, inputs, hp):
    batch, i = inputs
    t = hp['step0'] + i
    lr = _lr(hp, t)
    trainable, frozen = freeze.split_trainable(state['params'], labels)
    y = batch['label']
    if spec.cached:
      x = batch['feature']
    else:
      x = batch['image']
      if spec.augment:
        x = random_resized_crop_flip(jax.random.fold_in(hp['key'], t), x, spec.image_size,
                                     scale=(spec.crop_scale, 1.0))
      x = sharding.constrain_batch(preprocess(x, spec.style), spec.mesh)

    def loss_fn(tr):
      stats = state['batch_stats']
      if spec.cached:
        logits = features.head_logits({'kernel': tr[('head', 'kernel')],
                                       'bias': tr[('head', 'bias')]}, x)
      else:
        variables = {'params': freeze.merge(tr, frozen), 'batch_stats': stats}
        if spec.bn_train:
          logits, upd = model.apply(variables, x, train=True, mutable=['batch_stats'])
          stats = upd['batch_stats']
        else:
          logits = model.apply(variables, x, train=False)
      loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
      return loss, (logits, stats)

    (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(trainable)
    grads = freeze.merge(grads, jax.tree.map(jnp.zeros_like, frozen))
    updates, opt = tx.update(grads, state['opt'], state['params'])
    params = freeze.apply_updates(state['params'], updates, labels, lr)
    if spec.bn_train:
      stats = freeze.keep_frozen_stats(stats, state['batch_stats'], labels)
    acc = jnp.mean(jnp.argmax(logits, -1) == y)
    return ({'params': params, 'batch_stats': stats, 'opt': opt},
            {'loss': loss, 'accuracy': acc, 'lr': lr})

  def chunk(state, batches, hp):
    k = batches['label'].shape[0]
    return jax.lax.scan(lambda s, inp: step(s, inp, hp), state, (batches, jnp.arange(k)))

  # With a mesh, the new state and the metrics come back replicated over it.
  out = {} if spec.mesh is None else {'out_shardings': sharding.replicated(spec.mesh)}
  return PhaseFns(tx, labels, jax.jit(chunk, donate_argnums=0, **out))


@functools.lru_cache(maxsize=1)
def _head_fn():
  return jax.jit(features.head_logits)


# --- Loop ------------------------------------------------------------------------------------


@dataclasses.dataclass
class _Run:
  """What the loop needs about one run, resolved once."""
  config: ml_collections.ConfigDict
  workdir: str
  data: data_lib.TransferData
  model: resnet.ResNet
  style: str
  weights: str
  feature_key: str  # identifies the backbone and preprocessing in feature-cache names
  mesh: Mesh

  def cached_split(self, variables, split: str) -> tuple[np.ndarray, np.ndarray]:
    source, key = ((self.data.train, self.data.train_key) if split == 'train'
                   else (self.data.test, self.data.test_key))
    cache_dir = self.config.features.dir or os.path.join(self.workdir, 'features')
    return features.cached_features(cache_dir, f'{key}-{self.feature_key}', self.model, variables,
                                    self.style, source, self.config.data.eval_batch_size,
                                    self.mesh)


def _hparams(phase: Phase, config, step0: int, key: jax.Array, mesh: Mesh) -> dict:
  hp = {'step0': np.int32(step0), 'start': np.int32(phase.start),
        'steps': np.float32(max(phase.end - phase.start, 1)), 'lr': np.float32(phase.lr),
        'warmup': np.float32(config.optim.warmup_steps),
        'cosine': np.bool_(config.optim.schedule == 'cosine'), 'key': key}
  return sharding.replicate(hp, mesh)


def _evaluate(run: _Run, state: dict, backbone_unchanged: bool) -> dict:
  """Test metrics; the frozen, untouched backbone is evaluated through cached features."""
  variables = {'params': state['params'], 'batch_stats': state['batch_stats']}
  if backbone_unchanged and run.config.features.cache:
    feats, labels = run.cached_split(variables, 'test')
    logits = distributed.to_host(_head_fn()(state['params']['head'], feats))
  else:
    fn = features.sharded_forward(run.model, run.style, run.mesh)
    logits, labels = evaluate.predict(lambda x: fn(variables, x)[0], run.data.test,
                                      run.config.data.eval_batch_size)
  return evaluate.classification_metrics(logits, labels, run.data.num_classes)


def _mean_rows(rows: list[dict]) -> dict:
  return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}


def _finite(x: float) -> float | None:
  return None if not math.isfinite(x) else float(x)


def run(config: ml_collections.ConfigDict, workdir: str) -> tuple[dict, dict | None]:
  """Train (or resume) one run; returns (summary, final {'params', 'batch_stats'}).

  The variables are None when the run had finished before and kept no checkpoint.
  """
  validate(config)  # the batch is checked against the devices here, before any heavy work
  mesh = sharding.data_mesh()
  data = data_lib.load_data(config.data, seed=config.seed)
  batch = config.data.batch_size
  if batch > len(data.train):
    raise UserError(f'data.batch_size {batch} is larger than the training split '
                    f'({len(data.train)} examples); lower it')
  model = resnet.create_model(config.model.arch, data.num_classes, config.model.style)
  if distributed.is_main():
    prepare_workdir(workdir, config)
  distributed.barrier('workdir')
  summary_path = os.path.join(workdir, 'summary.json')
  weights, style = resolve_weights(config, workdir)
  if not weights and config.mode != 'scratch' and distributed.is_main():
    print(f'note: model.weights is empty, so {config.mode} starts from a random backbone',
          flush=True)
  _check_head(config, weights, data.num_classes)
  phases = plan_phases(config, len(data.train) // batch)
  total = phases[-1].end
  fns, cached = _phase_functions(config, model, style, data.image_size, phases, mesh)
  key = rng_lib.root_key(config.seed)
  variables = init_variables(model, config, weights, rng_lib.stream(key, 'init'))
  this = _Run(config, workdir, data, model, style, weights,
              feature_key(weights, style, config.seed), mesh)
  state = {'params': variables['params'], 'batch_stats': variables['batch_stats'],
           'opt': {f'phase{i}': f.tx.init(variables['params']) for i, f in enumerate(fns)}}
  # Replicated (committed) arrays everywhere, like the step's outputs: a mix would compile twice.
  state = sharding.replicate(state, mesh)

  ckpt = Checkpointer(workdir, keep=config.train.keep_checkpoints) if config.train.checkpoint else None
  start, meta = 0, {}
  if ckpt is not None and ckpt.latest_step() is not None:
    state, meta, start = ckpt.restore(state)
  if start >= total or (ckpt is None and os.path.exists(summary_path)):
    if os.path.exists(summary_path):
      with open(summary_path) as fh:
        done = json.load(fh)
      if done.get('step') == total:
        out = None if start < total else {'params': state['params'],
                                          'batch_stats': state['batch_stats']}
        if ckpt is not None:
          ckpt.close()
        return done, out
  writer = MetricWriter(workdir, resume_step=start if start else None,
                        enabled=distributed.is_main())
  aug_key = rng_lib.stream(key, 'augment')
  bar = progress(total, initial=start, desc=config.mode)
  # Train metrics since the last log row; a checkpoint between log rows keeps them.
  step, window, last_train = start, list(meta.get('window', [])), {}
  t0 = time.perf_counter()
  # Every call but each phase's first of each chunk length (those compile).
  timed_steps, timed_seconds = 0, 0.0
  for i, (ph, fn) in enumerate(zip(phases, fns)):
    if step >= ph.end:
      continue
    if cached[i]:
      feats, labels = this.cached_split(state, 'train')
      source = common_data.ArraySource({'feature': feats, 'label': labels})
      per_call = config.features.steps_per_call
    else:
      source, per_call = data.train, config.train.steps_per_call
    # Each process reads its slice of every global batch.
    it = common_data.BatchIterator(common_data.batched(
        source, batch, seed=config.seed * 1009 + i, shard_index=jax.process_index(),
        shard_count=jax.process_count()))
    if meta.get('phase') == i and 'data' in meta:
      it.set_state(meta['data'])
    compiled = set()  # chunk lengths called so far in this phase
    while step < ph.end:
      bounds = [ph.end, _next(step, config.train.log_every)]
      for every in (config.train.eval_every, config.train.checkpoint_every):
        if every:
          bounds.append(_next(step, every))
      room = min(b - step for b in bounds)
      # Image steps: full chunks, and single steps up to a log/eval/checkpoint boundary or a
      # phase end that the chunk length does not divide, so at most two compilations of the
      # heavy step. The cheap cached-feature head takes any chunk length.
      k = min(per_call, room) if cached[i] else (per_call if room >= per_call else 1)
      t_call = time.perf_counter()
      local = it.take(k)
      local.pop('index', None)
      batches = {name: sharding.global_batch(v, mesh, batch_axis=1) for name, v in local.items()}
      sub = {'params': state['params'], 'batch_stats': state['batch_stats'],
             'opt': state['opt'][f'phase{i}']}
      sub, metrics = fn.chunk(sub, batches, _hparams(ph, config, step, aug_key, mesh))
      state = {'params': sub['params'], 'batch_stats': sub['batch_stats'],
               'opt': {**state['opt'], f'phase{i}': sub['opt']}}
      metrics = jax.tree.map(distributed.to_host, metrics)
      if k in compiled:
        timed_steps += k
        timed_seconds += time.perf_counter() - t_call
      compiled.add(k)
      if not np.all(np.isfinite(metrics['loss'])):
        raise UserError(f'the loss became NaN/inf near step {step} in phase {ph.name}; lower the '
                        'learning rates')
      window += [{k2: float(v[j]) for k2, v in metrics.items()} for j in range(k)]
      step += k
      bar.update(k)
      if step % config.train.log_every == 0 or step == ph.end:
        last_train = _mean_rows(window)
        writer.write(step, {**last_train, 'phase': ph.name})
        window = []
      if config.train.eval_every and step % config.train.eval_every == 0 and step < total:
        m = _evaluate(this, state, all(cached[:i + 1]))
        writer.write(step, {'test_top1': m['top1'], 'test_top5': m['top5'],
                            'test_loss': m['loss']})
      if ckpt is not None and (step == total or (config.train.checkpoint_every and
                                                  step % config.train.checkpoint_every == 0)):
        ckpt.save(step, state, {'phase': i, 'data': it.get_state(), 'window': window})
  bar.close()
  jax.block_until_ready(state)
  train_seconds = time.perf_counter() - t0
  m = _evaluate(this, state, all(cached))
  names = data.class_names
  if distributed.is_main():
    evaluate.save_confusion_png(os.path.join(workdir, 'images', 'confusion.png'), m['confusion'],
                                names, title=f'{config.mode}, seed {config.seed}: top-1 '
                                             f'{m["top1"]:.3f}')
  writer.write(step, {'test_top1': m['top1'], 'test_top5': m['top5'], 'test_loss': m['loss']})
  summary = {
      'step': step, 'mode': config.mode, 'seed': config.seed, 'top1': m['top1'],
      'top5': m['top5'], 'test_loss': m['loss'],
      'per_class_accuracy': {str(n): _finite(a) for n, a in zip(names, m['per_class'])},
      'phases': [p.name for p in phases], 'cached_features': [bool(c) for c in cached],
      'num_train': len(data.train), 'num_test': len(data.test), 'weights': weights,
      'preprocess_style': style, 'train_seconds': train_seconds,
      **{f'train_{k}': v for k, v in last_train.items() if k != 'lr'},
      **({'train_images_per_sec': timed_steps * batch / timed_seconds}
         if timed_steps and timed_seconds > 0 else {}),
  }
  writer.write_summary(summary)
  writer.close()
  if ckpt is not None:
    ckpt.close()
  return summary, {'params': state['params'], 'batch_stats': state['batch_stats']}


def _next(step: int, every: int) -> int:
  return (step // every + 1) * every


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Train (or resume) the run in `config`, writing the workdir contract; returns the summary."""
  if config.ablation.modes:
    from transfer import ablation
    return ablation.run_ablation(config, workdir)
  return run(config, workdir)[0]
