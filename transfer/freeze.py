"""Which parameters train, and how fast: `(regex, label)` rules -> optax.

Rules are matched against '/'-joined parameter paths (`stage4/block1/conv2/
kernel`, `block5/conv3/kernel`, `mixed10/branch_pool/bn/bias`, `head/bias`; see
`transfer.models.param_paths`); the first match wins and every parameter must
match one rule. A label names a group with a learning
rate multiplier; the label 'frozen' maps to `optax.set_to_zero()`, which keeps
no optimiser state, so frozen parameters cost no Adam moments.

Modes (`MODES`) are rule sets plus a BatchNorm policy:

- scratch: random init, every parameter trained, BatchNorm in train mode.
- feature_extraction: backbone frozen, BatchNorm in inference mode, new head.
- fine_tune: everything trained, backbone at `backbone_lr_mult` x the head's
  learning rate; BatchNorm statistics frozen unless `bn_train`.
- partial: head plus the last `trainable_stages` parts; the rest frozen.
- two_phase: feature_extraction, then fine_tune continuing from it.

A backbone's parts are its family's (`transfer.models.part_rules`): ResNet's
stem, stage1..stage4; VGG's block1..block5; InceptionV3's stem, mixed0..mixed10.
The head is the classifier top (`head` and hidden `fc1`, `fc2`, ...).
`layer_decay` < 1 gives each backbone part its own multiplier,
`backbone_lr_mult * layer_decay ** distance` with distance 1 for the last part
(stage4, block5, mixed10) and growing towards the input (layer-wise
learning-rate decay).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util

from common import optim as optim_lib
from common.errors import UserError, unknown_name
from transfer import heads

Rules = Sequence[tuple[str, str]]

FROZEN = 'frozen'
MODES = ('scratch', 'feature_extraction', 'fine_tune', 'partial', 'two_phase')
STAGES = ('stage1', 'stage2', 'stage3', 'stage4')
# ResNet's (part, regex) pairs, input to output: the default of `mode_rules`.
RESNET_PARTS = (('stem', '^stem_'), *((s, f'^{s}/') for s in STAGES))
_NO_DECAY = '|no_decay'


def part_multipliers(parts: Sequence[tuple[str, str]], backbone_lr_mult: float,
                     layer_decay: float) -> dict[str, float]:
  """{part: backbone_lr_mult * layer_decay ** distance}, distance 1 for the last part."""
  names = [p for p, _ in parts]
  return {p: backbone_lr_mult * layer_decay ** (len(names) - i) for i, p in enumerate(names)}


def max_trainable_parts(parts: Sequence[tuple[str, str]]) -> int:
  """The largest `trainable_stages` of mode partial: every part (ResNet: its 4 stages)."""
  parts = tuple(tuple(p) for p in parts)
  return len(parts) - 1 if parts == RESNET_PARTS else len(parts)


def mode_rules(mode: str, *, trainable_stages: int = 1, backbone_lr_mult: float = 0.1,
               layer_decay: float = 1.0, parts: Sequence[tuple[str, str]] = RESNET_PARTS
               ) -> tuple[list[tuple[str, str]], dict[str, float]]:
  """(rules, {label: lr multiplier}) for one training phase of `mode`.

  `parts` are the backbone's (part name, path regex) pairs, input to output
  (`transfer.models.part_rules(arch)`; ResNet's by default). `two_phase` has two
  phases; ask for 'feature_extraction' and 'fine_tune'.
  """
  if mode not in MODES or mode == 'two_phase':
    raise unknown_name('single-phase mode', mode, [m for m in MODES if m != 'two_phase'])
  parts = tuple(tuple(p) for p in parts)
  head = heads.TOP_PATTERN  # the head and any hidden layers of the classifier top
  if mode == 'scratch':
    return [('.*', 'trainable')], {'trainable': 1.0}
  if mode == 'feature_extraction':
    return [(head, 'head'), ('.*', FROZEN)], {'head': 1.0, FROZEN: 0.0}
  n = max_trainable_parts(parts)
  if mode == 'partial' and not 1 <= trainable_stages <= n:
    raise UserError(f'freeze.trainable_stages must be in 1..{n} for mode partial, got '
                    f'{trainable_stages}')
  trained = list(reversed(parts))
  if mode == 'partial':
    trained = trained[:trainable_stages]
  rules = [(head, 'head')]
  mults = {'head': 1.0}
  if layer_decay == 1.0:
    rules += [(rx, 'backbone') for _, rx in trained]
    mults['backbone'] = backbone_lr_mult
  else:
    decayed = part_multipliers(parts, backbone_lr_mult, layer_decay)
    for name, rx in trained:
      rules.append((rx, name))
      mults[name] = decayed[name]
  rules.append(('.*', FROZEN))
  mults[FROZEN] = 0.0
  return rules, mults


def label_params(params: Mapping[str, Any], rules: Rules) -> Any:
  """Pytree of labels shaped like `params`: the label of the first matching rule.

  Raises UserError naming every unmatched path, or a rule that is not a regex.
  """
  compiled = []
  for pattern, label in rules:
    try:
      compiled.append((re.compile(pattern), label))
    except re.error as e:
      raise UserError(f'freezing rule {pattern!r} is not a valid regex ({e}); fix the rule') from None
  flat = traverse_util.flatten_dict(params)
  labels, unmatched = {}, []
  for key in flat:
    path = '/'.join(key)
    label = next((l for rx, l in compiled if rx.search(path)), None)
    if label is None:
      unmatched.append(path)
    labels[key] = label
  if unmatched:
    shown = ', '.join(unmatched[:5]) + (', ...' if len(unmatched) > 5 else '')
    raise UserError(f'{len(unmatched)} parameters match no freezing rule ({shown}); add a rule '
                    "for them, e.g. ('.*', 'frozen') last")
  return traverse_util.unflatten_dict(labels)


def decay_mask(params: Mapping[str, Any]) -> Any:
  """True for conv/dense kernels; False for BatchNorm scale/bias and all biases."""
  flat = traverse_util.flatten_dict(params)
  return traverse_util.unflatten_dict({k: k[-1] == 'kernel' for k in flat})


def _group_tx(optimizer: str, mult: float, weight_decay: float, momentum: float,
              b1: float, b2: float) -> optax.GradientTransformation:
  # Updates come out scaled by -mult; the step multiplies them by its learning rate,
  # so one compiled step serves every learning rate and schedule.
  return optax.chain(optim_lib.direction(optimizer, b1=b1, b2=b2, momentum=momentum,
                                         weight_decay=weight_decay), optax.scale(-mult))


def group_labels(params: Mapping[str, Any], rules: Rules, multipliers: Mapping[str, float], *,
                 weight_decay: float = 0.0, decay_norm_and_bias: bool = False) -> Any:
  """Optimiser group of every parameter: 'frozen', or 'lr*<multiplier>' plus '|no_decay'
  for BatchNorm parameters and biases (unless `decay_norm_and_bias`).

  Groups are named by what they do, so rule sets that train alike (scratch, and
  fine-tuning at the head's rate) give equal labels and share a compiled step.
  """
  labels = label_params(params, rules)
  unknown = sorted(set(jax.tree.leaves(labels)) - set(multipliers) - {FROZEN})
  if unknown:
    raise UserError(f'freezing rules use labels {unknown} that have no learning-rate multiplier; '
                    f'use one of: {", ".join(sorted(set(multipliers) | {FROZEN}))}')

  def group(label, decayed):
    mult = 0.0 if label == FROZEN else float(multipliers[label])
    if mult == 0.0:
      return FROZEN
    decays = decayed or decay_norm_and_bias or not weight_decay
    return f'lr*{mult!r}' + ('' if decays else _NO_DECAY)
  return jax.tree.map(group, labels, decay_mask(params))


def optimizer_for_labels(labels: Any, *, optimizer: str = 'adamw', weight_decay: float = 0.0,
                         momentum: float = 0.9, b1: float = 0.9, b2: float = 0.999
                         ) -> optax.GradientTransformation:
  """optax.multi_transform over `group_labels`: set_to_zero for 'frozen', else the optimiser
  scaled by the group's multiplier (updates are `-mult * direction`: multiply by the learning
  rate and add with `apply_updates`)."""
  transforms = {}
  for label in set(jax.tree.leaves(labels)):
    if label == FROZEN:
      transforms[label] = optax.set_to_zero()
    else:
      mult = float(label.removesuffix(_NO_DECAY).removeprefix('lr*'))
      wd = 0.0 if label.endswith(_NO_DECAY) else weight_decay
      transforms[label] = _group_tx(optimizer, mult, wd, momentum, b1, b2)
  return optax.multi_transform(transforms, labels)


def make_optimizer(params: Mapping[str, Any], rules: Rules, multipliers: Mapping[str, float], *,
                   optimizer: str = 'adamw', weight_decay: float = 0.0, momentum: float = 0.9,
                   b1: float = 0.9, b2: float = 0.999, decay_norm_and_bias: bool = False
                   ) -> tuple[optax.GradientTransformation, Any]:
  """(optax.multi_transform over the groups of `rules`, their `group_labels` pytree)."""
  labels = group_labels(params, rules, multipliers, weight_decay=weight_decay,
                        decay_norm_and_bias=decay_norm_and_bias)
  return optimizer_for_labels(labels, optimizer=optimizer, weight_decay=weight_decay,
                              momentum=momentum, b1=b1, b2=b2), labels


def apply_updates(params: Any, updates: Any, labels: Any, lr: jax.Array) -> Any:
  """`params + lr * updates`, leaving frozen leaves untouched (bitwise, even -0.0)."""
  return jax.tree.map(lambda p, u, l: p if l == FROZEN else p + (lr * u).astype(p.dtype),
                      params, updates, labels)


def split_trainable(params: Any, labels: Any) -> tuple[dict, dict]:
  """Flat {path tuple: leaf} dicts of (trainable, frozen) parameters.

  Differentiating only the trainable dict lets XLA drop gradient work for the
  frozen part (all of the backbone in feature extraction).
  """
  flat, flat_labels = traverse_util.flatten_dict(params), traverse_util.flatten_dict(labels)
  trainable = {k: v for k, v in flat.items() if flat_labels[k] != FROZEN}
  frozen = {k: v for k, v in flat.items() if flat_labels[k] == FROZEN}
  return trainable, frozen


def merge(trainable: dict, frozen: dict) -> Any:
  """Inverse of `split_trainable`."""
  return traverse_util.unflatten_dict({**trainable, **frozen})


def keep_frozen_stats(new_stats: Any, old_stats: Any, labels: Any) -> Any:
  """BatchNorm statistics of modules whose parameters are all frozen keep their old values."""
  frozen_modules = {}
  for key, label in traverse_util.flatten_dict(labels).items():
    frozen_modules[key[:-1]] = frozen_modules.get(key[:-1], True) and label == FROZEN
  flat_new, flat_old = traverse_util.flatten_dict(new_stats), traverse_util.flatten_dict(old_stats)
  return traverse_util.unflatten_dict(
      {k: flat_old[k] if frozen_modules.get(k[:-1], False) else v for k, v in flat_new.items()})


def count_state(opt_state: Any) -> int:
  """Number of array elements the optimiser keeps (frozen groups add none)."""
  return sum(int(jnp.size(x)) for x in jax.tree.leaves(opt_state))
