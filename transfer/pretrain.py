"""The embedded pretraining source: a ResNet this project trains on digits 0-4.

It stands in for ImageNet weights so the transfer ablation runs offline: the
model is trained from scratch on scikit-learn's digits `pretrain.classes` and
exported with `transfer.convert.save_converted`, the format of converted
torchvision/Keras weights, so every consumer reads it like real weights.
It is trained once per cache directory and reused afterwards.
"""
from __future__ import annotations

import os
import shutil

import ml_collections

from common.errors import UserError
from transfer import convert, loop, models
from transfer.validation import pretrain_config
from transfer.weights import PRETRAIN

SOURCE = 'scikit-learn digits {classes}, {size}x{size} RGB, trained from scratch by transfer.pretrain'


def source_weights(config: ml_collections.ConfigDict, workdir: str) -> str:
  """`model.weights`, with 'pretrain' replaced by the source model's directory (trained on first
  use, under `pretrain.dir` or WORKDIR/pretrain)."""
  if config.model.weights != PRETRAIN or config.mode == 'scratch':
    return config.model.weights
  return ensure_pretrained(config, config.pretrain.dir or os.path.join(workdir, 'pretrain'))


def ensure_pretrained(config: ml_collections.ConfigDict, cache_dir: str) -> str:
  """The directory of the source weights under `cache_dir`, training them if absent."""
  out = os.path.join(cache_dir, 'weights')
  if os.path.exists(os.path.join(out, convert.METADATA_FILE)):
    return out
  if config.data.name != 'digits':
    raise UserError("model.weights='pretrain' is the digits source model; for other data pass "
                    'converted ImageNet weights (python -m launch.convert)')
  pcfg = pretrain_config(config)
  print(f'pretraining the source {config.model.arch} on digits {pcfg.data.classes} '
        f'(once; cached in {out})', flush=True)
  summary, variables = loop.run(pcfg, os.path.join(cache_dir, 'run'))
  if variables is None:
    raise UserError(f'the pretraining run in {cache_dir}/run finished without a checkpoint; '
                    'delete that directory and run again')
  if os.path.exists(out):
    shutil.rmtree(out)  # an export cut short: metadata.json is written last
  convert.save_converted(out, variables, {
      'arch': pcfg.model.arch, 'style': pcfg.model.style, 'include_top': True,
      'num_classes': int(variables['params']['head']['bias'].shape[0]),
      'preprocess_style': models.preprocess_style(pcfg.model.arch, pcfg.model.style),
      'source': SOURCE.format(classes=pcfg.data.classes, size=pcfg.data.image_size),
      'image_size': pcfg.data.image_size, 'source_test_top1': summary['top1'],
      'head': pcfg.model.head, 'head_hidden': list(pcfg.model.head_hidden),
  })
  return out
