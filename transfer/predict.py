"""Predictions of a finished transfer run on new images: top-k classes, a CSV and a grid PNG.

A run that finishes writes its selected weights to WORKDIR/weights (`transfer.loop`), with the
class names, the input size and the preprocessing; `predict_paths` reads them, applies the run's
eval transform (shorter side to resize_size, centre crop image_size) and returns one row per
image. A folder with class sub-folders is labelled by them (true label, accuracy); otherwise
every image directly in it is read.
"""
from __future__ import annotations

import csv
import dataclasses
import os
import warnings
from typing import Any

import numpy as np

from common.errors import UserError
from common.writers import FIGURE_DPI
from transfer import convert, data as data_lib, features, models

WEIGHTS_DIR = 'weights'


@dataclasses.dataclass
class Prediction:
  path: str
  top: list[tuple[str, float]]  # (class name, probability), best first
  true: str | None = None  # class sub-folder name, when there is one


def run_weights(workdir: str) -> str:
  """The directory of the weights a finished run selected, or a one-line UserError."""
  weights = os.path.join(workdir, WEIGHTS_DIR)
  if not os.path.isdir(workdir):
    raise UserError(f'workdir {workdir} does not exist; pass the workdir of a finished '
                    'python -m launch.transfer run')
  if not os.path.isfile(os.path.join(weights, convert.METADATA_FILE)):
    if os.path.isdir(os.path.join(workdir, 'runs')):
      why = 'is an ablation, whose runs keep no weights; run one mode with train.checkpoint=True'
    elif os.path.isfile(os.path.join(workdir, 'summary.json')):
      why = 'kept no weights (train.checkpoint=False); rerun it with train.checkpoint=True'
    else:
      why = ('has no finished run; finish it first (rerunning its python -m launch.transfer '
             'command resumes it)')
    raise UserError(f'workdir {workdir} {why}')
  if 'class_names' not in convert.read_metadata(weights):
    raise UserError(f'{weights} holds converted weights, not a transfer run\'s; pass the workdir '
                    'of a python -m launch.transfer run')
  return weights


def load_run(workdir: str) -> tuple[Any, dict, dict]:
  """(model, variables, metadata) of the weights a finished run selected."""
  variables, meta = convert.load_converted(run_weights(workdir))
  model = models.create_model(meta['arch'], meta['num_classes'], meta['style'],
                              head=meta.get('head'),
                              head_hidden=tuple(meta.get('head_hidden') or ()),
                              head_dropout=meta.get('head_dropout') or 0.0)
  return model, variables, meta


def _read(path: str) -> np.ndarray | None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      return np.asarray(im.convert('RGB'))
  except Exception:  # pillow raises many types for a bad file
    return None


def _images_in(folder: str) -> list[str]:
  return sorted(os.path.join(folder, f) for f in os.listdir(folder)
                if not f.startswith('.') and f.lower().endswith(data_lib.IMAGE_EXTENSIONS)
                and os.path.isfile(os.path.join(folder, f)))


def collect(paths: list[str]) -> list[tuple[str, str | None]]:
  """(image path, true class or None) for every image named or inside a named folder."""
  if not paths:
    raise UserError('name at least one image or folder: python -m launch.predict --workdir=DIR '
                    'IMAGE_OR_FOLDER...')
  out = []
  for path in paths:
    if os.path.isfile(path):
      out.append((path, None))
    elif os.path.isdir(path):
      subdirs = sorted(d for d in os.listdir(path) if not d.startswith('.')
                       and os.path.isdir(os.path.join(path, d)))
      found = [(f, None) for f in _images_in(path)]
      for d in subdirs:  # class sub-folders: their name is the true label
        found += [(f, d) for f in _images_in(os.path.join(path, d))]
      if not found:
        raise UserError(f'folder {path} has no images ({", ".join(data_lib.IMAGE_EXTENSIONS)}); '
                        'name a folder of images or of class sub-folders')
      out += found
    else:
      raise UserError(f'{path} does not exist; name image files or folders')
  return out


def predict_paths(workdir: str, paths: list[str], top_k: int = 5, batch_size: int = 32
                  ) -> tuple[list[Prediction], np.ndarray, dict]:
  """Predictions for `paths` (images or folders), the images as shown (uint8 [N, S, S, 3]) and
  the run's weights metadata."""
  if top_k < 1:
    raise UserError(f'--top_k must be at least 1, got {top_k}')
  run_weights(workdir)  # a workdir without a finished run is named before any image is read
  raw, kept, skipped = [], [], []
  for path, true in collect(paths):
    image = _read(path)
    if image is None:
      if true is None and path in paths:  # named on the command line
        raise UserError(f'image {path} is unreadable (not an image pillow can decode, or '
                        'damaged); check the file')
      skipped.append(path)
      continue
    raw.append(image)
    kept.append((path, true))
  if skipped:
    warnings.warn(f'skipped {len(skipped)} unreadable image(s): {", ".join(skipped[:5])}')
  if not raw:
    raise UserError(f'none of the images in {", ".join(paths)} is readable; check the files')
  model, variables, meta = load_run(workdir)
  transform = data_lib.square_transform(meta['image_size'], meta.get('resize_size')
                                        or meta['image_size'], False)
  images = [transform(image) for image in raw]
  x = np.stack(images)
  fn = features.forward_fn(model, meta['preprocess_style'])
  logits = np.concatenate([np.asarray(fn(variables, x[i:i + batch_size])[0])
                           for i in range(0, len(x), batch_size)])
  logits = logits - logits.max(axis=1, keepdims=True)
  probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
  names = meta['class_names']
  k = min(top_k, len(names))
  rows = []
  for (path, true), p in zip(kept, probs):
    best = np.argsort(-p, kind='stable')[:k]
    rows.append(Prediction(path, [(names[c], float(p[c])) for c in best], true))
  return rows, x, meta


def accuracy(rows: list[Prediction]) -> float | None:
  """Top-1 accuracy over the rows with a true label (None without any)."""
  labelled = [r for r in rows if r.true is not None]
  if not labelled:
    return None
  return float(np.mean([r.top[0][0] == r.true for r in labelled]))


def write_csv(path: str, rows: list[Prediction]) -> None:
  """One row per image: path, true label, then class and probability of each of the top k."""
  k = max(len(r.top) for r in rows)
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['image', 'true'] + [h for i in range(1, k + 1) for h in (f'top{i}', f'p{i}')])
    for r in rows:
      w.writerow([r.path, r.true or ''] + [v for name, p in r.top for v in (name, f'{p:.6f}')])


def table(rows: list[Prediction]) -> str:
  """The predictions as a text table (image, true label, top classes with probabilities)."""
  lines = []
  width = min(max(len(os.path.basename(r.path)) for r in rows), 40)
  for r in rows:
    top = ', '.join(f'{name} {100 * p:.1f}%' for name, p in r.top)
    true = f' [{r.true}]' if r.true is not None else ''
    lines.append(f'{os.path.basename(r.path)[:width]:<{width}}{true}  {top}')
  return '\n'.join(lines)


def save_grid(path: str, rows: list[Prediction], images: np.ndarray, title: str = '') -> None:
  """The images in a grid, each titled with its prediction (and true label: green if right,
  red if wrong)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  n = len(rows)
  ncol = min(n, 6)
  nrow = -(-n // ncol)
  fig, axes = plt.subplots(nrow, ncol, figsize=(2.2 * ncol, 2.5 * nrow), squeeze=False)
  for ax in axes.flat:
    ax.axis('off')
  for ax, r, image in zip(axes.flat, rows, images):
    ax.imshow(image)
    name, p = r.top[0]
    label = f'{name} ({100 * p:.0f}%)'
    color = 'black'
    if r.true is not None:
      label += f'\ntrue: {r.true}'
      color = 'green' if name == r.true else 'red'
    ax.set_title(label, fontsize=8, color=color)
  if title:
    fig.suptitle(title)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  fig.savefig(path, dpi=FIGURE_DPI)
  plt.close(fig)
