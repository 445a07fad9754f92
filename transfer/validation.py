"""Everything about a transfer config that can be checked before any work: `validate(config)`.

Every key gets a range or a registry check (a key this run ignores included), and the sizes a
config asks for are compared with the memory here (`common.checks`), so an absurd value is one
line, never a traceback, a hang or an out-of-memory kill. What depends on the data (its
classes, its size against the batch) is checked when it loads (`transfer.data`).
"""
from __future__ import annotations

import os

import ml_collections

from common import checks
from common import optim as optim_lib
from common import sharding
from common.errors import UserError, unknown_name
from common.loop import check_cadence
from transfer import data as data_lib
from transfer.splits import parse_classes
from transfer import augment, freeze, heads, models, selection
from transfer import weights as weights_lib

RULE_LABELS = ('trainable', 'head', 'backbone')  # and the arch's parts (models.part_rules)
MAX_EPOCHS = 10**5
MAX_SEEDS = 1000  # an ablation keeps one run per mode and seed


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
  models.check_arch(m.arch, m.style)
  models.check_image_size(m.arch, config.data.image_size)
  parts = models.part_rules(m.arch)
  labels = (*RULE_LABELS, *(p for p, _ in parts), freeze.FROZEN)
  if not isinstance(f.rules, (list, tuple)):
    raise UserError(f'freeze.rules must be ((regex, label), ...) pairs, got {f.rules!r}')
  for rule in f.rules:
    if not isinstance(rule, (list, tuple)) or len(rule) != 2 or not all(
        isinstance(x, str) for x in rule):
      raise UserError(f'freeze.rules entries must be (regex, label) pairs, got {rule!r}')
    if rule[1] not in labels:
      raise unknown_name(f'freezing label for {m.arch}', rule[1], labels)
  n = freeze.max_trainable_parts(parts)
  if config.mode == 'partial' and not 1 <= f.trainable_stages <= n:
    raise UserError(f'freeze.trainable_stages must be in 1..{n} for {m.arch} (its parts: '
                    f'{", ".join(p for p, _ in parts)}), got {f.trainable_stages}')
  heads.check_head(m.head, m.head_hidden, m.head_dropout)
  if m.include_top and (m.arch, m.style) in (('vgg16', 'keras'), ('vgg19', 'keras')) and (
      config.data.image_size != 224):
    raise UserError(f"model.include_top=True keeps Keras' {m.arch} classifier, which takes 224 px "
                    f'images only; set data.image_size=224 or model.include_top=False')
  if m.include_top and (m.head != 'global_pool' or tuple(m.head_hidden) or m.head_dropout):
    raise UserError("model.include_top=True keeps the weights' own classifier; model.head, "
                    'head_hidden and head_dropout shape a new one: leave them at their defaults '
                    'or set model.include_top=False')
  weights_lib.check_weights(config)  # a mismatched file is named now, not after the data loads
  if m.weights and m.weights != weights_lib.PRETRAIN and not os.path.exists(m.weights):
    raise UserError(f'weights {m.weights!r} not found; convert them with python -m launch.convert '
                    'or fix model.weights')
  if m.include_top and (config.mode == 'scratch' or not m.weights):
    raise UserError('model.include_top=True keeps the weights\' classifier, but this run has no '
                    'pretrained weights; set model.include_top=False')
  if not 0 < config.data.crop_scale <= 1:
    raise UserError(f'data.crop_scale must be in (0, 1], got {config.data.crop_scale}')
  augment.from_config(config.data)
  selection.check(t)
  for name in ('features', 'train'):
    if config[name].steps_per_call < 1:
      raise UserError(f'{name}.steps_per_call must be at least 1, got '
                      f'{config[name].steps_per_call}')
  _check_numbers(config)
  mesh = sharding.data_mesh()
  sharding.check_batch(config.data.batch_size, mesh)
  n = mesh.devices.size
  if (m.weights == weights_lib.PRETRAIN and config.mode != 'scratch'
      and config.pretrain.batch_size % n):
    raise UserError(f'pretrain.batch_size {config.pretrain.batch_size} is not divisible by the '
                    f'{n} devices; use a multiple of {n}')
  _check_data(config.data)
  _check_memory(config)
  if m.weights == weights_lib.PRETRAIN:  # the source model's run, before any work either
    try:
      validate(pretrain_config(config))
    except UserError as e:
      raise UserError(f'the source model\'s pretraining run (pretrain.*): {e}') from None


def pretrain_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """The scratch run that makes the source model: same arch, style and image size."""
  p = config.pretrain
  c = ml_collections.ConfigDict(config.to_dict())
  c.seed = 0  # one source shared by every seed of the target task
  c.mode = 'scratch'
  c.data.update(name='digits', classes=p.classes, train_per_class=p.train_per_class,
                test_fraction=p.test_fraction,
                test_limit=0, batch_size=p.batch_size, augment=p.augment,
                crop_scale=p.crop_scale)
  c.model.update(weights='', include_top=False)
  c.freeze.rules = ()
  c.optim.update(name=p.optimizer or c.optim.name, lr=p.lr, weight_decay=p.weight_decay,
                 warmup_steps=0)
  c.train.update(epochs=p.epochs, eval_every=0, checkpoint=True, checkpoint_every=0,
                 keep_checkpoints=1)
  c.features.dir = ''
  c.ablation.modes = ()
  c.pretrain.dir = ''
  return c


def _check_numbers(config: ml_collections.ConfigDict) -> None:
  checks.number(config, 'seed', 0, checks.MAX_SEED - MAX_SEEDS, integer=True)
  checks.numbers(config, ('optim.lr', 'optim.head_lr', 'optim.weight_decay',
                          'freeze.backbone_lr_mult', 'pretrain.weight_decay'), 0)
  checks.numbers(config, ('optim.b1', 'optim.b2', 'optim.momentum'), 0, 1, hi_open=True)
  checks.number(config, 'optim.warmup_steps', 0, checks.MAX_STEPS, integer=True)
  checks.numbers(config, ('train.epochs', 'train.head_epochs', 'pretrain.epochs'), 1, MAX_EPOCHS,
                 integer=True)
  checks.number(config, 'train.two_phase_lr_scale', 0, lo_open=True)
  checks.numbers(config, ('train.steps_per_call', 'features.steps_per_call'), 1,
                 checks.MAX_STEPS_PER_CALL, integer=True)
  checks.number(config, 'freeze.trainable_stages', 1, integer=True)
  checks.number(config, 'train.precise_bn', 0, integer=True, hint='batches; 0: off')
  checks.number(config, 'ablation.seeds', 1, MAX_SEEDS, integer=True)
  checks.numbers(config, ('pretrain.batch_size', 'pretrain.epochs'), 1, integer=True)
  checks.number(config, 'pretrain.lr', 0, lo_open=True)
  checks.number(config, 'pretrain.train_per_class', 0, integer=True, hint='0 keeps them all')
  checks.number(config, 'pretrain.test_fraction', 0, 1, hi_open=True)
  checks.number(config, 'pretrain.crop_scale', 0, 1, lo_open=True)
  if config.pretrain.optimizer not in ('',) + optim_lib.OPTIMIZERS:
    raise UserError(f'unknown pretrain.optimizer {config.pretrain.optimizer!r}; choose one of: '
                    f"{', '.join(optim_lib.OPTIMIZERS)}, or '' for optim.name's")
  parse_classes(config.pretrain.classes)


def _check_data(d: ml_collections.ConfigDict) -> None:
  if d.name not in data_lib.DATASETS:
    raise unknown_name('dataset', d.name, data_lib.DATASETS)
  c = {'data': d}
  checks.number(c, 'data.image_size', 8, integer=True)
  checks.number(c, 'data.resize_size', 1, integer=True)
  if d.name != 'digits' and d.resize_size < d.image_size:
    raise UserError(f'data.resize_size must be >= data.image_size, got {d.resize_size} and '
                    f'{d.image_size}')
  checks.numbers(c, ('data.train_per_class', 'data.test_limit'), 0, integer=True,
                 hint='0 keeps them all')
  checks.number(c, 'data.test_fraction', 0, 1, hi_open=True)
  if d.name == 'digits':
    parse_classes(d.classes)


def _check_memory(config: ml_collections.ConfigDict) -> None:
  """Lower bounds of what a training chunk, an evaluation batch and the new head hold at once:
  each image's pixels (uint8 when stored, float32 on device) and the ResNet stem's 64 float32
  channels at half its resolution; the head's weights."""
  d = config.data
  stored, side = max(d.resize_size, d.image_size), d.image_size
  per_image = 4 * 3 * side * side + 4 * 16 * side * side
  chunk = config.train.steps_per_call * d.batch_size * 3 * stored * stored
  checks.check_memory(chunk + d.batch_size * per_image,
                      'a chunk of training (data.batch_size x train.steps_per_call images of '
                      'data.image_size/resize_size)',
                      'lower data.batch_size, train.steps_per_call or data.image_size')
  checks.check_memory(d.eval_batch_size * per_image, 'an evaluation batch (data.eval_batch_size '
                      'images of data.image_size)', 'lower data.eval_batch_size')
  # The new head's dense layers, from at least the 64 features every backbone here ends with,
  # with the parameters and Adam's two moments in float32.
  widths = [64, *config.model.head_hidden, 2]
  head = sum(a * b for a, b in zip(widths, widths[1:]))
  checks.check_memory(3 * 4 * head, 'the new head (model.head_hidden)',
                      'use narrower model.head_hidden layers')
