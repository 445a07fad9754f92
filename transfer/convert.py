"""Pretrained ResNet, VGG and InceptionV3 weights from torchvision and Keras files -> flax
variables.

Readers:
- torchvision state dicts in `.pth`/`.pt` (read with torch.load(weights_only=
  True), so a pickle that would run code is refused) or `.safetensors`, by
  `common.torch_files`. InceptionV3's auxiliary classifier (`AuxLogits.*`) is
  skipped: it only trains the original network.
- Keras applications weights, either the legacy HDF5 layout of the published
  `*_weights_tf_dim_ordering_tf_kernels[_notop].h5` files or Keras 3
  `.weights.h5` files from `model.save_weights`, by `transfer.keras_files`.

Which tensor feeds which variable is `transfer.layouts`' business. A file of
another family than the one asked for (a VGG file given as InceptionV3) is
named for what it is in one line.

Every conversion is checked against the target model's parameter shapes; all
missing, unused and mis-shaped tensors are reported together in one
`WeightsMismatchError`. Published file names carry checksums (sha256 prefix for
torchvision, MD5 table in keras_files for Keras), verified before use.

`save_converted`/`load_converted` keep converted weights as an orbax
checkpoint plus `metadata.json`; `load_weights` accepts either form.
"""

import json
import os
import re
from pathlib import Path
from typing import Any, Callable, Collection, Mapping

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from common import torch_files
from common.errors import UserError, first_line, unknown_name
from transfer import heads, keras_files, layouts, models

Variables = dict[str, Any]

METADATA_FILE = 'metadata.json'
CHECKPOINT_DIR = 'variables'
FORMAT_VERSION = 1
SOURCES = ('torchvision', 'keras')

_KERAS_HEAD_LAYERS = layouts.KERAS_HEAD_LAYERS
_LIST_LIMIT = 8


class WeightsMismatchError(UserError):
  """A weights file does not fit the model; the full name lists are kept."""

  def __init__(self, message: str, missing: list[str], unused: list[str],
               mismatched: list[str]):
    super().__init__(message)
    self.missing = missing
    self.unused = unused
    self.mismatched = mismatched


# ----------------------------------------------------------------------------
# File checks.


def _require_file(path: str | os.PathLike) -> Path:
  path = Path(path)
  if not path.is_file():
    raise UserError(f'weights file {path} not found; pass the path of an '
                    f'existing weights file')
  return path


# ----------------------------------------------------------------------------
# Conversion.


def from_torchvision(path: str | os.PathLike, arch: str,
                     num_classes: int | None = None,
                     include_top: bool = True) -> Variables:
  """torchvision state dict (.pth/.pt/.safetensors) of `arch` -> flax variables.

  `num_classes=None` takes the head size from the file. With include_top=False
  the file's classifier tensors (`fc`, VGG's `classifier`) are dropped.
  """
  models.check_arch(arch, 'torchvision')
  path = _require_file(path)
  if path.suffix not in TORCHVISION_SUFFIXES:
    raise UserError(f'weights file {path} has suffix {path.suffix!r}; '
                    f'torchvision weights must be .pth, .pt or .safetensors')
  torch_files.check_name_hash(path)
  source = torch_files.read_state_dict(path)
  head = layouts.torchvision_name(arch, ('params', 'head', 'kernel'))
  top_prefixes = tuple({layouts.torchvision_name(arch, ('params', m, 'kernel')).rsplit('.', 1)[0]
                        + '.' for m in ('head', 'fc1', 'fc2')
                        if m == 'head' or models.ARCHS[arch] == 'vgg'})
  return _convert(source, path, arch, 'torchvision', num_classes, include_top,
                  name_fn=lambda p: layouts.torchvision_name(arch, p),
                  value_fn=torch_files.to_flax_layout,
                  top_prefixes=top_prefixes, head_kernel=head,
                  head_classes_axis=0,
                  ignored=lambda name: layouts.torchvision_ignored(arch, name))


def from_keras(path: str | os.PathLike, arch: str,
               num_classes: int | None = None,
               include_top: bool = True) -> Variables:
  """Keras applications weights (.h5 / .weights.h5) of `arch` -> flax variables.

  `num_classes=None` takes the head size from the file. With
  include_top=False the file's classifier tensors (and VGG's fc1, fc2) are dropped.
  """
  models.check_arch(arch, 'keras')
  path = _require_file(path)
  if path.suffix not in KERAS_SUFFIXES:
    raise UserError(f'weights file {path} has suffix {path.suffix!r}; Keras '
                    f'weights must be .h5 or .weights.h5')
  keras_files.verify_md5(path)
  source = keras_files.read_keras(path, arch)
  head_layer = next((h for h in _KERAS_HEAD_LAYERS if f'{h}/kernel' in source),
                    _KERAS_HEAD_LAYERS[0])
  top_prefixes = (f'{head_layer}/', 'fc1/', 'fc2/', 'flatten/')
  return _convert(source, path, arch, 'keras', num_classes, include_top,
                  name_fn=lambda p: layouts.keras_name(arch, p, head_layer),
                  value_fn=lambda x: x, top_prefixes=top_prefixes,
                  head_kernel=f'{head_layer}/kernel', head_classes_axis=1)


def _convert(source: dict[str, np.ndarray], path: Path, arch: str, style: str,
             num_classes: int | None, include_top: bool,
             name_fn: Callable[[tuple[str, ...]], str],
             value_fn: Callable[[np.ndarray], np.ndarray], top_prefixes: tuple[str, ...],
             head_kernel: str, head_classes_axis: int,
             ignored: Callable[[str], bool] = lambda name: False) -> Variables:
  """Maps `source` onto the model's variables, reporting every misfit."""
  _check_family(source, path, arch, style)
  head = source.get(head_kernel)
  if include_top:
    if head is None:
      raise UserError(f'weights file {path} has no classifier head '
                      f'({head_kernel}); pass include_top=False '
                      f'(--include_top=false) to use it as a feature extractor')
    file_classes = int(head.shape[head_classes_axis])
    if num_classes is None:
      num_classes = file_classes
    elif num_classes != file_classes:
      raise UserError(f'weights file {path} has a {file_classes}-class head but '
                      f'num_classes={num_classes}; pass '
                      f'--num_classes={file_classes}, or --include_top=false '
                      f'to drop the head and train a new one')
  target = traverse_util.flatten_dict(
      models.abstract_variables(arch, style, num_classes, include_top))

  # A notop model has no top, so the file's top tensors are expected extra.
  ignorable = {k for k in source if ignored(k)} | (set() if include_top else {
      k for k in source if k.startswith(top_prefixes)})
  used = set()
  missing, mismatched, flat = [], [], {}
  for key, leaf in target.items():
    name = name_fn(key)
    if name not in source:
      missing.append(name)
      continue
    used.add(name)
    value = value_fn(source[name])
    if value.shape != leaf.shape:
      as_model = (f' (as {_shape(value.shape)})'
                  if value.shape != source[name].shape else '')
      mismatched.append(f'{name} {_shape(source[name].shape)}{as_model} vs '
                        f'model {_shape(leaf.shape)}')
      continue
    flat[key] = jnp.asarray(value, jnp.float32)
  unused = [k for k in source if k not in used and k not in ignorable
            and not k.endswith('num_batches_tracked')]
  missing, unused, mismatched = (sorted(names, key=_natural_key)
                                 for names in (missing, unused, mismatched))
  if missing or unused or mismatched:
    guess = layouts.guess_arch(source, style)
    hint = f' but looks like {guess}' if guess and guess != arch else ''
    raise WeightsMismatchError(
        f'weights file {path.name} does not fit {arch} ({style}){hint}: '
        f'{_describe(missing, "missing")}, {_describe(unused, "unused")}, '
        f'{_describe(mismatched, "shape mismatch")}; check --arch / --source',
        missing, unused, mismatched)
  # A VGG without BatchNorm has no statistics; its empty collection keeps one layout.
  return {'batch_stats': {}, **traverse_util.unflatten_dict(flat)}


def _shape(shape: tuple[int, ...]) -> str:
  return 'x'.join(map(str, shape)) if shape else 'scalar'


def _natural_key(name: str) -> list:
  """Sorts 'layer2.10' after 'layer2.9', as the file lists them."""
  return [int(t) if t.isdigit() else t for t in re.split(r'(\d+)', name)]


def _describe(names: list[str], what: str) -> str:
  if not names:
    return f'0 {what}'
  shown = ', '.join(names[:_LIST_LIMIT])
  more = f', +{len(names) - _LIST_LIMIT} more' if len(names) > _LIST_LIMIT else ''
  return f'{len(names)} {what} ({shown}{more})'


def _check_family(source: Collection[str], path: Path, arch: str, style: str) -> None:
  """A file of another family than `arch`'s is named for what it holds, in one line."""
  guess = layouts.guess_arch(source, style)
  if guess is None or models.ARCHS[guess] == models.ARCHS[arch]:
    return
  raise WeightsMismatchError(
      f'weights file {path.name} holds {guess} weights ({style} layout), not {arch}: its tensor '
      f'names are those of {guess}; pass --arch={guess} (config: model.arch={guess}) or give '
      f'{arch} weights', [], [], [])


TORCHVISION_SUFFIXES = ('.pth', '.pt', '.safetensors')
KERAS_SUFFIXES = ('.h5', '.hdf5')


def file_arch(path: str | os.PathLike, style: str, arch: str) -> str | None:
  """The registered arch an original weights file holds, judged by its tensor names alone.

  No model is built; torch and safetensors values are not even read. `arch` (the one asked for)
  only names the layers of a Keras 3 file whose layer counts fit no arch. None: no arch fits,
  and converting the file would list what is missing and unused.
  """
  path = _require_file(path)
  if style == 'torchvision':
    names = torch_files.tensor_names(path)
  else:
    names = list(keras_files.read_keras(path, arch))
  return layouts.guess_arch(names, style)


# ----------------------------------------------------------------------------
# Converted checkpoints.


def _check_empty_dir(out_dir: Path) -> None:
  if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
    raise UserError(f'output directory {out_dir} already exists and is not '
                    f'empty; choose a new --output directory')


def save_converted(out_dir: str | os.PathLike, variables: Variables,
                   metadata: Mapping[str, Any]) -> Path:
  """Writes `variables` as an orbax checkpoint plus metadata.json.

  `metadata` needs at least arch, style, include_top and num_classes; weights
  of a model with a new head (`transfer.heads`) also record `head`,
  `head_hidden` and `image_size`, so `load_converted` rebuilds its shapes.
  Refuses a non-empty `out_dir`; metadata.json is written last, so its
  presence marks a complete conversion.
  """
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  out_dir = Path(out_dir).absolute()
  _check_empty_dir(out_dir)
  for key in ('arch', 'style', 'include_top', 'num_classes'):
    if key not in metadata:
      raise UserError(f'metadata lacks {key!r}; pass arch, style, include_top '
                      f'and num_classes')
  out_dir.mkdir(parents=True, exist_ok=True)
  with ocp.StandardCheckpointer() as checkpointer:
    checkpointer.save(out_dir / CHECKPOINT_DIR, variables)
    checkpointer.wait_until_finished()
  meta = {'format_version': FORMAT_VERSION, **metadata}
  (out_dir / METADATA_FILE).write_text(json.dumps(meta, indent=2) + '\n')
  return out_dir


def read_metadata(directory: str | os.PathLike) -> dict[str, Any]:
  """A `save_converted` directory's metadata.json (arch, style, include_top, num_classes, ...)."""
  meta_path = Path(directory) / METADATA_FILE
  if not meta_path.is_file():
    raise UserError(f'{directory} has no {METADATA_FILE}; convert weights with '
                    f'python -m launch.convert first')
  try:
    meta = json.loads(meta_path.read_text())
  except ValueError as e:
    raise UserError(f'{meta_path} is corrupt ({type(e).__name__}: '
                    f'{first_line(e)}); convert the weights again') from None
  required = ('arch', 'num_classes', 'style', 'include_top')
  missing = [k for k in required if not isinstance(meta, dict) or k not in meta]
  if missing:
    raise UserError(f'{meta_path} is corrupt (it lacks {", ".join(missing)}); convert the '
                    f'weights again')
  return meta


def load_converted(directory: str | os.PathLike
                   ) -> tuple[Variables, dict[str, Any]]:
  """Reads a `save_converted` directory -> (variables, metadata)."""
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  directory = Path(directory).absolute()
  meta = read_metadata(directory)
  arch, num_classes, style, include_top = (
      meta[k] for k in ('arch', 'num_classes', 'style', 'include_top'))
  head, hidden = meta.get('head'), tuple(meta.get('head_hidden') or ())
  models.create_model(arch, num_classes, style, include_top, head=head,
                      head_hidden=hidden)  # validates
  target = models.abstract_variables(arch, style, num_classes, include_top, head, hidden,
                                     meta.get('image_size'))
  try:
    with ocp.StandardCheckpointer() as checkpointer:
      variables = checkpointer.restore(directory / CHECKPOINT_DIR, target)
  except Exception as e:  # orbax reports damage with many exception types
    raise UserError(f'checkpoint in {directory} is corrupt or incomplete '
                    f'({type(e).__name__}: {first_line(e)}); convert the '
                    f'weights again') from None
  return variables, meta


def convert_file(source: str, path: str | os.PathLike, out_dir: str | os.PathLike,
                 arch: str, num_classes: int | None = None,
                 include_top: bool = True) -> dict[str, Any]:
  """Converts one weights file into `out_dir`; returns the metadata written."""
  if source not in SOURCES:
    raise unknown_name('weights source', source, SOURCES)
  _check_empty_dir(Path(out_dir))  # fail before the slow part
  reader = from_torchvision if source == 'torchvision' else from_keras
  variables = reader(path, arch, num_classes=num_classes,
                     include_top=include_top)
  if include_top:
    num_classes = int(variables['params']['head']['bias'].shape[0])
  metadata = {
      'arch': arch, 'style': source, 'include_top': include_top,
      'num_classes': num_classes if include_top else None,
      'preprocess_style': models.preprocess_style(arch, source),
      'source_file': Path(path).name,
      'source_sha256': torch_files.file_digest(path),
  }
  if models.ARCHS[arch] == 'inception' and source == 'torchvision':
    metadata['transform_input'] = True  # torchvision's pretrained InceptionV3 re-scales inputs
  save_converted(out_dir, variables, metadata)
  return metadata


def load_weights(path_or_dir: str | os.PathLike, arch: str,
                 style: str = 'torchvision', num_classes: int | None = None,
                 include_top: bool = True) -> Variables:
  """Variables for `create_model(arch, ..., style)` from a file or converted dir.

  A directory must come from `save_converted`; a file is converted on the fly
  with the reader for `style`. With include_top=False any head is dropped.
  """
  models.check_arch(arch, style)
  path = Path(path_or_dir)
  if not path.is_dir():
    reader = from_torchvision if style == 'torchvision' else from_keras
    return reader(path, arch, num_classes=num_classes, include_top=include_top)
  variables, meta = load_converted(path)
  if (meta['arch'], meta['style']) != (arch, style):
    raise UserError(f'{path} holds {meta["arch"]} ({meta["style"]}) weights, '
                    f'not {arch} ({style}); fix the arch/style or the path')
  params = dict(variables['params'])
  if include_top:
    if not meta['include_top']:
      raise UserError(f'{path} has no classifier head; pass include_top=False '
                      f'or convert with --include_top=true')
    if num_classes is not None and num_classes != meta['num_classes']:
      raise UserError(f'{path} has a {meta["num_classes"]}-class head but '
                      f'num_classes={num_classes}; pass '
                      f'num_classes={meta["num_classes"]} or include_top=False')
  else:
    params = {k: v for k, v in params.items() if not heads.is_top(k)}
  return {'params': params, 'batch_stats': variables['batch_stats']}
