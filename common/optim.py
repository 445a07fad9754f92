"""Optimisers and learning-rate schedules by name: the `optim` vocabulary both trainers share.

`optim.name` picks the update direction (`direction`); the trainers scale it by their learning
rates (`optim.g_lr`/`d_lr` for GANs, `optim.lr`/`head_lr` for transfer) along
`optim.schedule` after `optim.warmup_steps` of linear warm-up.
"""
from __future__ import annotations

import optax

from common.errors import UserError, unknown_name

OPTIMIZERS = ('adam', 'adamw', 'sgd')
SCHEDULES = ('constant', 'linear', 'cosine')


def check(optim) -> None:
  """One-line errors for an `optim` config group's names and values."""
  if optim.name not in OPTIMIZERS:
    raise unknown_name('optim.name', optim.name, OPTIMIZERS)
  if optim.schedule not in SCHEDULES:
    raise unknown_name('optim.schedule', optim.schedule, SCHEDULES)
  if optim.weight_decay < 0 or optim.warmup_steps < 0 or optim.momentum < 0:
    raise UserError('optim.weight_decay, optim.warmup_steps and optim.momentum must be >= 0; got '
                    f'{optim.weight_decay}, {optim.warmup_steps} and {optim.momentum}')


def direction(name: str, *, b1: float = 0.9, b2: float = 0.999, momentum: float = 0.0,
              weight_decay: float = 0.0) -> optax.GradientTransformation:
  """The update direction of `name`, before the learning rate: adam (weight decay as L2 in the
  gradient, as torch's Adam), adamw (decoupled decay), sgd (L2, then heavy-ball momentum, as
  torch's SGD)."""
  decay = [optax.add_decayed_weights(weight_decay)] if weight_decay else []
  if name == 'adam':
    return optax.chain(*decay, optax.scale_by_adam(b1=b1, b2=b2))
  if name == 'adamw':
    return optax.chain(optax.scale_by_adam(b1=b1, b2=b2), *decay)
  if name == 'sgd':
    parts = [*decay, *([optax.trace(decay=momentum)] if momentum else [])]
    return optax.chain(*parts) if parts else optax.identity()
  raise unknown_name('optim.name', name, OPTIMIZERS)


def schedule(lr: float, name: str, num_updates: int, warmup_steps: int = 0):
  """`lr` (a float when constant without warm-up) or an optax schedule over `num_updates`:
  linear warm-up from 0, then constant, linear decay to 0, or cosine decay to 0."""
  decay_steps = max(num_updates - warmup_steps, 1)
  if name == 'constant':
    main = lr
  elif name == 'linear':
    main = optax.linear_schedule(lr, 0.0, decay_steps)
  elif name == 'cosine':
    main = optax.cosine_decay_schedule(lr, decay_steps)
  else:
    raise unknown_name('optim.schedule', name, SCHEDULES)
  if not warmup_steps:
    return main
  rest = main if callable(main) else optax.constant_schedule(main)
  return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup_steps), rest],
                              [warmup_steps])
