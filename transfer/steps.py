"""Pure transfer-learning steps and the phases they run in.

A mode (`transfer.freeze.MODES`) is one or two phases (`plan_phases`), each with its own
freezing rules, optimiser state and BatchNorm policy. A phase's jitted function runs a chunk of
steps with `lax.scan`; learning rates and schedules are run-time arguments (`hparams`), so one
compilation serves every seed and every phase with the same structure. With a mesh the batches
are split along its `data` axis and the state is replicated over it.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import traverse_util
from jax.sharding import Mesh

from common import sharding
from common.kernels.xla_cpu import jit_for
from transfer import augment as augment_lib
from transfer import freeze, heads, models, preprocess
from transfer.preprocessing import random_resized_crop_flip


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


def _multipliers_for_custom_rules(f: ml_collections.ConfigDict, parts) -> dict[str, float]:
  out = {'trainable': 1.0, 'head': 1.0, 'backbone': f.backbone_lr_mult, freeze.FROZEN: 0.0}
  out.update(freeze.part_multipliers(parts, f.backbone_lr_mult, f.layer_decay))
  return out


def plan_phases(config: ml_collections.ConfigDict, steps_per_epoch: int) -> list[Phase]:
  """The phases of `config.mode`, laid end to end in global steps."""
  f, t, o = config.freeze, config.train, config.optim
  parts = models.part_rules(config.model.arch)
  phases: list[Phase] = []

  def add(name, rule_mode, epochs, lr, bn_train):
    rules, mults = freeze.mode_rules(rule_mode, trainable_stages=f.trainable_stages,
                                     backbone_lr_mult=f.backbone_lr_mult,
                                     layer_decay=f.layer_decay, parts=parts)
    if f.rules:
      rules, mults = [tuple(r) for r in f.rules], _multipliers_for_custom_rules(f, parts)
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


@functools.lru_cache(maxsize=8)
def _abstract_params(model: Any, image_size: int):
  x = jax.ShapeDtypeStruct((1, image_size, image_size, 3), jnp.float32)
  return jax.eval_shape(functools.partial(model.init, train=False), jax.random.key(0), x)['params']


def phase_functions(config: ml_collections.ConfigDict, model: Any, style: str,
                     image_size: int, phases: list[Phase], mesh: Mesh | None = None
                     ) -> tuple[list[PhaseFns], list[bool]]:
  """Each phase's step functions, and whether it trains on cached features."""
  o = config.optim
  fns, cached = [], []
  keras_aug = augment_lib.from_config(config.data)
  for ph in phases:
    spec = step_spec(model, style, image_size, ph.rules, dict(ph.multipliers),
                     optimizer=o.name, weight_decay=o.weight_decay, momentum=o.momentum, b1=o.b1,
                     b2=o.b2, decay_norm_and_bias=o.decay_norm_and_bias, bn_train=ph.bn_train,
                     augment=config.data.augment, crop_scale=config.data.crop_scale, mesh=mesh,
                     keras_aug=keras_aug if keras_aug.active else None)
    probe = phase_fns(spec)
    head_only = all(l == freeze.FROZEN or heads.is_top(p[0]) for p, l in spec.labels)
    # Cached features hold only while every earlier phase left the backbone alone too, and
    # augmented images have no fixed features.
    use_cache = (head_only and all(cached) and config.features.cache and not config.data.augment
                 and not keras_aug.active and not ph.bn_train)
    cached.append(use_cache)
    fns.append(phase_fns(dataclasses.replace(spec, cached=True)) if use_cache else probe)
  return fns, cached


@dataclasses.dataclass(frozen=True)
class StepSpec:
  """Everything that shapes a compiled step (hashable, so steps are shared across runs)."""
  model: Any  # a transfer.models model (flax Module)
  style: str
  image_size: int
  labels: tuple  # ((parameter path, freeze.group_labels label), ...)
  optim: tuple  # (name, weight_decay, momentum, b1, b2)
  bn_train: bool
  augment: bool
  cached: bool
  crop_scale: float = 0.08  # smallest crop area fraction of the train augmentation
  mesh: Mesh | None = None  # batches split along its `data` axis, state replicated over it
  keras_aug: Any = None  # augment.KerasAugment applied after the crop, or None


def step_spec(model: Any, style: str, image_size: int, rules, multipliers: dict, *,
              optimizer: str = 'adamw', weight_decay: float = 0.0, momentum: float = 0.9,
              b1: float = 0.9, b2: float = 0.999, decay_norm_and_bias: bool = False,
              bn_train: bool = False, augment: bool = False, cached: bool = False,
              crop_scale: float = 0.08, mesh: Mesh | None = None,
              keras_aug: Any = None) -> StepSpec:
  """The StepSpec of a phase trained with freezing `rules` and lr `multipliers`."""
  labels = freeze.group_labels(_abstract_params(model, image_size), rules, multipliers,
                               weight_decay=weight_decay, decay_norm_and_bias=decay_norm_and_bias)
  flat = tuple(sorted(traverse_util.flatten_dict(labels).items()))
  return StepSpec(model, style, image_size, flat, (optimizer, weight_decay, momentum, b1, b2),
                  bn_train, augment, cached, crop_scale, mesh, keras_aug)


@dataclasses.dataclass
class PhaseFns:
  tx: optax.GradientTransformation
  labels: Any
  chunk: Any  # (state, batches [k, ...], hparams) -> (state, metrics [k])


def _lr(hp: dict, t: jax.Array) -> jax.Array:
  s = (t - hp['start']).astype(jnp.float32)
  warm = jnp.minimum(1.0, (s + 1.0) / jnp.maximum(hp['warmup'], 1.0))
  cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * s / hp['steps']))
  linear = 1.0 - s / hp['steps']
  return hp['lr'] * warm * jnp.where(hp['cosine'], cosine, jnp.where(hp['linear'], linear, 1.0))


@functools.lru_cache(maxsize=16)
def phase_fns(spec: StepSpec) -> PhaseFns:
  """The optimiser, labels and jitted multi-step function of one phase."""
  model = spec.model
  rate = models.dropout_rate(model)
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
      if spec.keras_aug is not None:
        x = augment_lib.keras_augment(jax.random.fold_in(jax.random.fold_in(hp['key'], t), 2),
                                      x, spec.keras_aug)
      x = sharding.constrain_batch(preprocess(x, spec.style), spec.mesh)

    # The head's dropout, from its own stream of the run's key (off at rate 0).
    dropout = {'dropout': jax.random.fold_in(jax.random.fold_in(hp['key'], t), 1)} if rate else {}

    def loss_fn(tr):
      stats = state['batch_stats']
      if spec.cached:
        top = traverse_util.unflatten_dict({k: v for k, v in {**frozen, **tr}.items()
                                            if heads.is_top(k[0])})
        logits = heads.head_logits(top, x, rate, dropout.get('dropout'))
      else:
        variables = {'params': freeze.merge(tr, frozen), 'batch_stats': stats}
        if spec.bn_train:
          logits, upd = model.apply(variables, x, train=True, mutable=['batch_stats'],
                                    dropout=bool(rate), rngs=dropout)
          stats = upd['batch_stats']
        else:
          logits = model.apply(variables, x, train=False, dropout=bool(rate), rngs=dropout)
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
  return PhaseFns(tx, labels, jit_for(spec.model)(chunk, donate_argnums=0, **out))


@functools.lru_cache(maxsize=1)
def head_fn():
  """Jitted (top params {'head': ..., 'fc1': ...}, features [B, D]) -> logits [B, classes]."""
  return jax.jit(heads.head_logits)


def hparams(phase: Phase, config, step0: int, key: jax.Array, mesh: Mesh) -> dict:
  hp = {'step0': np.int32(step0), 'start': np.int32(phase.start),
        'steps': np.float32(max(phase.end - phase.start, 1)), 'lr': np.float32(phase.lr),
        'warmup': np.float32(config.optim.warmup_steps),
        'cosine': np.bool_(config.optim.schedule == 'cosine'),
        'linear': np.bool_(config.optim.schedule == 'linear'), 'key': key}
  return sharding.replicate(hp, mesh)
