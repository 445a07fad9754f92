"""Scores a finished GAN run: the EMA generator of its latest checkpoint, measured with the
metrics of `gan.evaluation` and appended to its metrics.jsonl and summary.json
(`python -m launch.evaluate`)."""
from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from common import distributed
from common import rng as rng_lib
from common import sharding
from common.checkpoint import Checkpointer
from common.errors import UserError
from common.workdir import lock_workdir, read_config
from common.writers import MetricWriter
from gan import images
from gan.configs.base import base_config
from gan.evaluation import (METRICS, Context, check_metrics, compute_metrics,
                            create_feature_net, generate, parse_metrics, uses_digits_net)
from gan.state import abstract_state, build_models
from gan.steps import GanSteps


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config in `workdir/config.json`, on top of today's defaults (new keys)."""
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    raise UserError(f'{workdir} has no config.json; pass the --workdir of a launch.gan run')
  saved = read_config(workdir, 'pass the --workdir of a launch.gan run')

  def tuples(v):  # JSON turned the config's tuples into lists
    return {k: tuples(x) for k, x in v.items()} if isinstance(v, dict) else (
        tuple(v) if isinstance(v, list) else v)

  config = base_config()
  config.update(tuples(saved))
  return config


def default_metrics(config: ml_collections.ConfigDict) -> list[str]:
  """The run's eval.metrics, else fid, kid, pr (and cas for conditional digits runs)."""
  names = parse_metrics(config.eval.get('metrics', ()))
  if names:
    return names
  if uses_digits_net(config) and config.model.get('num_classes', 0) > 0:
    return ['fid', 'kid', 'pr', 'cas']
  return ['fid', 'kid', 'pr']


def evaluate_workdir(workdir: str, metrics: str | list[str] | None = None,
                     num_samples: int | None = None, inception_weights: str | None = None,
                     reference_stats_path: str | None = None) -> tuple[int, dict[str, Any]]:
  """Metrics of the EMA generator in `workdir`'s latest checkpoint, appended to metrics.jsonl
  (with the checkpoint's step) and merged into summary.json. Returns (step, results)."""
  config = load_run_config(workdir)
  if distributed.is_main():
    lock_workdir(workdir)  # not while a run (or another evaluation) writes it
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(ckpt_dir) or not any(d.isdigit() for d in os.listdir(ckpt_dir)):
    raise UserError(f'{workdir} has no checkpoints; train it first (python -m launch.gan '
                    f'--workdir={workdir} ...) or pass another --workdir')
  names = parse_metrics(metrics) if metrics else default_metrics(config)
  if not names:
    raise UserError('no metric named; pass --metrics=NAME[,NAME...] from: ' + ', '.join(METRICS))
  n = int(num_samples if num_samples is not None else config.eval.num_samples)
  weights = inception_weights or config.eval.get('inception_weights', '')
  ref_path = reference_stats_path or config.eval.get('reference_stats', '')
  name = config.data.name
  if name not in images.IMAGE_DATASETS:
    raise UserError(f'launch.evaluate measures image GANs; {workdir} trained on {name!r} points, '
                    'whose metrics are already in its metrics.jsonl')
  check_metrics(config, names, n, weights, ref_path)
  shape = (8, 8, 1) if name == 'digits' else images.TFDS_IMAGE_DATASETS[name]
  generator, discriminator = build_models(config, tuple(shape))
  mesh = sharding.data_mesh()
  steps = GanSteps(generator, discriminator, config, real_fn=None, mesh=mesh)
  key = rng_lib.root_key(config.seed)
  abstract = abstract_state(steps, config, rng_lib.stream(key, 'init'), tuple(shape), mesh)
  ckpt = Checkpointer(workdir, keep=config.train.keep_checkpoints)
  try:
    state, _, step = ckpt.restore(abstract)
  finally:
    ckpt.close()
  context = Context(config, create_feature_net(config, weights), ref_path)
  fake, labels = generate(steps, state['ema'], rng_lib.stream(key, 'evaluate'), n)
  results = compute_metrics(context, names, fake, labels)
  results['eval_num_samples'] = n
  if distributed.is_main():
    write_results(workdir, step, results)
  return step, results


def write_results(workdir: str, step: int, results: dict[str, Any]) -> None:
  """Appends {'step': step, **results} to metrics.jsonl (and TensorBoard) and merges results,
  with 'eval_step', into summary.json."""
  writer = MetricWriter(workdir, append=True)
  writer.write(step, results)
  path = os.path.join(workdir, 'summary.json')
  summary = {}
  if os.path.exists(path):
    with open(path) as f:
      summary = json.load(f)
  writer.write_summary({**summary, **results, 'eval_step': int(step)})
  writer.close()
