"""What a weights file really is, judged by its first bytes.

Readers (torch, safetensors, HDF5) fail on a file of another kind with messages about their own
internals; `sniff` lets the error name the file's actual kind instead, so a corrupt download, an
empty file and a valid file of the wrong format read differently.
"""
from __future__ import annotations

import os
import struct
import zipfile

from common.errors import UserError, first_line

# Kinds `sniff` returns, with the words an error message uses for them.
DESCRIPTIONS = {
    'empty': 'empty (0 bytes)',
    'zip': 'a zip archive',
    'torch': 'a torch file (torch.save)',
    'pickle': 'a plain Python pickle',
    'hdf5': 'an HDF5 (Keras) file',
    'safetensors': 'a safetensors file',
    'unknown': 'of no known weights format',
}

# The kinds a reader expects, as an error message names them.
_EXPECTED = {'torch': 'a torch file', 'safetensors': 'a safetensors file', 'hdf5': 'an HDF5 file'}
# What to do with a file of one kind given to a reader of another: {kind: {expected: hint}}.
_HINTS = {
    'torch': {'safetensors': 'name it *.pth', 'hdf5': 'read it as torchvision weights '
              '(--source=torchvision)'},
    'safetensors': {'torch': 'name it *.safetensors', 'hdf5': 'read it as torchvision weights '
                    '(--source=torchvision)'},
    'hdf5': {'torch': 'read it as Keras weights (--source=keras)',
             'safetensors': 'read it as Keras weights (--source=keras)'},
    'pickle': {'torch': 'save the weights with torch.save(model.state_dict(), path)',
               'safetensors': 'save the weights with safetensors or torch.save',
               'hdf5': 'save Keras weights with model.save_weights("x.weights.h5")'},
    'zip': {'torch': 'extract the weights file from it', 'safetensors': 'extract the weights '
            'file from it', 'hdf5': 'for a .keras model extract model.weights.h5 from it'},
}

_HDF5_SIGNATURE = b'\x89HDF\r\n\x1a\n'
_ZIP_SIGNATURE = b'PK\x03\x04'
# Legacy (pre-zip) torch.save: a protocol-2 pickle of the magic number 0x1950a86a20f9469cfc6c.
_LEGACY_TORCH_SIGNATURE = b'\x80\x02\x8a\x0al\xfc\x9cF\xf9 j\xa8P\x19'
# A safetensors file starts with the u64 little-endian length of a JSON header that follows.
_SAFETENSORS_MAX_HEADER = 100 << 20


def sniff(path: str | os.PathLike) -> str:
  """One of DESCRIPTIONS' keys for the file at `path` (which must exist)."""
  with open(path, 'rb') as f:
    head = f.read(16)
  if not head:
    return 'empty'
  if head.startswith(_HDF5_SIGNATURE):
    return 'hdf5'
  if head.startswith(_ZIP_SIGNATURE):
    return 'torch' if _zip_has_pickle(path) else 'zip'
  if head.startswith(_LEGACY_TORCH_SIGNATURE):
    return 'torch'
  # Pickle protocols 2-5 open with PROTO <n>.
  if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
    return 'pickle'
  if len(head) >= 9 and head[8:9] == b'{':
    (header_len,) = struct.unpack('<Q', head[:8])
    if header_len < _SAFETENSORS_MAX_HEADER:
      return 'safetensors'
  return 'unknown'


def _zip_has_pickle(path: str | os.PathLike) -> bool:
  """Whether a zip holds torch.save's `<name>/data.pkl`; a damaged zip counts as torch's."""
  try:
    with zipfile.ZipFile(path) as archive:
      return any(n.endswith('data.pkl') for n in archive.namelist())
  except (zipfile.BadZipFile, OSError):
    return True  # torch.save writes zips: a broken one is most likely a damaged torch file


def unreadable(path: str | os.PathLike, expected: str, why: str) -> UserError:
  """The error for a file its reader (for `expected`, a kind) could not parse.

  It names what the file really is: empty, damaged (then `why` says in a few words what was
  wrong), of no known format, or a valid file of another format (with what to do instead).
  """
  kind = sniff(path)
  if kind == 'empty':
    return UserError(f'weights file {path} is empty (0 bytes); download it again')
  if kind == expected:
    return UserError(f'weights file {path} is corrupt or truncated ({why}); download it again')
  if kind == 'unknown':
    return UserError(f'weights file {path} is corrupt or not {_EXPECTED[expected]} (its first '
                     'bytes match no weights format); download it again')
  return UserError(f'weights file {path} is {DESCRIPTIONS[kind]}, not {_EXPECTED[expected]}; '
                   f'{_HINTS[kind][expected]}')


def brief(e: BaseException, prefix: str = '', limit: int = 80) -> str:
  """A reader's own error, less a `prefix` it always carries, cut to fit a one-line message."""
  text = first_line(e).removeprefix(prefix)
  return text if len(text) <= limit else text[:limit - 3] + '...'
