"""Where a transfer run's starting weights come from and how they enter the model.

`model.weights` names converted weights (a directory from `launch.convert`), an original
torchvision/Keras file, '' for a random init, or 'pretrain' (the embedded source model, made by
`transfer.pretrain` and resolved in `transfer.train` before a run starts).
"""
from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common.errors import UserError
from transfer import convert, features, models

PRETRAIN = 'pretrain'


def resolve_weights(config: ml_collections.ConfigDict, path: str | None = None
                    ) -> tuple[str, str]:
  """(weights path or '' for random init, preprocessing style that goes with them); `path`, when
  given, replaces `model.weights` (the pretrained source's directory once it exists)."""
  m = config.model
  path = m.weights if path is None else path
  if config.mode == 'scratch' or not path:
    return '', models.preprocess_style(m.arch, m.style)
  if path == PRETRAIN:
    raise UserError("model.weights='pretrain' is made by transfer.train.train_and_evaluate "
                    '(python -m launch.transfer); resolve it there or name converted weights')
  style = models.preprocess_style(m.arch, m.style)
  if os.path.isfile(os.path.join(path, convert.METADATA_FILE)):
    meta = convert.read_metadata(path)
    style = meta.get('preprocess_style', meta.get('style', style))
  return path, style


@functools.lru_cache(maxsize=8)
def _init_fn(model: Any, image_size: int):
  # Compiled once per model: initialising a ResNet compiles for seconds, runs in milliseconds.
  x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
  return jax.jit(lambda key: model.init(key, x, train=False))


@functools.lru_cache(maxsize=2)
def _load_weights(path: str, weights_id: str, arch: str, style: str, include_top: bool) -> dict:
  """Host copies of converted weights; an ablation loads the same ones for every run."""
  del weights_id  # part of the cache key only: changed files are read again
  return jax.tree.map(np.asarray, convert.load_weights(path, arch, style, include_top=include_top))


def init_variables(model: Any, config: ml_collections.ConfigDict, weights: str,
                   key: jax.Array) -> dict:
  """Random init, then the backbone (and with include_top the head) from `weights`."""
  variables = _init_fn(model, config.data.image_size)(key)
  # A VGG without BatchNorm has no statistics: an empty collection keeps one state layout.
  variables = {'params': dict(variables['params']),
               'batch_stats': variables.get('batch_stats', {})}
  if not weights:
    return variables
  m = config.model
  loaded = _load_weights(weights, features.weights_id(weights), m.arch, m.style, m.include_top)
  loaded = jax.tree.map(jnp.asarray, loaded)  # fresh buffers: the train step donates its state
  if m.include_top:
    head = loaded['params']['head']['bias'].shape[0]
    if head != model.num_classes:
      raise UserError(f'the weights in {weights} have a {head}-class head but the data has '
                      f'{model.num_classes} classes; set model.include_top=False to train a '
                      'new head')
  params = dict(variables['params'])
  params.update({k: v for k, v in loaded['params'].items()})
  return {'params': params, 'batch_stats': loaded['batch_stats']}


def check_weights(config: ml_collections.ConfigDict) -> None:
  """Refuses `model.weights` made for another arch or style than the config's, up front.

  A converted directory is judged by its metadata.json; an original file by its tensor names
  (a safetensors header, a memory-mapped torch file, Keras HDF5 layer names), without building
  a model, so a mismatch is reported before data loading and compilation. Random init,
  'pretrain' (made for the config's own arch) and scratch runs have nothing to check.
  """
  m = config.model
  path = m.weights
  if config.mode == 'scratch' or not path or path == PRETRAIN:
    return
  if os.path.isdir(path):
    meta = convert.read_metadata(path)
    found, what = (meta['arch'], meta['style']), 'says its metadata.json'
  elif os.path.isfile(path):
    suffixes = (convert.TORCHVISION_SUFFIXES if m.style == 'torchvision'
                else convert.KERAS_SUFFIXES)
    if not path.endswith(suffixes):
      return  # loading names the suffixes this style reads
    models.check_arch(m.arch, m.style)  # an unknown arch or style is its own error
    arch = convert.file_arch(path, m.style, m.arch)
    if arch is None:
      return  # no ResNet fits: loading lists the missing and unused tensors
    found, what = (arch, m.style), 'judged by its tensor names'
  else:
    raise UserError(f'model.weights {path} not found; pass a directory made by '
                    'python -m launch.convert or an original .pth/.safetensors/.h5 file')
  if found == (m.arch, m.style):
    return
  fix = ' '.join(f'--config.model.{key}={value}' for key, value, want in
                 (('arch', found[0], m.arch), ('style', found[1], m.style)) if value != want)
  raise UserError(f'model.weights {path} holds {found[0]} ({found[1]}) weights ({what}) but '
                  f'the config asks for {m.arch} ({m.style}); set {fix}, or give {m.arch} '
                  f'({m.style}) weights')


def check_head(config: ml_collections.ConfigDict, weights: str, num_classes: int) -> None:
  """include_top with a converted directory: compare class counts before any heavy work."""
  meta_path = os.path.join(weights, convert.METADATA_FILE) if weights else ''
  if not (config.model.include_top and os.path.isfile(meta_path)):
    return  # original weight files are checked when they are loaded
  meta = convert.read_metadata(weights)
  if not meta.get('include_top'):
    raise UserError(f'the weights in {weights} have no classifier head; set '
                    'model.include_top=False to train a new head')
  if meta.get('num_classes') != num_classes:
    raise UserError(f'the weights in {weights} have a {meta.get("num_classes")}-class head but '
                    f'the data has {num_classes} classes; set model.include_top=False to train '
                    'a new head')


def feature_key(weights: str, style: str, seed: int) -> str:
  """Names the backbone and preprocessing in feature-cache file names."""
  return f'{features.weights_id(weights)}-{style}' if weights else f'random{seed}-{style}'
