"""The lab's messages: what a page may send, checked before anything acts on it, and the
binary frame format the server pushes.

Page -> server (JSON text over the WebSocket), one `type` each:
  play | pause | round | step_d | step_g | reset | list
  speed {rounds_per_frame: 1..MAX_ROUNDS_PER_FRAME}    slowmo {on: bool}
  set {key, value}        a setting (SETTINGS); model-shape keys (RESET_KEYS) start anew
  points {points: [[x, y], ...]}   a drawn distribution (2..MAX_POINTS finite points)
  save                   open {name}    ping {t}
Anything else, or a value out of range, is refused with a one-line message (`ProtocolError`).

Server -> page: JSON text (hello, state, data, notice, saved, sessions, pong) and binary
frames: uint32 little-endian header length, the JSON header, zero padding to 4 bytes, then
float32 arrays at the offsets the header's `arrays` gives ({name: [offset, rows, cols]}).
"""
from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from common.optim import OPTIMIZERS
from gan.data2d import DISTRIBUTIONS
from gan.losses import LOSSES
from gan.models import ACTIVATIONS, NOISE_DISTS

MAX_MESSAGE = 1 << 20  # bytes of one page message (a drawing of MAX_POINTS fits easily)
MAX_POINTS = 5000
MAX_ROUNDS_PER_FRAME = 1000
SIMPLE = ('play', 'pause', 'round', 'step_d', 'step_g', 'reset', 'list', 'save')

CHOICES: dict[str, tuple[str, ...]] = {
    'optim.g_name': OPTIMIZERS, 'optim.d_name': OPTIMIZERS, 'loss.name': tuple(LOSSES),
    'data.name': tuple(DISTRIBUTIONS), 'model.noise': NOISE_DISTS,
    'model.activation': tuple(ACTIVATIONS),
}
# key -> (low, high, integer?): the ranges a page may set; wider values are refused.
RANGES: dict[str, tuple[float, float, bool]] = {
    'optim.g_lr': (1e-6, 1.0, False), 'optim.d_lr': (1e-6, 1.0, False),
    'optim.b1': (0.0, 0.999, False), 'optim.b2': (0.0, 0.9999, False),
    'optim.momentum': (0.0, 0.999, False), 'optim.weight_decay': (0.0, 1.0, False),
    'loss.gp_weight': (0.0, 1000.0, False), 'loss.r1_gamma': (0.0, 1000.0, False),
    'loss.r1_every': (1, 64, True), 'train.n_d': (0, 10, True), 'train.n_g': (0, 10, True),
    'train.ema_decay': (0.0, 0.9999, False), 'data.batch_size': (2, 2048, True),
    'model.depth': (0, 5, True), 'model.hidden': (1, 256, True), 'model.noise_dim': (1, 8, True),
    'model.d_fourier': (0, 256, True), 'model.d_fourier_scale': (0.01, 1000.0, False),
    'seed': (0, 2**31 - 1, True),
}
RESET_KEYS = ('model.depth', 'model.hidden', 'model.noise_dim', 'model.d_fourier',
              'model.d_fourier_scale', 'seed')
SETTINGS = tuple(CHOICES) + tuple(RANGES)


class ProtocolError(ValueError):
  """A page message the lab refuses; the message says why in one line."""


def _number(key: str, value: Any) -> float | int:
  low, high, integer = RANGES[key]
  if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
    raise ProtocolError(f'{key} takes a number, got {value!r:.60}')
  if integer and value != int(value):
    raise ProtocolError(f'{key} takes an integer, got {value!r}')
  if not low <= value <= high:
    raise ProtocolError(f'{key}={value!r} is out of range: use {low:g} to {high:g}')
  return int(value) if integer else float(value)


def check_setting(key: Any, value: Any) -> tuple[str, Any]:
  """(key, value) when `key` is a setting and `value` in its range or choices."""
  if key not in SETTINGS:
    raise ProtocolError(f'unknown setting {key!r:.60}')
  if key in CHOICES:
    if value not in CHOICES[key]:
      raise ProtocolError(f'{key} must be one of {", ".join(CHOICES[key])}, got {value!r:.60}')
    return key, value
  return key, _number(key, value)


def _points(points: Any) -> np.ndarray:
  if not isinstance(points, list) or not 2 <= len(points) <= MAX_POINTS:
    raise ProtocolError(f'a drawing needs 2 to {MAX_POINTS} points')
  try:
    arr = np.asarray(points, np.float64)
  except (TypeError, ValueError):
    raise ProtocolError('a drawing is a list of [x, y] number pairs') from None
  if arr.shape != (len(points), 2) or not np.all(np.isfinite(arr)) or np.abs(arr).max() > 1e4:
    raise ProtocolError('a drawing is a list of [x, y] pairs of finite numbers (|v| <= 1e4)')
  return arr.astype(np.float32)


def parse(text: str | bytes) -> dict:
  """A page message, checked: its `type` and fields (values converted, points as an array)."""
  if len(text) > MAX_MESSAGE:
    raise ProtocolError(f'message of {len(text)} bytes is over the {MAX_MESSAGE} limit')
  try:
    msg = json.loads(text)
  except (ValueError, UnicodeDecodeError):
    raise ProtocolError('message is not JSON') from None
  if not isinstance(msg, dict) or not isinstance(msg.get('type'), str):
    raise ProtocolError('message must be a JSON object with a "type"')
  kind = msg['type']
  if kind in SIMPLE:
    return {'type': kind}
  if kind == 'speed':
    n = msg.get('rounds_per_frame')
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ROUNDS_PER_FRAME:
      raise ProtocolError(f'rounds_per_frame must be an integer in 1..{MAX_ROUNDS_PER_FRAME}')
    return {'type': kind, 'rounds_per_frame': n}
  if kind == 'slowmo':
    if not isinstance(msg.get('on'), bool):
      raise ProtocolError('slowmo takes "on": true or false')
    return {'type': kind, 'on': msg['on']}
  if kind == 'set':
    key, value = check_setting(msg.get('key'), msg.get('value'))
    return {'type': kind, 'key': key, 'value': value}
  if kind == 'points':
    return {'type': kind, 'points': _points(msg.get('points'))}
  if kind == 'open':
    name = msg.get('name')
    if not isinstance(name, str) or not name:
      raise ProtocolError('open takes the "name" of a saved session')
    return {'type': kind, 'name': name}
  if kind == 'ping':
    t = msg.get('t')
    return {'type': kind, 't': t if isinstance(t, (int, float)) else None}
  raise ProtocolError(f'unknown message type {kind!r:.40}')


def pack_frame(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
  """A binary frame: the header (with each array's [offset, rows, cols]) and float32 data."""
  blobs, offsets, offset = [], {}, 0
  for name, a in arrays.items():
    a = np.ascontiguousarray(a, np.float32).reshape(len(a), -1)
    offsets[name] = [offset, a.shape[0], a.shape[1]]
    blobs.append(a.tobytes())
    offset += a.nbytes
  head = json.dumps({**header, 'arrays': offsets}).encode()
  pad = -(4 + len(head)) % 4
  return struct.pack('<I', len(head)) + head + b' ' * pad + b''.join(blobs)
