"""One SNGAN-CIFAR-10 training round (5 D steps + 1 G step, batch 64) in this project vs PyTorch.

The JAX side is the training code itself: `GanSteps.train_chunk` of gan/configs/sngan_cifar10.py
(ResNet G 256 / D 128 channels, spectral norm in D with one power iteration per D step, hinge
loss, Adam(2e-4, 0, 0.9), linear decay, EMA of G). The PyTorch side is the same network in
torch.nn (nn.Upsample + Conv2d blocks, `torch.nn.utils.parametrizations.spectral_norm`) doing the
same work per round: each D step draws noise, runs G in train mode without gradient and D
forward/backward on [real; fake]; the G step runs G forward/backward through D frozen in eval
mode; then the EMA update. Before timing, the torch models are loaded with the JAX weights and
their outputs compared (spectral norm off for the check, as the two keep their power-iteration
vectors differently).

  python benchmarks/sngan_speed.py [--rounds 3] [--fused 2] [--threads 2 | --cores 1]

Prints ms per round (wall median and min, process CPU median), images/s (real images D sees per
second: 5 x 64 per round) and the torch/jax ratios; on a GPU, torch runs on CUDA (peer.py).
"""
from __future__ import annotations

import argparse
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import torch
from torch import nn as tnn

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import peer  # noqa: E402
from benchmarks.dcgan_speed import time_interleaved  # noqa: E402
from common.config import load_config  # noqa: E402
from gan.state import build_models  # noqa: E402
from gan.steps import GanSteps  # noqa: E402

SHAPE, BATCH, NOISE, N_D = (32, 32, 3), 64, 128, 5


# ---- PyTorch ------------------------------------------------------------------------------------

def _sn(layer: tnn.Module, on: bool) -> tnn.Module:
  return tnn.utils.parametrizations.spectral_norm(layer) if on else layer


class GBlock(tnn.Module):
  def __init__(self, cin: int, cout: int):
    super().__init__()
    self.b1, self.b2 = tnn.BatchNorm2d(cin), tnn.BatchNorm2d(cout)
    self.c1, self.c2 = tnn.Conv2d(cin, cout, 3, 1, 1), tnn.Conv2d(cout, cout, 3, 1, 1)
    self.sc = tnn.Conv2d(cin, cout, 1)
    self.up = tnn.Upsample(scale_factor=2, mode='nearest')

  def forward(self, x):
    h = self.c1(self.up(torch.relu(self.b1(x))))
    h = self.c2(torch.relu(self.b2(h)))
    return h + self.sc(self.up(x))


class DBlock(tnn.Module):
  def __init__(self, cin: int, cout: int, down: bool, first: bool, sn: bool):
    super().__init__()
    self.down, self.first = down, first
    self.c1 = _sn(tnn.Conv2d(cin, cout if first else cin, 3, 1, 1), sn)
    self.c2 = _sn(tnn.Conv2d(cout if first else cin, cout, 3, 1, 1), sn)
    self.sc = _sn(tnn.Conv2d(cin, cout, 1), sn) if (first or down or cin != cout) else None

  def forward(self, x):
    pool = (lambda t: tnn.functional.avg_pool2d(t, 2)) if self.down else (lambda t: t)
    h = self.c1(x if self.first else torch.relu(x))
    h = pool(self.c2(torch.relu(h)))
    if self.first:
      return h + self.sc(tnn.functional.avg_pool2d(x, 2))
    return h + (pool(self.sc(x)) if self.sc is not None else x)


class TorchGenerator(tnn.Module):
  """gan.resnet.ResNetGenerator(32, 3, 64), NCHW."""

  def __init__(self, width: int = 256):
    super().__init__()
    self.width = width
    self.fc = tnn.Linear(NOISE, 4 * 4 * width)
    self.blocks = tnn.Sequential(*[GBlock(width, width) for _ in range(3)])
    self.bn = tnn.BatchNorm2d(width)
    self.out = tnn.Conv2d(width, 3, 3, 1, 1)

  def forward(self, z):
    x = self.blocks(self.fc(z).view(z.shape[0], self.width, 4, 4))
    return torch.tanh(self.out(torch.relu(self.bn(x))))


class TorchDiscriminator(tnn.Module):
  """gan.resnet.ResNetDiscriminator(32, 3, 64), NCHW."""

  def __init__(self, width: int = 128, sn: bool = True):
    super().__init__()
    self.blocks = tnn.Sequential(
        DBlock(3, width, True, True, sn), DBlock(width, width, True, False, sn),
        DBlock(width, width, False, False, sn), DBlock(width, width, False, False, sn))
    self.fc = _sn(tnn.Linear(width, 1), sn)

  def forward(self, x):
    return self.fc(torch.relu(self.blocks(x)).sum(dim=(2, 3)))[:, 0]


def load_jax_weights(tg: TorchGenerator, td: TorchDiscriminator, g: dict, d: dict) -> None:
  """JAX variables (NHWC/HWIO) into the torch models (NCHW/OIHW); D without spectral norm."""
  t = lambda a: torch.from_numpy(np.array(a))
  conv = lambda layer, p: (layer.weight.copy_(t(np.asarray(p['kernel']).transpose(3, 2, 0, 1))),
                           layer.bias.copy_(t(p['bias'])))
  bn = lambda layer, p: (layer.weight.copy_(t(p['BatchNorm_0']['scale'])),
                         layer.bias.copy_(t(p['BatchNorm_0']['bias'])))
  w = tg.width
  with torch.no_grad():
    k = np.asarray(g['Linear_0']['kernel']).reshape(NOISE, 4, 4, w)  # JAX reshapes as (h, w, c)
    tg.fc.weight.copy_(t(k.transpose(3, 1, 2, 0).reshape(-1, NOISE)))
    tg.fc.bias.copy_(t(np.asarray(g['Linear_0']['bias']).reshape(4, 4, w).transpose(2, 0, 1)
                       .reshape(-1)))
    for i, block in enumerate(tg.blocks):
      p = g[f'GBlock_{i}']
      bn(block.b1, p['Norm_0'])
      bn(block.b2, p['Norm_1'])
      conv(block.c1, p['Conv_0'])
      conv(block.c2, p['Conv_1'])
      conv(block.sc, p['shortcut'])
    bn(tg.bn, g['Norm_0'])
    conv(tg.out, g['Conv_0'])
    for i, block in enumerate(td.blocks):
      p = d[f'DBlock_{i}']
      conv(block.c1, p['Conv_0'])
      conv(block.c2, p['Conv_1'])
      if block.sc is not None:
        conv(block.sc, p['shortcut'])
    td.fc.weight.copy_(t(np.asarray(d['Linear_0']['kernel']).T))
    td.fc.bias.copy_(t(d['Linear_0']['bias']))


def make_torch_round(tg, td, reals, fused: int, device: str):
  """`fused` rounds per call on the real batches [N_D, B, C, H, W], one host sync per call."""
  opt_g = torch.optim.Adam(tg.parameters(), lr=2e-4, betas=(0.0, 0.9))
  opt_d = torch.optim.Adam(td.parameters(), lr=2e-4, betas=(0.0, 0.9))
  ema = [p.detach().clone() for p in tg.parameters()]

  def train_round():
    td.train()
    for i in range(N_D):
      with torch.no_grad():
        fake = tg(torch.randn(BATCH, NOISE, device=device))
      real_logits, fake_logits = td(torch.cat([reals[i], fake])).chunk(2)
      loss_d = torch.relu(1 - real_logits).mean() + torch.relu(1 + fake_logits).mean()
      opt_d.zero_grad(set_to_none=True)
      loss_d.backward()
      opt_d.step()
    td.eval()  # G step: D frozen, no power iteration (as the JAX G step)
    td.requires_grad_(False)
    loss_g = -td(tg(torch.randn(BATCH, NOISE, device=device))).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    td.requires_grad_(True)
    with torch.no_grad():
      torch._foreach_lerp_(ema, [p.detach() for p in tg.parameters()], 1 - 0.9999)
    return torch.stack([loss_d.detach(), loss_g.detach()])

  return lambda: torch.stack([train_round() for _ in range(fused)]).tolist()


# ---- JAX, checks, timing ----------------------------------------------------------------------

def make_jax(fused: int):
  config = load_config('gan/configs/sngan_cifar10.py', [f'train.rounds_per_call={fused}',
                                                         'model.dtype=float32'])
  gen, disc = build_models(config, SHAPE)
  steps = GanSteps(gen, disc, config, real_fn=lambda _, b: b['image'])
  state = jax.jit(steps.init, static_argnums=1)(jax.random.key(0), SHAPE)
  return config, steps, state


def check_parity(config, steps, state, device) -> tuple[TorchGenerator, TorchDiscriminator]:
  """torch G and D (spectral norm off) with the JAX weights give the JAX outputs."""
  plain_cfg = config.copy_and_resolve_references()
  plain_cfg.model.spectral_norm = False
  gen, disc = build_models(plain_cfg, SHAPE)
  d_vars = disc.init(jax.random.key(1, impl='unsafe_rbg'), jnp.zeros((2, *SHAPE)))
  tg, td = TorchGenerator(), TorchDiscriminator(sn=False)
  load_jax_weights(tg, td, state['g']['params'], d_vars['params'])
  z = np.random.default_rng(1).standard_normal((BATCH, NOISE)).astype(np.float32)
  with jax.default_matmul_precision('highest'):
    fake, _ = gen.apply(state['g'], jnp.asarray(z), train=True, mutable=['batch_stats'])
    logits = disc.apply(d_vars, fake)
  with torch.no_grad():
    t_fake = tg.train()(torch.from_numpy(z))
    t_logits = td(t_fake)
  g_err = np.abs(np.asarray(fake) - t_fake.numpy().transpose(0, 2, 3, 1)).max()
  d_err = np.abs(np.asarray(logits) - t_logits.numpy()).max() / np.abs(t_logits.numpy()).max()
  print(f'check parity with torch: G max abs err {g_err:.1e}, D max rel err {d_err:.1e}')
  assert g_err < 1e-3 and d_err < 1e-3
  return tg.to(device), TorchDiscriminator(sn=True).to(device)  # timed with spectral norm


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--rounds', type=int, default=3, help='timed calls per implementation')
  parser.add_argument('--fused', type=int, default=2, help='rounds per timed call')
  parser.add_argument('--warmup', type=int, default=1, help='untimed calls first (JAX compiles)')
  parser.add_argument('--threads', type=int, default=2, help='torch intra-op threads')
  parser.add_argument('--cores', type=int, default=0,
                      help='pin the process to this many cores, torch to as many threads')
  args = parser.parse_args()
  if args.cores:  # before the first JAX computation creates the XLA:CPU client
    os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:args.cores])
    args.threads = args.cores
  torch.set_num_threads(args.threads)
  torch.manual_seed(0)
  device = peer.torch_device(jax, torch)
  peer.match_precision(torch, device, full=False)
  print(f'{peer.describe(jax, torch, device)}; torch CPU ops use {torch.get_num_threads()} '
        f'threads; XLA:CPU uses {len(os.sched_getaffinity(0))} of {os.cpu_count()} cores')
  config, steps, state = make_jax(args.fused)
  tg, td = check_parity(config, steps, state, device)
  reals = np.random.default_rng(2).uniform(-1, 1, (args.fused, N_D, BATCH, *SHAPE))
  batches = {'image': jnp.asarray(reals, jnp.float32)}
  box = {'state': state}

  def jax_call():
    box['state'], metrics = steps.train_chunk(box['state'], batches, args.fused)
    return metrics

  t_reals = torch.from_numpy(reals[0].transpose(0, 1, 4, 2, 3).astype(np.float32)).to(device)
  torch_round = make_torch_round(tg, td, t_reals, args.fused, device)

  def torch_call():
    out = torch_round()
    peer.sync(torch, device)
    return out

  sec = {name: tuple(t / args.fused for t in times) for name, times in
         time_interleaved({'torch': torch_call, 'jax': jax_call}, args.rounds,
                          args.warmup).items()}
  print(f'ms per round ({N_D} D steps + 1 G step, batch {BATCH}) over {args.rounds} calls of '
        f'{args.fused} rounds:')
  for name in ('torch', 'jax'):
    med, low, cpu = sec[name]
    print(f'  {name:6s} wall median {1e3 * med:9.1f}  min {1e3 * low:9.1f}  cpu {1e3 * cpu:9.1f}'
          f'  {N_D * BATCH / med:7.1f} real images/s')
  (tm, tl, tc), (jm, jl, jc) = sec['torch'], sec['jax']
  print(f'ratio torch/jax: wall median {tm / jm:.2f}, wall min {tl / jl:.2f}, cpu {tc / jc:.2f}')


if __name__ == '__main__':
  main()
