"""Classification evaluation: top-1/top-5 (top-5 with more than 5 classes only), per-class
accuracy, confusion matrix PNG."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from common.sharding import pad_shard_unpad
from common.writers import save_figure


def predict(logits_fn: Callable[[np.ndarray], object], source, batch_size: int = 128
            ) -> tuple[np.ndarray, np.ndarray]:
  """(logits [N, classes], labels [N]) of every record of `source`, in order.

  `logits_fn` maps a batch of the source's inputs (`image` or `feature`) to
  logits; batches are padded to `batch_size`, so it sees one shape only.
  """
  n = len(source)
  b = batch_size
  logits, labels = [], []
  for start in range(0, n, b):
    batch = source.gather(np.arange(start, min(start + b, n)))
    x = batch['image'] if 'image' in batch else batch['feature']
    logits.append(pad_shard_unpad(logits_fn, x, b))
    labels.append(np.asarray(batch['label']))
  return np.concatenate(logits).astype(np.float32), np.concatenate(labels).astype(np.int64)


def confusion_matrix(predictions: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
  """[classes, classes] counts; row = true class, column = predicted class."""
  cm = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(cm, (labels, predictions), 1)
  return cm


TOP_K = 5


def classification_metrics(logits: np.ndarray, labels: np.ndarray, num_classes: int) -> dict:
  """top1, top5, loss, per-class accuracy and confusion.

  top5 is None unless there are more than 5 classes: with 5 or fewer every label is among the
  top 5 and the number (always 1.0) says nothing, so tables and summaries leave it out. Per-class
  accuracy is NaN for a class absent from `labels`.
  """
  logits = np.asarray(logits, np.float64)
  labels = np.asarray(labels)
  topk = np.argsort(-logits, axis=1, kind='stable')[:, :TOP_K]
  shifted = logits - logits.max(axis=1, keepdims=True)
  log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
  cm = confusion_matrix(topk[:, 0], labels, num_classes)
  support = cm.sum(axis=1)
  with np.errstate(invalid='ignore', divide='ignore'):
    per_class = np.where(support > 0, np.diag(cm) / support, np.nan)
  top5 = (float(np.mean(np.any(topk == labels[:, None], axis=1)))
          if num_classes > TOP_K else None)
  return {
      'top1': float(np.mean(topk[:, 0] == labels)),
      'top5': top5,
      'loss': float(-np.mean(log_probs[np.arange(len(labels)), labels])),
      'per_class': per_class,
      'confusion': cm,
  }


def save_confusion_png(path: str, confusion: np.ndarray, class_names: Sequence[str],
                       title: str = '') -> None:
  """Row-normalised confusion matrix as a heatmap with counts (counts only up to 30 classes)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  n = len(class_names)
  rows = confusion.sum(axis=1, keepdims=True)
  norm = np.divide(confusion, rows, out=np.zeros(confusion.shape, float), where=rows > 0)
  size = min(4 + 0.35 * n, 24)
  fig, ax = plt.subplots(figsize=(size, size * 0.9))
  im = ax.imshow(norm, cmap='Blues', vmin=0, vmax=1)
  fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label='fraction of true class')
  if n <= 30:
    ax.set_xticks(range(n), [str(c) for c in class_names], rotation=90 if n > 10 else 0)
    ax.set_yticks(range(n), [str(c) for c in class_names])
    for i in range(n):
      for j in range(n):
        if confusion[i, j]:
          ax.text(j, i, str(confusion[i, j]), ha='center', va='center', fontsize=8,
                  color='white' if norm[i, j] > 0.5 else 'black')
  ax.set_xlabel('predicted')
  ax.set_ylabel('true')
  ax.set_title(title or 'confusion matrix')
  fig.tight_layout()
  save_figure(path, fig)
  plt.close(fig)
