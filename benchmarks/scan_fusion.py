"""Rounds per second of toy-GAN training: one jit call per round vs rounds fused by lax.scan.

  python benchmarks/scan_fusion.py [--rounds 2000] [--fused 100] [--config gan/configs/toy2d.py:ring8]
      [--override model.hidden=16 --override model.depth=1 ...]

By default it measures two sizes: the shipped ring8 config (compute-bound rounds) and a
GAN Lab-sized model (one hidden layer of 16, batch 64), where per-call overhead dominates.

Both loops run the same compiled round (`GanSteps.round`) on the same state;
only the number of rounds per jit call differs. Prints both rates and the ratio.
"""
import argparse
import time

import jax

from common import rng
from common.config import load_config
from gan import models
from gan.data import build_data
from gan.steps import GanSteps


def rate(steps: GanSteps, state, rounds: int, per_call: int) -> tuple[float, object]:
  state, _ = steps.train_chunk(state, None, per_call)  # compile
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(rounds // per_call):
    state, metrics = steps.train_chunk(state, None, per_call)
    # the training loop reads each chunk's metrics on the host; do the same here
    jax.device_get(metrics)
  jax.block_until_ready(state)
  return (rounds // per_call) * per_call / (time.perf_counter() - t), state


def main():
  p = argparse.ArgumentParser()
  p.add_argument('--config', default='gan/configs/toy2d.py:ring8')
  p.add_argument('--rounds', type=int, default=2000)
  p.add_argument('--fused', type=int, default=100)
  p.add_argument('--override', action='append', default=None,
                 help='config override key=value (repeatable); default: both sizes')
  a = p.parse_args()
  if a.fused < 1 or a.rounds < a.fused:
    p.error(f'--rounds ({a.rounds}) must be at least --fused ({a.fused}), which must be >= 1: '
            'the fused loop times whole calls of --fused rounds')
  sizes = [a.override] if a.override else [[], ['model.hidden=16', 'model.depth=1', 'data.batch_size=64']]
  for overrides in sizes:
    measure(a, overrides)


def measure(a, overrides):
  config = load_config(a.config, overrides)
  gdata = build_data(config)
  g, d = models.create_models(config.model, gdata.shape)
  steps = GanSteps(g, d, config, gdata.real_fn)
  state = steps.init(rng.root_key(0), gdata.shape)
  one, state = rate(steps, state, a.rounds, 1)
  fused, state = rate(steps, state, a.rounds, a.fused)
  print(f'{a.config} {" ".join(overrides)}: batch {config.data.batch_size}, MLP {config.model.depth}x'
        f'{config.model.hidden}, n_d={config.train.n_d}, n_g={config.train.n_g}, {jax.devices()[0].platform}')
  print(f'one jit call per round : {one:9.1f} rounds/s')
  print(f'{a.fused:3d} rounds per call   : {fused:9.1f} rounds/s')
  print(f'ratio fused / per-round: {fused / one:9.2f}x')


if __name__ == '__main__':
  main()
