"""How many training rounds a second this machine can run at most, for a 2D toy config.

  python benchmarks/lab_ceiling.py [--config=gan/configs/toy2d.py:ring] [--config.model.depth=2 ...]

Counts the floating-point operations of one training round with XLA's own cost analysis (a
round without R1 and one with it, averaged as lazy R1 runs them), times this machine's float32
matrix multiplication at its best (the kind of work a round is made of), and prints the ceiling
those two give (the machine's GFLOP/s over the round's FLOPs) next to the rounds per second the
lab's training loop reaches without drawing frames, and the lab's target (1,000 rounds/s).
"""
import argparse
import os
import sys
import time

import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks import peer  # noqa: E402
from common.config import load_config  # noqa: E402
from gan.lab.session import Session, lab_config  # noqa: E402
from gan.steps import hyperparams  # noqa: E402

TARGET = 1000.0


def round_flops(config) -> float:
  """XLA's FLOP count of one round of `config` (R1 as configured in every round it runs)."""
  base, _ = lab_config(config)
  session = Session(base, os.devnull)
  steps, state = session.steps, session.state
  draws = steps.round_draws(state['rng'], state['step'], True)
  return peer.xla_flops(jax.jit(steps.round).lower(state, None, draws, hyperparams(base)).compile())


def training_rounds_per_sec(config, rounds: int = 500) -> float:
  """Rounds per second of the lab's training loop alone (no frames), after compiling."""
  base, _ = lab_config(config)
  session = Session(base, os.devnull)
  session.warm_up()
  session.train(50)
  t0 = time.perf_counter()
  session.train(rounds)
  return rounds / (time.perf_counter() - t0)


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--config', default='gan/configs/toy2d.py:ring')
  args, overrides = ap.parse_known_args()
  config = load_config(args.config, [o.removeprefix('--config.') for o in overrides])
  every = max(int(config.loss.r1_every), 1) if config.loss.r1_gamma > 0 else 1
  plain = config.copy_and_resolve_references()
  plain.loss.r1_gamma = 0.0
  flops = round_flops(plain)
  if config.loss.r1_gamma > 0:
    with_r1 = config.copy_and_resolve_references()
    with_r1.loss.r1_every = 1
    flops = (flops * (every - 1) + round_flops(with_r1)) / every
  peak = peer.jax_matmul_gflops(jax)
  reached = training_rounds_per_sec(config)
  m, t = config.model, config.train
  print(f'{args.config} {" ".join(overrides)}: MLPs {m.depth} x {m.hidden}, batch '
        f'{config.data.batch_size}, {t.n_d} D + {t.n_g} G steps a round; {os.cpu_count()} cores')
  print(f'one round: {flops / 1e6:.1f} MFLOP (XLA cost analysis; lazy R1 averaged)')
  print(f'this machine: {peak:.1f} GFLOP/s at its best (float32 matmul 1024^2)')
  ceiling = peak * 1e9 / flops
  print(f'ceiling: {ceiling:.0f} rounds/s (x{ceiling / TARGET:.2f} of {TARGET:.0f}), with no '
        'time left for frames')
  print(f'training loop alone: {reached:.0f} rounds/s = {reached * flops / 1e9:.1f} GFLOP/s '
        f'({100 * reached * flops / 1e9 / peak:.0f}% of the matmul rate)')


if __name__ == '__main__':
  main()
