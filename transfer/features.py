"""Cached backbone features: run a frozen backbone once, train heads on the result.

With the backbone frozen and BatchNorm in inference mode, the pooled features
of an image never change, so feature extraction can compute them once
(`cached_features`, stored as npz) and train the head on `[N, C]` arrays for
as many epochs as it likes. `linear_probe` is the scikit-learn baseline on the
same features.
"""
from __future__ import annotations

import functools
import hashlib
import os
from typing import Any, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from common import distributed, sharding
from common.diskspace import writing
from common.errors import UserError
from common.kernels.xla_cpu import jit_for
from transfer import heads, preprocess


@functools.lru_cache(maxsize=8)
def forward_fn(model: Any, style: str, mesh: Mesh | None = None):
  """Jitted (variables, uint8 images [B, H, W, 3]) -> (logits [B, classes], pooled [B, C]).

  Evaluation and feature extraction share it, so a model compiles once for both.
  With a `mesh` the outputs come back replicated over it (see `sharded_forward`).
  """
  def forward(variables, images):
    logits, stages = model.apply(variables, preprocess(images, style), capture_stages=True)
    return logits, stages['pool']
  out = {} if mesh is None else {'out_shardings': sharding.replicated(mesh)}
  return jit_for(model)(forward, **out)


def sharded_forward(model: Any, style: str, mesh: Mesh):
  """`forward_fn` with the batch split over the mesh's `data` axis (data-parallel inference).

  Returns `apply(variables, images)`: variables replicated on the mesh, host uint8
  images [B, H, W, 3] (the same on every process) -> numpy (logits [B, classes],
  pooled [B, C]). B is padded to a multiple of the devices; each process puts its
  own contiguous slice on its devices (the mesh lists devices process by process).
  """
  fn = forward_fn(model, style, mesh)

  def apply(variables, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return sharding.pad_shard_unpad(functools.partial(fn, variables), images, mesh=mesh)
  return apply


def extract(model: Any, variables: Mapping[str, Any], style: str, source,
            batch_size: int = 64, mesh: Mesh | None = None) -> tuple[np.ndarray, np.ndarray]:
  """Pooled features [N, C] float32 and labels [N] of every record of `source`, in order.

  `model` has a head (its output is dropped). Batches are padded to
  `batch_size`, so the backbone compiles once; they are split over `mesh`
  (default: every device, `sharding.data_mesh`).
  """
  mesh = mesh or sharding.data_mesh()
  fn = forward_fn(model, style, mesh)
  bvars = sharding.replicate({'params': variables['params'],
                              'batch_stats': variables['batch_stats']}, mesh)
  feats, labels = [], []
  n = len(source)
  b = batch_size
  for start in range(0, n, b):
    batch = source.gather(np.arange(start, min(start + b, n)))
    feats.append(sharding.pad_shard_unpad(lambda x: fn(bvars, x)[1], batch['image'], b, mesh))
    labels.append(np.asarray(batch['label']))
  return np.concatenate(feats).astype(np.float32), np.concatenate(labels).astype(np.int32)


def weights_id(weights: str) -> str:
  """Short digest identifying a weights file or converted directory (path, size, mtime)."""
  h = hashlib.sha256()
  walk = sorted(os.walk(weights)) if os.path.isdir(weights) else [('', [], [weights])]
  for root, _, files in walk:
    for f in sorted(files):
      path = os.path.join(root, f)
      st = os.stat(path)
      h.update(f'{os.path.abspath(path)}:{st.st_size}:{st.st_mtime_ns};'.encode())
  return h.hexdigest()[:12]


def cached_features(cache_dir: str, key: str, model: Any, variables: Mapping[str, Any],
                    style: str, source, batch_size: int = 64, mesh: Mesh | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
  """`extract`, stored as `cache_dir/<key>.npz` and read back on later calls.

  `key` must identify the weights, the preprocessing and the records. In a
  multi-process run every process extracts (the batch is split over all of
  them) and process 0 alone writes the file.
  """
  path = os.path.join(cache_dir, f'{key}.npz')
  if os.path.exists(path):
    try:
      with np.load(path) as f:
        return f['features'], f['labels']
    except (OSError, ValueError, KeyError):
      pass  # a torn write from an interrupted run: compute again
  features, labels = extract(model, variables, style, source, batch_size, mesh)
  if distributed.is_main():
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + '.tmp.npz'
    with writing('cached backbone features', path):
      try:
        np.savez(tmp, features=features, labels=labels)
        os.replace(tmp, path)
      finally:
        if os.path.exists(tmp):
          os.remove(tmp)
  distributed.barrier('features')  # later calls find the whole file on every process
  return features, labels


def head_logits(head: Mapping[str, jax.Array], features: jax.Array) -> jax.Array:
  """A Dense head alone on pooled features: [B, C] -> [B, classes] (`heads.head_logits` serves
  tops with hidden layers)."""
  return heads.head_logits({'head': head}, features)


def linear_probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray,
                 test_y: np.ndarray, c: float = 1.0, max_iter: int = 2000) -> dict[str, float]:
  """Multinomial logistic regression (scikit-learn) on standardised features."""
  from sklearn.linear_model import LogisticRegression
  from sklearn.pipeline import make_pipeline
  from sklearn.preprocessing import StandardScaler
  if len(np.unique(train_y)) < 2:
    raise UserError('a linear probe needs at least two classes in the training split')
  clf = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter))
  clf.fit(train_x, train_y)
  return {'top1': float(np.mean(clf.predict(test_x) == test_y)),
          'train_top1': float(np.mean(clf.predict(train_x) == train_y))}
