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
from common.errors import UserError
from common.workdir import lock_workdir
from common.writers import MetricWriter
from gan import images
from gan.evaluation import (METRICS, Context, check_metrics, compute_metrics,
                            create_feature_net, generate, parse_metrics, uses_digits_net)
from gan.state import load_run_config, restore_run


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
                     reference_stats_path: str | None = None, protocol: str = ''
                     ) -> tuple[int, dict[str, Any]]:
  """Metrics of the EMA generator in `workdir`'s latest checkpoint, appended to metrics.jsonl
  (with the checkpoint's step and, when named, the `protocol`) and merged into summary.json.
  Returns (step, results)."""
  config = load_run_config(workdir)
  if distributed.is_main():
    lock_workdir(workdir)  # not while a run (or another evaluation) writes it
  names = parse_metrics(metrics) if metrics else default_metrics(config)
  if not names:
    raise UserError('no metric named; pass --metrics=NAME[,NAME...] from: ' + ', '.join(METRICS))
  n = int(num_samples if num_samples is not None else config.eval.num_samples)
  weights = inception_weights or config.eval.get('inception_weights', '')
  ref_path = reference_stats_path or config.eval.get('reference_stats', '')
  if config.data.name not in images.IMAGE_DATASETS:
    raise UserError(f'launch.evaluate measures image GANs; {workdir} trained on '
                    f'{config.data.name!r} points, whose metrics are already in its metrics.jsonl')
  check_metrics(config, names, n, weights, ref_path)
  run = restore_run(workdir)
  steps, state, step, key = run.steps, run.state, run.step, run.key
  context = Context(config, create_feature_net(config, weights), ref_path)
  fake, labels = generate(steps, state['ema'], rng_lib.stream(key, 'evaluate'), n)
  results = compute_metrics(context, names, fake, labels)
  results['eval_num_samples'] = n
  if protocol:
    results['eval_protocol'] = protocol
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
