"""Mid-run changes of a GAN config: `train.edits`, a list of [round, key, value].

An edit at round r changes the config from round r on: rounds 0..r-1 ran with the old value,
and the train state after r rounds is what it changes. Only keys that keep the models' shapes
can change (EDITABLE), so the state carries over; an optimiser whose state takes another shape
(another `optim.name`, weight decay switched on or off) restarts its state from zero.

The lab records every live change this way, so `launch.gan` on a lab session's exported config
replays it round for round. Chunks of rounds split at edit rounds (see `gan.train`), and a change
of learning rate or penalty weight needs no recompilation (`gan.steps.hyperparams`).
"""
from __future__ import annotations

import json
from typing import Any

import jax
import ml_collections

from common.errors import UserError

# key -> the type its value has. Model shape keys (depth, hidden, noise_dim, spectral_norm,
# name, dtype) and the seed are absent: changing them starts a new run.
EDITABLE: dict[str, type] = {
    'optim.g_lr': float, 'optim.d_lr': float, 'optim.name': str, 'optim.g_name': str,
    'optim.d_name': str, 'optim.b1': float, 'optim.b2': float, 'optim.momentum': float,
    'optim.weight_decay': float,
    'loss.name': str, 'loss.gp_weight': float, 'loss.r1_gamma': float, 'loss.r1_every': int,
    'train.n_d': int, 'train.n_g': int, 'train.ema_decay': float,
    'data.name': str, 'data.path': str, 'data.batch_size': int,
    'model.noise': str, 'model.activation': str,
}
# Keys passed to compiled chunks as values (gan.steps.hyperparams); the penalties only while
# they stay on (turning one on or off changes the computation).
RUNTIME = ('optim.g_lr', 'optim.d_lr', 'loss.gp_weight', 'loss.r1_gamma')
Edit = tuple[int, str, Any]


def coerce(key: str, value: Any) -> Any:
  """`value` as the type of `key`; a one-line UserError for a key that cannot change mid-run or
  a value of the wrong kind."""
  if key not in EDITABLE:
    raise UserError(f'{key!r} cannot change mid-run (it changes the models\' shapes or is not a '
                    f'training setting); editable: {", ".join(EDITABLE)}')
  kind = EDITABLE[key]
  try:
    if isinstance(value, bool) or (kind is str) != isinstance(value, str):
      raise TypeError
    if kind is int and float(value) != int(value):
      raise TypeError
    return kind(value)
  except (TypeError, ValueError, OverflowError):
    raise UserError(f'{key} takes {"an integer" if kind is int else "a " + kind.__name__}, '
                    f'got {value!r:.80}') from None


def parse(config: ml_collections.ConfigDict) -> list[Edit]:
  """`config.train.edits` as checked (round, key, value) tuples in round order."""
  out = []
  for item in config.train.get('edits', ()) or ():
    if not isinstance(item, (list, tuple)) or len(item) != 3:
      raise UserError(f'train.edits holds [round, key, value] triples, got {item!r}')
    r, key, value = item
    if isinstance(r, bool) or not isinstance(r, int) or r < 0:
      raise UserError(f'train.edits: the round must be an integer >= 0, got {r!r}')
    if out and r < out[-1][0]:
      raise UserError(f'train.edits must be in round order: round {r} follows {out[-1][0]}')
    out.append((r, key, coerce(key, value)))
  return out


def apply(config: ml_collections.ConfigDict, changes: list[tuple[str, Any]]
          ) -> ml_collections.ConfigDict:
  """A copy of `config` with each (key, value) set."""
  new = ml_collections.ConfigDict(config.to_dict())
  for key, value in changes:
    group, _, name = key.partition('.')
    new[group][name] = coerce(key, value)
  return new


def at(config: ml_collections.ConfigDict, edits: list[Edit], step: int, *,
       include_step: bool = False) -> ml_collections.ConfigDict:
  """The config in force after the edits of rounds < `step` (<= with `include_step`)."""
  return apply(config, [(k, v) for r, k, v in edits if r < step or (include_step and r == step)])


def next_round(edits: list[Edit], step: int) -> int | None:
  """The first edit round after `step`, if any (chunks of rounds end there)."""
  return next((r for r, _, _ in edits if r > step), None)


def compiled_alike(a: ml_collections.ConfigDict, b: ml_collections.ConfigDict) -> bool:
  """Whether `a` and `b` compile to the same chunk of rounds: they differ at most in the
  RUNTIME values, and no penalty turns on or off."""
  da, db = a.to_dict(), b.to_dict()
  for key in RUNTIME:
    group, _, name = key.partition('.')
    if key.startswith('loss.') and (da[group][name] > 0) != (db[group][name] > 0):
      return False
    da[group][name] = db[group][name] = None
  da['train']['edits'] = db['train']['edits'] = None
  return da == db


def _same_layout(a, b) -> bool:
  shapes = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
  return jax.tree.structure(a) == jax.tree.structure(b) and shapes(a) == shapes(b)


def carry_state(state: dict, steps) -> tuple[dict, list[str]]:
  """`state` for a rebuilt `steps` (gan.steps.GanSteps): each optimiser state kept when its
  layout fits the new optimiser, else restarted; returns (state, players restarted)."""
  restarted = []
  for player in ('g', 'd'):
    tx = steps.g_tx if player == 'g' else steps.d_tx
    params = state[player]['params']
    if not _same_layout(jax.eval_shape(tx.init, params), state[f'{player}_opt']):
      state = {**state, f'{player}_opt': tx.init(params)}
      restarted.append(player)
  return state, restarted


def compile_key(config: ml_collections.ConfigDict) -> str:
  """Equal for configs that compile to the same chunk of rounds on the same data."""
  d = config.to_dict()
  for key in RUNTIME:
    group, _, name = key.partition('.')
    d[group][name] = bool(d[group][name] > 0) if key.startswith('loss.') else None
  d['train']['edits'] = None
  return json.dumps(d, sort_keys=True, default=str)


def rebuild(old: ml_collections.ConfigDict, new: ml_collections.ConfigDict, gdata, steps,
            mesh, cache: dict | None = None):
  """(data, steps) for `new` after an edit from `old`: the data source rebuilt only when `data`
  changed (an image iterator keeps its place), the steps only when the compiled chunk differs
  (`compiled_alike`); unchanged pieces come back as they were. `cache`, when given, keeps
  (data, steps) by `compile_key`, so going back to earlier settings compiles nothing."""
  from gan.data import build_data
  from gan.state import build_models
  from gan.steps import GanSteps

  key = compile_key(new)
  if cache is not None:
    cache.setdefault(compile_key(old), (gdata, steps))
    if key in cache:
      return cache[key]
  if new.data.to_dict() != old.data.to_dict():
    gdata = build_data(new)
  elif compiled_alike(old, new):
    return gdata, steps
  generator, discriminator = build_models(new, gdata.shape)
  out = gdata, GanSteps(generator, discriminator, new, gdata.real_fn, mesh)
  if cache is not None:
    cache[key] = out
  return out
