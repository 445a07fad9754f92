"""Which images of a dataset a run uses: class subsets, per-class train/test splits, and the
validation split carved from the training split. Pure functions of labels and a seed.
"""
from __future__ import annotations

import numpy as np

from common.errors import UserError


def parse_classes(spec: str) -> list[int]:
  """'0-4' or '5,7,9' -> sorted digit classes."""
  out = set()
  try:
    for part in str(spec).split(','):
      lo, _, hi = part.strip().partition('-')
      out.update(range(int(lo), int(hi or lo) + 1))
  except ValueError:
    raise UserError(f'data.classes {spec!r} is not like "0-4" or "5,7,9"; fix it') from None
  if not out or min(out) < 0 or max(out) > 9:
    raise UserError(f'data.classes {spec!r} must name digits 0..9')
  return sorted(out)


def per_class_split(labels: np.ndarray, num_classes: int, rng: np.random.Generator,
                    train_per_class: int = 0, test_fraction: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) indices: `train_per_class` per class (or all but `test_fraction`)."""
  train, test = [], []
  for c in range(num_classes):
    idx = rng.permutation(np.flatnonzero(labels == c))
    if train_per_class:
      if train_per_class >= len(idx):
        raise UserError(f'data.train_per_class={train_per_class} leaves no test examples of '
                        f'class {c} ({len(idx)} in all); lower it')
      k = train_per_class
    else:
      k = len(idx) - int(round(len(idx) * test_fraction))
    train.append(idx[:k])
    test.append(idx[k:])
  return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def split_validation(labels: np.ndarray, train: np.ndarray, fraction: float, seed: int,
                     class_names: list[str]) -> tuple[np.ndarray, np.ndarray]:
  """(train, validation) indices: `fraction` of each class of `train` (rounded), drawn with the
  seed's own stream, so a seed always holds out the same images.

  A class whose share rounds to no image, or to all of them, is refused with its count.
  """
  if not fraction:
    return train, np.zeros((0,), np.int64)
  rng = np.random.default_rng([seed, 0x76616c])  # apart from the train/test draw
  keep, val = [], []
  for c, name in enumerate(class_names):
    idx = rng.permutation(train[labels[train] == c])
    k = int(round(len(idx) * fraction))
    if k == 0 or k == len(idx):
      what = 'no validation example' if k == 0 else 'no training example'
      raise UserError(f'data.val_fraction={fraction} leaves class {name!r} with {what} (it has '
                      f'{len(idx)} training example(s), {len(idx)} x {fraction} rounds to {k}); '
                      'change data.val_fraction or use more training examples per class')
    val.append(idx[:k])
    keep.append(idx[k:])
  return np.sort(np.concatenate(keep)), np.sort(np.concatenate(val))


def select_classes(spec: str, names: list[str]) -> list[int]:
  """Label indices of a class subset: '' (all), or a comma list of class names, indices and
  index ranges ('0-9': the first ten classes; 'apple_pie,baklava')."""
  if not str(spec).strip():
    return list(range(len(names)))
  out = set()
  for part in str(spec).split(','):
    part = part.strip()
    if part in names:
      out.add(names.index(part))
      continue
    lo, _, hi = part.partition('-')
    try:
      lo, hi = int(lo), int(hi or lo)
    except ValueError:
      shown = ', '.join(names[:5]) + (', ...' if len(names) > 5 else '')
      raise UserError(f'data.class_subset names {part!r}, which is neither a class ({shown}) nor '
                      'an index range like 0-9') from None
    if not 0 <= lo <= hi < len(names):
      raise UserError(f'data.class_subset {part!r} is outside the {len(names)} classes (indices '
                      f'0..{len(names) - 1}); fix data.class_subset')
    out.update(range(lo, hi + 1))
  return sorted(out)


def _relabel(selected: list[int], num_classes: int) -> np.ndarray:
  """Old label -> new label (0..len(selected)-1), -1 for classes left out."""
  mapping = np.full((num_classes,), -1, np.int64)
  mapping[np.asarray(selected, np.int64)] = np.arange(len(selected))
  return mapping
