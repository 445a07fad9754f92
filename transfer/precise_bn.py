"""Precise BatchNorm statistics for evaluation (`train.precise_bn`).

A run that trains BatchNorm keeps running averages of each layer's batch mean and variance; an
evaluation normalises with them. After few steps they are mostly the initial values and the
statistics of earlier weights: a momentum of 0.1 (torchvision) has moved 79% of the way in 15
steps, Keras' 0.01 only 14%. A deep network evaluated with them can score at chance on images
it fits in training. Before an evaluation, `estimate` replaces them by the statistics of each
layer's inputs over the first few training batches under the current weights (as "precise BN",
Wu & Johnson 2021), without touching the training state.

Each layer's batch statistic is read through the model's own train-mode update, whatever its
convention (biased or unbiased variance, momentum): with the running values at 0 an update
leaves (1 - m) b, at 1 it leaves m + (1 - m) b, so m and then b follow.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from common.kernels.xla_cpu import jit_for
from transfer import preprocess
from transfer.preprocessing import resize_center_crop


def statistics_fn(model: Any, style: str) -> Callable[[dict, np.ndarray], Any]:
  """jitted (variables, uint8 images [B, S, S, 3]) -> each BatchNorm's batch statistics
  (the `batch_stats` tree, holding batch means and variances)."""

  def updated(variables, x, fill):
    stats = jax.tree.map(lambda a: jnp.full_like(a, fill), variables['batch_stats'])
    _, upd = model.apply({'params': variables['params'], 'batch_stats': stats}, x, train=True,
                         mutable=['batch_stats'])
    return upd['batch_stats']

  def stats(variables, images):
    x = preprocess(images, style)
    low, high = updated(variables, x, 0.0), updated(variables, x, 1.0)
    return jax.tree.map(lambda a, c: a / (1.0 - (c - a)), low, high)

  return jit_for(model)(stats)


def estimate(fn: Callable[[dict, np.ndarray], Any], variables: dict, source, batch_size: int,
             num_batches: int, image_size: int) -> Any:
  """Batch statistics averaged over the first `num_batches` batches of `source` (in record
  order, centre crops, no augmentation): the mean of the batch means and of the batch
  variances."""
  n = min(len(source), batch_size * num_batches)
  parts = []
  for start in range(0, n, batch_size):
    images = np.asarray(source.gather(np.arange(start, min(start + batch_size, n)))['image'])
    # Training records may be stored larger, for random crops: the eval transform's centre crop.
    parts.append(fn(variables, resize_center_crop(images, min(images.shape[1:3]), image_size)))
  return jax.tree.map(lambda *xs: sum(xs) / len(xs), *parts)
