"""Everything about a GAN config that can be checked before any work: `validate(config)`.

Every key gets a range or a registry check whether or not this run reads it (a typo in a key
the run ignores today is a surprise tomorrow), and the sizes a config asks for are compared with
the memory here (`common.checks`), so an absurd value is one line, never a traceback, a hang or
an out-of-memory kill.
"""
from __future__ import annotations

import ml_collections

from common import checks
from common import optim as optim_lib
from common import sharding
from common.errors import UserError, unknown_name
from common.kernels import resample
from common.loop import check_cadence
from gan import augment, conditional, data2d, edits, evaluation, images, losses, models
from gan.data import build_data
from gan.state import compute_dtype

MAX_UPDATES_PER_ROUND = 1000  # train.n_d and train.n_g; WGAN's 5 is the usual most
INT32 = 2**31 - 1


def validate(config: ml_collections.ConfigDict) -> None:
  """Reject bad values before any work is done (each a one-line UserError)."""
  checks.number(config, 'seed', 0, checks.MAX_SEED, integer=True)
  _check_optim(config)
  _check_train(config)
  if not config.guard.max_abs_loss >= 0 or not config.guard.js_patience >= 0:
    raise UserError('guard.max_abs_loss and guard.js_patience must be >= 0 (0: off), got '
                    f'{config.guard.max_abs_loss} and {config.guard.js_patience}')
  if config.data.batch_size <= 0:
    raise UserError(f'data.batch_size must be positive, got {config.data.batch_size}')
  if config.data.name not in (*data2d.DISTRIBUTIONS, 'points', *images.IMAGE_DATASETS):
    raise unknown_name('dataset', config.data.name,
                       [*data2d.DISTRIBUTIONS, 'points', *images.IMAGE_DATASETS])
  _check_loss(config.loss)
  _check_model(config)
  _check_eval(config)
  if augment.build(config.augment) is not None and config.data.name not in images.IMAGE_DATASETS:
    raise UserError(f'augment.name={config.augment.name} augments images; data.name='
                    f'{config.data.name} is 2D points: set augment.name=none')
  sharding.check_param_mode(config.sharding.params, config.sharding.min_size)
  _check_memory(config)


def validate_edits(config: ml_collections.ConfigDict) -> list[edits.Edit]:
  """`train.edits` checked: each config they lead to is valid; data changes only for 2D runs,
  and their points files must read (so a late edit cannot fail mid-run)."""
  edit_list = edits.parse(config)
  for r, key, _ in edit_list:
    if key.startswith('data.') and config.model.name != 'mlp':
      raise UserError(f'train.edits: {key} can change only in 2D runs (model.name=mlp)')
    live = edits.at(config, edit_list, r, include_step=True)
    validate(live)
    if key.startswith('data.'):
      build_data(live)
  return edit_list


def _check_optim(config: ml_collections.ConfigDict) -> None:
  o = config.optim
  for key in ('g_lr', 'd_lr'):
    if not o[key] > 0:
      raise UserError(f'optim.{key} must be positive, got {o[key]}')
  optim_lib.check(o)
  for key in ('g_name', 'd_name'):
    if o.get(key) and o[key] not in optim_lib.OPTIMIZERS:
      raise unknown_name(f'optim.{key}', o[key], optim_lib.OPTIMIZERS)
  checks.numbers(config, ('optim.g_lr', 'optim.d_lr', 'optim.weight_decay'), 0)
  checks.numbers(config, ('optim.b1', 'optim.b2', 'optim.momentum'), 0, 1, hi_open=True)
  checks.number(config, 'optim.warmup_steps', 0, checks.MAX_STEPS, integer=True)


def _check_train(config: ml_collections.ConfigDict) -> None:
  t = config.train
  check_cadence(t)
  for key in ('steps', 'rounds_per_call'):
    if t[key] < 1:
      raise UserError(f'train.{key} must be at least 1, got {t[key]}')
  checks.number(config, 'train.steps', 1, checks.MAX_STEPS, integer=True)
  if not (min(t.n_d, t.n_g) >= 0 and t.n_d + t.n_g >= 1):
    raise UserError(f'train.n_d and train.n_g must be >= 0 (0 freezes that player) and not both '
                    f'0, got {t.n_d} and {t.n_g}')
  checks.numbers(config, ('train.n_d', 'train.n_g'), 0, MAX_UPDATES_PER_ROUND, integer=True)
  checks.number(config, 'train.rounds_per_call', 1, checks.MAX_STEPS_PER_CALL, integer=True)
  if t.steps * max(t.n_d, t.n_g) > INT32:
    raise UserError(f'train.steps x train.n_d/n_g = {t.steps * max(t.n_d, t.n_g)} updates '
                    'overflow the optimisers\' 32-bit step counts; train fewer rounds')
  if not 0 <= t.ema_decay < 1:
    raise UserError(f'train.ema_decay must be in [0, 1), got {t.ema_decay}')


def _check_loss(loss: ml_collections.ConfigDict) -> None:
  losses.get_loss(loss.name)
  if not (loss.gp_weight >= 0 and loss.r1_gamma >= 0):
    raise UserError('loss.gp_weight and loss.r1_gamma must be >= 0')
  if loss.get('r1_every', 1) < 1:
    raise UserError(f'loss.r1_every must be >= 1 (1 = R1 every round), got {loss.r1_every}')
  checks.numbers({'loss': loss}, ('loss.gp_weight', 'loss.r1_gamma', 'loss.aux_weight'), 0)
  checks.number({'loss': loss}, 'loss.r1_every', 1, INT32, integer=True)


def _check_model(config: ml_collections.ConfigDict) -> None:
  m = config.model
  if m.name not in models.MODELS:
    raise unknown_name('model.name', m.name, models.MODELS)
  compute_dtype(m.dtype)
  for key, known in (('activation', models.ACTIVATIONS), ('noise', models.NOISE_DISTS),
                     ('upsample', resample.UPSAMPLE_METHODS),
                     ('conditioning', conditional.CONDITIONINGS)):
    if m[key] not in known:
      raise unknown_name(f'model.{key}', m[key], known)
  checks.numbers(config, ('model.hidden', 'model.features', 'model.noise_dim', 'model.embed_dim'),
                 1, INT32, integer=True)
  checks.number(config, 'model.attention', 0, INT32, integer=True)
  checks.number(config, 'model.depth', 0, models.MAX_MLP_DEPTH, integer=True)
  if m.get('d_fourier', 0):
    checks.number(config, 'model.d_fourier', 0, 4096, integer=True)
    checks.number(config, 'model.d_fourier_scale', 0, 1e6, lo_open=True)
    if m.name != 'mlp' or len(_data_shape(config.data)) != 1:
      raise UserError(f'model.d_fourier={m.d_fourier} applies to the MLP on points; this config '
                      f'trains {m.name} on {config.data.name}: set model.d_fourier=0')
  if m.num_classes < 0:
    raise UserError(f'model.num_classes must be >= 0 (0: unconditional), got {m.num_classes}')
  if m.num_classes > 0:
    conditional.check_config(m, config.data)


def _check_eval(config: ml_collections.ConfigDict) -> None:
  e = config.eval
  metric_names = evaluation.parse_metrics(e.metrics)
  if metric_names and e.fid_every < 1:
    raise UserError(f'eval.fid_every must be at least 1, got {e.fid_every}')
  checks.numbers(config, ('eval.num_samples', 'eval.grid_size', 'eval.fid_every'), 1, INT32,
                 integer=True)
  evaluation.check_metrics(config, metric_names, e.num_samples, e.inception_weights,
                           e.reference_stats)


def _data_shape(data: ml_collections.ConfigDict) -> tuple[int, ...]:
  """The shape of one example, as far as the config says it (folders: their image_size)."""
  side = data.get('image_size', 0)
  if data.name in images.TFDS_IMAGE_DATASETS:
    shape = images.TFDS_IMAGE_DATASETS[data.name].shape
    return (side, side, shape[2]) if side else shape
  if data.name == 'folder':
    return (side or 1, side or 1, 3)
  return images.DIGITS_SHAPE if data.name == 'digits' else (2,)


def _check_memory(config: ml_collections.ConfigDict) -> None:
  """Lower bounds, in float32 bytes, of what the models, a step and an evaluation hold at once:
  the weights of G and D and one optimiser moment each; for each example, its data and one
  layer's activations (the MLP's hidden units; the DCGAN's widest 4x4 layer)."""
  m, t = config.model, config.train
  shape = _data_shape(config.data)
  size = int(_prod(shape))
  if m.name == 'mlp':
    weights = m.hidden * m.hidden * max(m.depth - 1, 0) + m.hidden * (m.noise_dim + size + 1)
    per_example = m.hidden + size
  else:
    weights = m.features * m.features // 2 + m.noise_dim * 16 * m.features
    per_example = 16 * m.features + size
  weights += m.num_classes * m.embed_dim if m.num_classes > 0 else 0
  checks.check_memory(4 * 2 * 2 * weights, 'the model (model.hidden, model.depth, '
                      'model.features, model.noise_dim, model.embed_dim)', 'use a smaller model')
  batches = t.rounds_per_call * t.n_d * config.data.batch_size * size if len(shape) == 3 else 0
  checks.check_memory(4 * (2 * config.data.batch_size * per_example + batches),
                      'a chunk of training (data.batch_size x train.rounds_per_call x train.n_d)',
                      'lower data.batch_size, train.rounds_per_call or train.n_d')
  for key in ('num_samples', 'grid_size'):
    checks.check_memory(4 * config.eval[key] * per_example, f'eval.{key}',
                        f'lower eval.{key}')


def _prod(shape: tuple[int, ...]) -> int:
  out = 1
  for s in shape:
    out *= s
  return out
