"""One seed drives all randomness: named streams folded from `config.seed`."""
from __future__ import annotations

import zlib

import jax


def root_key(seed: int) -> jax.Array:
  return jax.random.key(int(seed))


def stream(key: jax.Array, name: str) -> jax.Array:
  """An independent key for a named purpose (`'init'`, `'train'`, `'eval'`, ...)."""
  return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)
