"""Reading torch weight files: checksums in torch hub names, and state dicts as numpy arrays.

One reader serves every converter (torchvision ResNets, the FID InceptionV3). `.pth`/`.pt` files
are read with `torch.load(weights_only=True)`, so a pickle that would run code is refused;
`.safetensors` files need no torch. torch is imported inside the functions: only converters
need it.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from typing import Mapping

import numpy as np

from common import file_kinds
from common.errors import UserError

# flax variable (collection, leaf name) -> torch state-dict suffix, for Conv, Dense and BatchNorm.
LEAF_NAMES = {
    ('params', 'kernel'): 'weight',
    ('params', 'scale'): 'weight',
    ('params', 'bias'): 'bias',
    ('batch_stats', 'mean'): 'running_mean',
    ('batch_stats', 'var'): 'running_var',
}

# torch hub names files `<name>-<first hex digits of sha256>.pth`.
_HASH_IN_NAME = re.compile(r'^.+-([0-9a-f]{8,64})\.(pth|pt)$')


def file_digest(path: str | os.PathLike, algorithm: str = 'sha256') -> str:
  """Hex digest of a file (any hashlib algorithm), read in chunks."""
  digest = hashlib.new(algorithm)
  with open(path, 'rb') as f:
    for chunk in iter(lambda: f.read(1 << 20), b''):
      digest.update(chunk)
  return digest.hexdigest()


def check_name_hash(path: str | os.PathLike) -> None:
  """Refuses a file whose torch hub style name carries a sha256 prefix its bytes do not have."""
  match = _HASH_IN_NAME.match(os.path.basename(path))
  if match is None:
    return
  prefix = match.group(1)
  if not file_digest(path).startswith(prefix):
    raise UserError(f'weights file {path} fails its checksum (its name says sha256 starts with '
                    f'{prefix}); the file is corrupt or renamed: download it again, or rename it '
                    'if that suffix is not a checksum')


def _safetensors_error(path: str | os.PathLike, e: Exception) -> UserError:
  why = ('shorter than its header says' if 'incomplete metadata' in str(e)
         else 'unreadable header: ' + file_kinds.brief(
             e, prefix='Error while deserializing header: '))
  return file_kinds.unreadable(path, 'safetensors', why)


def _read_safetensors(path: str | os.PathLike) -> dict[str, np.ndarray]:
  from safetensors.numpy import load_file  # pylint: disable=g-import-not-at-top
  try:
    tensors = load_file(str(path))
  except Exception as e:  # safetensors raises its own error types
    raise _safetensors_error(path, e) from None
  return {k: np.asarray(v, np.float32) for k, v in tensors.items()}


# What torch's weights_only unpickler names when it refuses an import: a global (function or
# class) the file would load. Any other refusal means the pickle itself is damaged.
_REFUSED_GLOBAL = re.compile(
    r"GLOBAL ([\w.]+)|Can only (?:create|build) .* but got <class '([\w.]+)'>")
# Globals of these packages are layers and models: a whole pickled network, not a state dict.
_MODEL_PACKAGES = ('torch.nn.', 'torchvision.', 'timm.')


def _torch_load(path: str | os.PathLike, mmap: bool = False):
  """torch.load(weights_only=True), its failures turned into one-line UserErrors.

  mmap maps a zip-format file's tensors instead of reading them (older files are read whole).
  """
  import torch  # pylint: disable=g-import-not-at-top
  if mmap:
    with open(path, 'rb') as f:
      mmap = f.read(4) == b'PK\x03\x04'  # only torch.save's zip format can be mapped
  try:
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')  # torch warns about the formats it then refuses
      return torch.load(path, map_location='cpu', weights_only=True, mmap=mmap)
  except pickle.UnpicklingError as e:
    match = _REFUSED_GLOBAL.search(str(e))
    if match is None or file_kinds.sniff(path) != 'torch':
      raise file_kinds.unreadable(path, 'torch', 'its pickled data is damaged') from None
    name = match.group(1) or match.group(2)
    if name.startswith(_MODEL_PACKAGES):
      raise UserError(f'weights file {path} holds a whole pickled model ({name}), which '
                      'contains code and was refused; save model.state_dict() instead') from None
    raise UserError(f'weights file {path} contains code and was refused (it would load '
                    f'{name}); use a file that holds only tensors (a state_dict)') from None
  except EOFError:
    raise file_kinds.unreadable(path, 'torch', 'it ends early') from None
  except Exception as e:  # damaged files surface as many exception types
    why = ('its zip archive is damaged' if 'zip archive' in str(e)
           else f'{type(e).__name__}: {file_kinds.brief(e)}')
    raise file_kinds.unreadable(path, 'torch', why) from None


def _torch_state_dict(path: str | os.PathLike, mmap: bool = False) -> dict:
  """{name: torch.Tensor} of a `.pth`/`.pt` file, unwrapped and checked (see read_state_dict)."""
  try:
    import torch  # pylint: disable=g-import-not-at-top
  except ImportError:
    raise UserError('reading .pth weights needs torch; install the CPU build: '
                    'pip install "advcnn[torch]"') from None
  state = _torch_load(path, mmap)
  # Training checkpoints wrap the state dict; DataParallel prefixes 'module.'.
  if isinstance(state, Mapping) and isinstance(state.get('state_dict'), Mapping):
    state = state['state_dict']
  if not isinstance(state, Mapping):
    raise UserError(f'weights file {path} holds a {type(state).__name__}, not a state_dict; '
                    'save model.state_dict(), not the model')
  tensors = {k.removeprefix('module.'): v for k, v in state.items()
             if isinstance(v, torch.Tensor)}
  if not tensors:
    keys = ', '.join(map(str, list(state)[:5])) or 'none'
    raise UserError(f'weights file {path} is a torch file without tensors (keys: {keys}), not a '
                    'model state_dict; use the weights file, not an optimizer or training log')
  return tensors


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """{tensor name: float32 numpy array} of a `.pth`/`.pt` or `.safetensors` state dict.

  A training checkpoint's nested `state_dict` is unwrapped and DataParallel's `module.` prefix
  dropped; entries that are not tensors are skipped. Each way a file can fail ends in its own
  one-line UserError: damaged or of another format (named), pickles holding code or whole
  models, and valid torch files that hold no state dict.
  """
  if os.fspath(path).endswith('.safetensors'):
    return _read_safetensors(path)
  import torch  # pylint: disable=g-import-not-at-top
  return {k: v.detach().to(torch.float32).numpy() for k, v in _torch_state_dict(path).items()}


def tensor_names(path: str | os.PathLike) -> list[str]:
  """The tensor names `read_state_dict` would return, reading (almost) no values.

  A safetensors file's header is read alone; a torch zip file is memory-mapped. Cheap enough to
  check a file against a configuration before any heavy work.
  """
  if not os.fspath(path).endswith('.safetensors'):
    return list(_torch_state_dict(path, mmap=True))
  from safetensors import safe_open  # pylint: disable=g-import-not-at-top
  try:
    with safe_open(str(path), framework='numpy') as f:
      return list(f.keys())
  except Exception as e:  # safetensors raises its own error types
    raise _safetensors_error(path, e) from None


def to_flax_layout(x: np.ndarray) -> np.ndarray:
  """A torch tensor in flax's layout: conv OIHW -> HWIO, Linear [out, in] -> [in, out]."""
  if x.ndim == 4:
    return x.transpose(2, 3, 1, 0)
  return x.T if x.ndim == 2 else x
