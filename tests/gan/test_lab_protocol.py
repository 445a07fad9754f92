"""The lab's page messages are checked before anything acts on them; frames decode."""
import json
import struct

import numpy as np
import pytest

from gan.lab import protocol
from gan.lab.protocol import ProtocolError


@pytest.mark.parametrize('text,message', [
    ('{oops', 'not JSON'),
    ('"play"', 'JSON object'),
    ('{"type": "rm -rf"}', 'unknown message type'),
    ('{"type": "set", "key": "model.hidden", "value": 1000000000}', 'out of range'),
    ('{"type": "set", "key": "model.depth", "value": 6}', 'out of range'),
    ('{"type": "set", "key": "model.d_fourier", "value": 100000}', 'out of range'),
    ('{"type": "set", "key": "model.d_fourier_scale", "value": 0}', 'out of range'),
    ('{"type": "set", "key": "data.path", "value": "/etc/passwd"}', 'unknown setting'),
    ('{"type": "set", "key": "optim.g_lr", "value": true}', 'takes a number'),
    ('{"type": "set", "key": "train.n_d", "value": 2.5}', 'takes an integer'),
    ('{"type": "set", "key": "loss.name", "value": "kl"}', 'must be one of'),
    ('{"type": "set", "key": "data.name", "value": "points"}', 'must be one of'),
    ('{"type": "points", "points": [[0, 0]]}', '2 to'),
    ('{"type": "points", "points": [[0, 0], [1, "a"]]}', 'pairs'),
    ('{"type": "points", "points": [[0, 0], [1e300, 1]]}', 'finite'),
    ('{"type": "speed", "rounds_per_frame": 1e9}', 'rounds_per_frame'),
    ('{"type": "slowmo", "on": "yes"}', 'true or false'),
    ('{"type": "open", "name": 3}', 'saved session'),
])
def test_bad_messages_are_refused_in_one_line(text, message):
  with pytest.raises(ProtocolError, match=message) as e:
    protocol.parse(text)
  assert '\n' not in str(e.value)


def test_oversized_messages_are_refused_before_parsing():
  with pytest.raises(ProtocolError, match='limit'):
    protocol.parse('[' * (protocol.MAX_MESSAGE + 1))


def test_good_messages_come_back_checked():
  assert protocol.parse('{"type": "set", "key": "train.n_g", "value": 0}')['value'] == 0
  assert protocol.parse('{"type": "set", "key": "optim.d_lr", "value": 1}')['value'] == 1.0
  pts = protocol.parse(json.dumps({'type': 'points', 'points': [[0, 1], [2, 3]]}))['points']
  assert pts.dtype == np.float32 and pts.shape == (2, 2)


def test_frames_pack_header_and_aligned_float32_arrays():
  a, b = np.arange(6, dtype=np.float32).reshape(3, 2), np.ones((2, 2), np.float64)
  blob = protocol.pack_frame({'round': 7}, {'a': a, 'b': b})
  n = struct.unpack('<I', blob[:4])[0]
  header = json.loads(blob[4:4 + n])
  start = 4 + n + (-(4 + n) % 4)
  assert start % 4 == 0 and header['round'] == 7
  off, rows, cols = header['arrays']['b']
  got = np.frombuffer(blob, np.float32, rows * cols, start + off).reshape(rows, cols)
  assert np.array_equal(got, b)
