"""The classifier on top of every backbone: pooled or flattened features, optional hidden layers
with dropout, then the Dense `head`.

Its parameters sit at the model's top level as `fc1`, `fc2`, ... (hidden Dense + ReLU) and `head`
(the logits), the names of Keras' VGG top, so freezing rules (`TOP_PATTERN`) and weight
conversion see one layout for every family, and a head trained on cached features
(`head_logits`) has the same parameters as the one inside the model.

Kinds (`HEADS`):
- 'global_pool': mean over H and W, [B, H, W, C] -> [B, C] (ResNet's and InceptionV3's top).
- 'flatten': [B, H, W, C] -> [B, H*W*C] (VGG's top; the tutorial's head with hidden layers).

Dropout (rate `dropout`) acts before the last Dense layer only, as in the tutorial's head
(Dense 4096, Dense 1072, Dropout 0.2, softmax) and torchvision's InceptionV3, and only when the
call asks for it (`dropout=True`, with `rngs={'dropout': key}`).
"""
from __future__ import annotations

import re
from typing import Any, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from common.errors import UserError, unknown_name

HEADS = ('global_pool', 'flatten')
# Parameters of the top: the head and its hidden layers.
TOP_PATTERN = r'^(head|fc\d+)/'
_TOP = re.compile(r'^(head|fc\d+)$')


def is_top(module: str) -> bool:
  """Whether a top-level module name ('head', 'fc1', ...) belongs to the classifier top."""
  return bool(_TOP.match(module))


def check_head(kind: str, hidden: Sequence[int], dropout: float) -> None:
  """Refuses an unknown head kind, non-positive hidden widths or a dropout outside [0, 1)."""
  if kind not in HEADS:
    raise unknown_name('head', kind, HEADS)
  if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in hidden):
    raise UserError(f'model.head_hidden must list positive layer widths, got {tuple(hidden)!r}')
  if not 0 <= dropout < 1:
    raise UserError(f'model.head_dropout must be in [0, 1), got {dropout}')


def adaptive_avg_pool(x: jax.Array, size: int) -> jax.Array:
  """torch's AdaptiveAvgPool2d((size, size)) on NHWC: [B, H, W, C] -> [B, size, size, C].

  Output cell i averages input rows floor(i*H/size) .. ceil((i+1)*H/size) - 1 (likewise
  columns); a smaller input is replicated, as torchvision's VGG does below 224 px.
  """
  _, h, w, _ = x.shape
  if (h, w) == (size, size):
    return x

  def weights(n):
    m = np.zeros((size, n), np.float32)
    for i in range(size):
      lo, hi = (i * n) // size, -((-(i + 1) * n) // size)
      m[i, lo:hi] = 1.0 / (hi - lo)
    return jnp.asarray(m, x.dtype)
  return jnp.einsum('ih,bhwc,jw->bijc', weights(h), x, weights(w))


def pooled_features(x: jax.Array, kind: str, pool_to: int | None = None,
                    channels_first: bool = False) -> jax.Array:
  """The head's input from the last feature map [B, H, W, C]: [B, C] or [B, H*W*C].

  `pool_to` and `channels_first` reproduce torchvision VGG's own top (adaptive pool to 7x7,
  flatten in NCHW order), so its converted classifier weights apply unchanged.
  """
  if kind == 'global_pool':
    return jnp.mean(x, axis=(1, 2))
  if pool_to:
    x = adaptive_avg_pool(x, pool_to)
  if channels_first:
    x = jnp.transpose(x, (0, 3, 1, 2))
  return x.reshape(x.shape[0], -1)


def classifier(x: jax.Array, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.0,
               train_dropout: bool = False, kernel_init: Any = nn.initializers.lecun_normal(),
               dtype: Any = jnp.float32) -> jax.Array:
  """[B, D] features -> [B, num_classes] logits, inside the calling module's compact method
  (the Dense layers become its `fc1`.. and `head` children)."""
  for i, width in enumerate(hidden, start=1):
    x = nn.relu(nn.Dense(width, kernel_init=kernel_init, dtype=dtype, name=f'fc{i}')(x))
  if dropout:
    x = nn.Dropout(dropout, deterministic=not train_dropout)(x)
  return nn.Dense(num_classes, kernel_init=kernel_init, dtype=dtype, name='head')(x)


def top_params(params: Mapping[str, Any]) -> dict[str, Any]:
  """The classifier's parameters ({'fc1': ..., 'head': ...}) of a model's params."""
  return {k: v for k, v in params.items() if is_top(k)}


def head_logits(top: Mapping[str, Any], features: jax.Array, dropout: float = 0.0,
                key: jax.Array | None = None) -> jax.Array:
  """`classifier` applied with parameters `top` (see `top_params`) to cached features [B, D].

  With `key` and a rate, dropout acts as in the model (flax's Dropout arithmetic).
  """
  x = features
  for i in range(1, len(top)):
    layer = top[f'fc{i}']
    x = jax.nn.relu(jnp.dot(x, layer['kernel']) + layer['bias'])
  if dropout and key is not None:
    keep = jax.random.bernoulli(key, 1.0 - dropout, x.shape)
    x = jax.lax.select(keep, x / (1.0 - dropout), jnp.zeros_like(x))
  return jnp.dot(x, top['head']['kernel']) + top['head']['bias']
