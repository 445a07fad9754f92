"""One DCGAN training round (1 D step + 1 G step) in this project's JAX models vs PyTorch.

32x32 RGB DCGAN, features 64, batch 64, noise 100, non-saturating loss, Adam(2e-4, b1=0.5).
Both sides do the same work per round: D step = G forward (train-mode BatchNorm, no
gradient) + D forward/backward on [real; fake]; G step = G forward/backward through a
frozen D. PyTorch uses nn.ConvTranspose2d in G. Before timing, the PyTorch models are
loaded with the JAX weights and their outputs compared, so both sides are the same network.
When JAX runs on a GPU, torch runs on CUDA and both compute at JAX's default precision
(TF32 for float32 convs and matmuls; benchmarks/peer.py); the checks run in full float32.

  python benchmarks/dcgan_speed.py [--rounds 5] [--fused 4] [--threads 2 | --cores 1]
      [--methods col2im,subpixel,transpose]

JAX runs `--fused` rounds per jitted call in one `lax.scan`, as training does
(`train.rounds_per_call`), and PyTorch runs as many rounds per timed call. XLA compiles a
scan body differently from a lone jitted round (at `--fused 1`): before `common.kernels.conv` gave
the discriminator's convs explicit gradients, its kernel gradient inside the scan compiled
to a conv layout that made a round 20x slower, which a lone-round benchmark never showed.

Prints ms/round (wall median and min, process CPU median) for torch and for each JAX
upsample method, and the torch/jax ratios. On a machine shared with other jobs, torch's
multi-threaded (OpenMP) kernels slow down far more than XLA's; `--cores 1` pins both to
one core for a steadier comparison.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from torch import nn as tnn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import peer  # noqa: E402
from common.kernels import resample  # noqa: E402
from gan import losses, models  # noqa: E402

SIZE, CHANNELS, FEATURES, BATCH, NOISE = 32, 3, 64, 64, 100
LR, B1 = 2e-4, 0.5


# ---- JAX ----------------------------------------------------------------------------

def make_jax_round(upsample: str, fused: int = 1):
  """Returns (init(key) -> state, rounds(state, real, key) -> (state, metrics), gen, disc).

  `rounds` is jitted and runs `fused` rounds in one lax.scan.
  """
  gen = models.DCGANGenerator(SIZE, CHANNELS, FEATURES, upsample=upsample)
  disc = models.DCGANDiscriminator(SIZE, CHANNELS, FEATURES)
  loss = losses.get_loss('ns')
  tx = optax.adam(LR, b1=B1)

  def init(key):
    kg, kd = jax.random.split(key)
    g = gen.init(kg, jnp.zeros((2, NOISE)))
    d = disc.init(kd, jnp.zeros((2, SIZE, SIZE, CHANNELS)))
    return {'g': g, 'd': d, 'g_opt': tx.init(g['params']), 'd_opt': tx.init(d['params'])}

  def g_forward(g, z):
    fake, updates = gen.apply(g, z, train=True, mutable=['batch_stats'])
    return fake, {**g, **updates}

  def d_step(state, real, key):
    fake, g = g_forward(state['g'], models.sample_noise(key, BATCH, NOISE, 'gaussian'))
    fake = jax.lax.stop_gradient(fake)

    def loss_fn(params):
      logits = disc.apply({**state['d'], 'params': params}, jnp.concatenate([real, fake]), train=True)
      real_logits, fake_logits = jnp.split(logits, 2)
      return loss.d(real_logits, fake_logits)

    value, grads = jax.value_and_grad(loss_fn)(state['d']['params'])
    updates, d_opt = tx.update(grads, state['d_opt'], state['d']['params'])
    d = {**state['d'], 'params': optax.apply_updates(state['d']['params'], updates)}
    return {**state, 'g': g, 'd': d, 'd_opt': d_opt}, value

  def g_step(state, key):
    z = models.sample_noise(key, BATCH, NOISE, 'gaussian')

    def loss_fn(params):
      fake, g = g_forward({**state['g'], 'params': params}, z)
      return loss.g(disc.apply(state['d'], fake, train=False)), g

    (value, g), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['g']['params'])
    updates, g_opt = tx.update(grads, state['g_opt'], state['g']['params'])
    g = {**g, 'params': optax.apply_updates(state['g']['params'], updates)}
    return {**state, 'g': g, 'g_opt': g_opt}, value

  def train_round(state, real, key):
    kd, kg = jax.random.split(key)
    state, loss_d = d_step(state, real, kd)
    state, loss_g = g_step(state, kg)
    return state, (loss_d, loss_g)

  def train_rounds(state, real, key):
    return jax.lax.scan(lambda s, k: train_round(s, real, k), state, jax.random.split(key, fused))

  return init, jax.jit(train_rounds, donate_argnums=0), gen, disc


# ---- PyTorch ------------------------------------------------------------------------

class TorchGenerator(tnn.Module):
  """Same architecture as models.DCGANGenerator(32, 3, 64), NCHW."""

  def __init__(self):
    super().__init__()
    f = FEATURES
    self.fc = tnn.Linear(NOISE, 4 * 4 * 4 * f, bias=False)
    self.bn0 = tnn.BatchNorm2d(4 * f, momentum=0.1, eps=1e-5)
    self.body = tnn.Sequential(
      tnn.ConvTranspose2d(4 * f, 2 * f, 4, 2, 1, bias=False), tnn.BatchNorm2d(2 * f), tnn.ReLU(),
      tnn.ConvTranspose2d(2 * f, f, 4, 2, 1, bias=False), tnn.BatchNorm2d(f), tnn.ReLU(),
      tnn.ConvTranspose2d(f, CHANNELS, 4, 2, 1), tnn.Tanh())

  def forward(self, z):
    x = self.fc(z).view(z.shape[0], 4 * FEATURES, 4, 4)
    return self.body(torch.relu(self.bn0(x)))


class TorchDiscriminator(tnn.Module):
  """Same architecture as models.DCGANDiscriminator(32, 3, 64), NCHW."""

  def __init__(self):
    super().__init__()
    f = FEATURES
    self.body = tnn.Sequential(
      tnn.Conv2d(CHANNELS, f, 4, 2, 1), tnn.LeakyReLU(0.2),
      tnn.Conv2d(f, 2 * f, 4, 2, 1), tnn.LeakyReLU(0.2),
      tnn.Conv2d(2 * f, 4 * f, 4, 2, 1), tnn.LeakyReLU(0.2))
    self.fc = tnn.Linear(4 * 4 * 4 * f, 1)

  def forward(self, x):
    return self.fc(self.body(x).flatten(1))[:, 0]


def load_jax_weights(tg: TorchGenerator, td: TorchDiscriminator, g_params, d_params) -> None:
  """Copies JAX variables into the torch models (NHWC/HWIO -> NCHW/OIHW layouts)."""
  t = lambda a: torch.from_numpy(np.array(a))  # a writable copy
  c0 = 4 * FEATURES
  with torch.no_grad():
    # JAX reshapes the dense output as (h, w, c), torch views it as (c, h, w).
    k = np.asarray(g_params['Dense_0']['kernel']).reshape(NOISE, 4, 4, c0)
    tg.fc.weight.copy_(t(k.transpose(3, 1, 2, 0).reshape(c0 * 16, NOISE)))
    bns = [tg.bn0, tg.body[1], tg.body[4]]
    for i, bn in enumerate(bns):
      bn.weight.copy_(t(g_params[f'BatchNorm_{i}']['scale']))
      bn.bias.copy_(t(g_params[f'BatchNorm_{i}']['bias']))
    for i, layer in enumerate([tg.body[0], tg.body[3], tg.body[6]]):
      layer.weight.copy_(t(np.asarray(g_params[f'UpConv_{i}']['kernel']).transpose(2, 3, 0, 1)))
    tg.body[6].bias.copy_(t(g_params['UpConv_2']['bias']))
    for i, layer in enumerate([td.body[0], td.body[2], td.body[4]]):
      layer.weight.copy_(t(np.asarray(d_params[f'DownConv_{i}']['kernel']).transpose(3, 2, 0, 1)))
      layer.bias.copy_(t(d_params[f'DownConv_{i}']['bias']))
    k = np.asarray(d_params['Linear_0']['kernel']).reshape(4, 4, c0, 1)
    td.fc.weight.copy_(t(k.transpose(3, 2, 0, 1).reshape(1, -1)))
    td.fc.bias.copy_(t(d_params['Linear_0']['bias']))


def make_torch_round(tg, td, real, fused: int = 1, device: str = 'cpu'):
  opt_g = torch.optim.Adam(tg.parameters(), lr=LR, betas=(B1, 0.999))
  opt_d = torch.optim.Adam(td.parameters(), lr=LR, betas=(B1, 0.999))
  softplus = torch.nn.functional.softplus

  def train_round():
    with torch.no_grad():
      fake = tg(torch.randn(BATCH, NOISE, device=device))
    real_logits, fake_logits = td(torch.cat([real, fake])).chunk(2)
    loss_d = softplus(-real_logits).mean() + softplus(fake_logits).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    # Frozen D in the G step: skip its weight gradients (as the JAX G step does).
    td.requires_grad_(False)
    loss_g = softplus(-td(tg(torch.randn(BATCH, NOISE, device=device)))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    td.requires_grad_(True)
    return torch.stack([loss_d.detach(), loss_g.detach()])

  def train_rounds():
    # One host sync per call, as the JAX side blocks once per scan.
    return torch.stack([train_round() for _ in range(fused)]).tolist()

  return train_rounds


# ---- checks and timing ----------------------------------------------------------------

def check_upsampling(methods) -> None:
  """Each JAX upsample method vs torch conv_transpose2d(stride=2, padding=1)."""
  rng = np.random.default_rng(0)
  x = rng.standard_normal((4, 8, 8, 32)).astype(np.float32)
  k = (rng.standard_normal((4, 4, 32, 16)) * 0.1).astype(np.float32)
  ref = torch.nn.functional.conv_transpose2d(
    torch.from_numpy(x.transpose(0, 3, 1, 2)), torch.from_numpy(k.transpose(2, 3, 0, 1)),
    stride=2, padding=1).numpy().transpose(0, 2, 3, 1)
  for m in methods:
    err = np.abs(np.asarray(resample.upsample2x(jnp.asarray(x), jnp.asarray(k), m)) - ref).max()
    print(f'check upsample {m:9s} vs torch conv_transpose2d: max abs err {err:.1e}')
    assert err < 1e-4, m


def check_parity(gen, disc, state, tg, td) -> None:
  """Same weights, same inputs: G (train-mode BatchNorm) and D outputs agree with torch."""
  z = np.random.default_rng(1).standard_normal((BATCH, NOISE)).astype(np.float32)
  fake, _ = gen.apply(state['g'], jnp.asarray(z), train=True, mutable=['batch_stats'])
  logits = disc.apply(state['d'], fake)
  tg.train()
  with torch.no_grad():
    t_fake = tg(torch.from_numpy(z))
    t_logits = td(t_fake)
  g_err = np.abs(np.asarray(fake) - t_fake.numpy().transpose(0, 2, 3, 1)).max()
  d_err = np.abs(np.asarray(logits) - t_logits.numpy()).max()
  print(f'check parity with torch: G max abs err {g_err:.1e}, D max abs err {d_err:.1e}')
  assert g_err < 1e-3 and d_err < 1e-3


def time_interleaved(fns: dict, rounds: int, warmup: int) -> dict:
  """Per blocking fn: (median wall, min wall, median process CPU) seconds per call.

  Calls rotate between the fns so that a shared, fluctuating machine load hits every
  implementation alike; CPU time (all threads) is the steadier figure on a busy machine.
  """
  for fn in fns.values():
    for _ in range(warmup):
      fn()
  wall = {name: [] for name in fns}
  cpu = {name: [] for name in fns}
  names = list(fns)
  for r in range(rounds):
    for name in names[r % len(names):] + names[:r % len(names)]:
      start, start_cpu = time.perf_counter(), time.process_time()
      fns[name]()
      wall[name].append(time.perf_counter() - start)
      cpu[name].append(time.process_time() - start_cpu)
  return {name: (float(np.median(wall[name])), float(np.min(wall[name])), float(np.median(cpu[name])))
          for name in fns}


def make_jax_stepper(train_rounds, state, real):
  box = {'state': state, 'step': 0}

  def step():
    key = jax.random.fold_in(jax.random.key(1), box['step'])
    box['state'], out = train_rounds(box['state'], real, key)
    box['step'] += 1
    jax.block_until_ready(out)

  return step


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=5,
                      help='timed calls (of --fused rounds each) per implementation')
  parser.add_argument('--fused', type=int, default=4,
                      help='rounds per timed call (JAX: one lax.scan, as in training)')
  parser.add_argument('--warmup', type=int, default=2, help='untimed calls first (JAX compiles)')
  parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
  parser.add_argument('--cores', type=int, default=0,
                      help='pin the process to this many cores and give torch as many threads '
                           '(XLA:CPU sizes its thread pool from the affinity mask); a fairer '
                           'comparison on a machine shared with other jobs')
  parser.add_argument('--methods', default='col2im,subpixel,transpose',
                      help='JAX upsample methods to time, comma-separated')
  args = parser.parse_args()
  if min(args.rounds, args.fused, args.threads) < 1 or args.warmup < 0 or args.cores < 0:
    parser.error('--rounds, --fused and --threads must be positive, --warmup and --cores '
                 'non-negative')
  methods = [m for m in args.methods.split(',') if m]
  if args.cores:  # before the first JAX computation creates the XLA:CPU client
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
    args.threads = args.cores
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  device = peer.torch_device(jax, torch)
  peer.match_precision(torch, device, full=False)  # JAX's default precision on both sides
  print(f'{peer.describe(jax, torch, device)}; torch CPU ops use {torch.get_num_threads()} '
        f'threads; XLA:CPU uses one thread per usable core '
        f'({len(os.sched_getaffinity(0))} of {os.cpu_count()} here)')
  with jax.default_matmul_precision('highest'):  # checked against torch's float32 CPU ops
    check_upsampling(methods)

  real_np = np.random.default_rng(2).uniform(-1, 1, (BATCH, SIZE, SIZE, CHANNELS)).astype(np.float32)
  real = jnp.asarray(real_np)
  fns = {}
  for method in methods:
    init, train_rounds, gen, disc = make_jax_round(method, args.fused)
    state = init(jax.random.key(0))
    if not fns:
      tg, td = TorchGenerator(), TorchDiscriminator()
      load_jax_weights(tg, td, state['g']['params'], state['d']['params'])
      with jax.default_matmul_precision('highest'):
        check_parity(gen, disc, state, tg, td)
      tg.to(device)
      td.to(device)
      t_real = torch.from_numpy(real_np.transpose(0, 3, 1, 2).copy()).to(device)
      fns['torch'] = make_torch_round(tg, td, t_real, args.fused, device)
    fns[method] = make_jax_stepper(train_rounds, state, real)
  sec = {name: tuple(t / args.fused for t in times)
         for name, times in time_interleaved(fns, args.rounds, args.warmup).items()}
  print(f'ms per round over {args.rounds} calls of {args.fused} rounds (batch {BATCH}, '
        f'{SIZE}x{SIZE}x{CHANNELS}, features {FEATURES}); ratios are torch/jax:')
  print(f'{"":26s}{"wall median":>12s}{"wall min":>10s}{"cpu median":>12s}'
        f'{"ratio (median)":>16s}{"ratio (min)":>13s}{"ratio (cpu)":>13s}')
  ref = sec['torch']
  for name in ['torch'] + methods:
    label = 'torch ConvTranspose2d' if name == 'torch' else f'jax upsample={name}'
    med, low, cpu = sec[name]
    ratios = '' if name == 'torch' else (f'{ref[0] / med:16.2f}{ref[1] / low:13.2f}{ref[2] / cpu:13.2f}')
    print(f'{label:26s}{1e3 * med:12.1f}{1e3 * low:10.1f}{1e3 * cpu:12.1f}{ratios}')


if __name__ == '__main__':
  main()
