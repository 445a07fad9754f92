"""VGG16 and InceptionV3 transfer learning: this project's Flax/optax code vs PyTorch.

For each arch (`--archs`, default vgg16,inception_v3), printed with its ratio:

1. inference images/s (batch `--batch_size` at the arch's ImageNet size: 224 px for VGG16,
   299 px for InceptionV3), uint8 in, logits out;
2. fine-tuning steps of the last block and the head (mode partial, trainable_stages=1: VGG's
   block5 + classifier, InceptionV3's mixed10 + fc; BatchNorm in inference mode, as the
   fine_tune/partial default `freeze.bn_train=False` says; SGD with momentum), the project's
   jitted steps (`transfer.steps.phase_fns`) vs `loss.backward(); opt.step()` with the frozen
   layers' `requires_grad=False`, in seconds per step: one step per call, and
   `--steps_per_call` steps per call (`lax.scan`; torch runs as many steps per timed call);
   With `--trainable=all`, every layer trains instead (BatchNorm in training mode), as a run
   from scratch or a full fine-tuning does: at small inputs (`--image_size=32`, the digits
   backbones ablation's size) this is the step the offline ablation spends its time in;
3. with `--rss`, the peak RSS of fine-tuning VGG16 at 224 px, batch 32, in a fresh process
   (target < 8 GB).

Under each speed figure, the work it did (XLA's FLOP count of the JAX program; torch runs the
same network) over each side's time in GFLOP/s, to hold against the best rate of a float32
2048^2 matmul on each side, timed first: how close to the machine's rate both sides run.

Both sides run torchvision's network with its own classifier (common/torch_reference/, random
weights converted by `transfer.convert.from_torchvision`, outputs checked before timing) on the
same threads; dropout is active in both classifiers during the steps. Timed calls alternate
between the sides after `--warmup` untimed ones; each figure is the median of `--iters` calls.
On a machine shared with other work, load hits both sides alike but the figures still move.

  python benchmarks/backbone_speed.py [--archs=vgg16,inception_v3] [--batch_size=8]
      [--train_batch_size=8] [--steps_per_call=10] [--trainable=last|all] [--iters=5]
      [--warmup=1] [--threads=N] [--rss]
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from benchmarks import resnet_speed as rs  # noqa: E402  (shared timing helpers)

MATMUL_N = 2048  # the matmul whose best rate puts the networks' GFLOP/s in proportion
SIZES = {'vgg16': 224, 'vgg19': 224, 'vgg16_bn': 224, 'vgg19_bn': 224, 'inception_v3': 299}


def _args():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--archs', default='vgg16,inception_v3')
  p.add_argument('--image_size', type=int, default=0, help='0: the arch\'s ImageNet size')
  p.add_argument('--batch_size', type=int, default=8, help='inference batch')
  p.add_argument('--train_batch_size', type=int, default=8, help='fine-tuning step batch')
  p.add_argument('--steps_per_call', type=int, default=10)
  p.add_argument('--trainable', choices=('last', 'all'), default='last',
                 help='fine-tune the last block + head, or train every layer')
  p.add_argument('--iters', type=int, default=5)
  p.add_argument('--warmup', type=int, default=1)
  p.add_argument('--num_classes', type=int, default=10)
  p.add_argument('--threads', type=int, default=os.cpu_count())
  p.add_argument('--rss', action='store_true', help='also measure VGG16 fine-tuning peak RSS')
  p.add_argument('--rss_child', default='', help=argparse.SUPPRESS)
  return p.parse_args()


def _torch_net(arch: str, num_classes: int):
  from common import torch_reference
  if arch == 'inception_v3':
    net = torch_reference.TorchInceptionV3(num_classes, aux_logits=False)
    return torch_reference.inception.randomize(net, seed=0)
  return torch_reference.torch_vgg(arch, num_classes, seed=0)


def _spec(model, arch: str, size: int, trainable: str = 'last'):
  from transfer import freeze, models, steps
  mode = 'scratch' if trainable == 'all' else 'partial'
  rules, mults = freeze.mode_rules(mode, trainable_stages=1, backbone_lr_mult=1.0,
                                   parts=models.part_rules(arch))
  return steps.step_spec(model, 'torchvision', size, rules, mults, optimizer='sgd',
                         momentum=0.9, bn_train=trainable == 'all')


def _torch_trainable(net, arch: str, trainable: str = 'last'):
  """Freezes all but the last block and the classifier, BatchNorm layers in eval mode; or with
  trainable='all' trains everything, BatchNorm in training mode."""
  import torch
  from transfer import vgg
  if trainable == 'all':
    net.train()
    return torch.optim.SGD(net.parameters(), lr=1e-2, momentum=0.9)
  if arch == 'inception_v3':
    prefixes = ('Mixed_7c.', 'fc.')
  else:  # VGG's block5: its last convs (with BN and ReLU) and the pool closing `features`
    per_conv = 3 if vgg.ARCHS[arch].batch_norm else 2
    first = len(net.features) - 1 - vgg.ARCHS[arch].convs[-1] * per_conv
    prefixes = tuple(f'features.{i}.' for i in range(first, len(net.features))) + ('classifier.',)
  params = []
  for name, p in net.named_parameters():
    p.requires_grad_(name.startswith(prefixes))
    if p.requires_grad:
      params.append(p)
  net.train()
  for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
      m.eval()
  return torch.optim.SGD(params, lr=1e-2, momentum=0.9)


def bench_arch(arch: str, args, jax, np, torch, peer, device) -> None:
  from transfer import convert, create_model, features, steps
  s = args.image_size or SIZES[arch]
  net = _torch_net(arch, args.num_classes)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, f'{arch}.pth')
    torch.save(net.state_dict(), path)
    variables = convert.from_torchvision(path, arch)
  net.to(device)
  model = create_model(arch, args.num_classes)
  rng = np.random.default_rng(0)
  b = args.batch_size
  images = rng.integers(0, 256, (b, s, s, 3), np.uint8)
  forward = features.forward_fn(model, 'torchvision')
  t0 = time.perf_counter()
  logits = np.asarray(jax.block_until_ready(forward(variables, images))[0])
  compile_s = time.perf_counter() - t0
  net.eval()
  with torch.no_grad():
    ref = net(rs._torch_input(images, torch, device), stages=False)[0].cpu().numpy()
  rel = float(np.max(np.abs(logits - ref)) / np.max(np.abs(ref)))

  def torch_infer():
    with torch.no_grad():
      net(rs._torch_input(images, torch, device), stages=False)
    peer.sync(torch, device)

  calls = {}
  tj, tt = rs._time_pair(lambda: jax.block_until_ready(forward(variables, images)),
                         torch_infer, args.iters, args.warmup, calls)
  print(f'\n{arch} 1. inference, batch {b} at {s} px (logits max rel diff {rel:.1e}; jax '
        f'compile {compile_s:.1f} s)')
  print(f'   flax {b / tj:8.2f} images/s   torch {b / tt:8.2f} images/s   '
        f'flax/torch {tt / tj:.2f}x')
  _print_spread(calls, 1, 's a batch')
  _print_rates(peer.xla_flops(forward.lower(variables, images).compile()), 'a batch', tj, tt)

  fns = steps.phase_fns(_spec(model, arch, s, args.trainable))
  state = rs._jax_state(fns, variables)
  opt = _torch_trainable(net, arch, args.trainable)
  tb = args.train_batch_size
  what = ('training every layer, BatchNorm in training mode' if args.trainable == 'all' else
          'fine-tuning the last block + head, BatchNorm frozen')
  print(f'{arch} 2. {what}, batch {tb} at {s} px')
  one = jax.device_put(rs._random_batches(rng, 1, tb, s, args.num_classes))
  step_flops = peer.xla_flops(fns.chunk.lower(state, one, rs._hparams(1e-2, 100)).compile())
  for k in sorted({1, args.steps_per_call}):
    run_args = argparse.Namespace(**{**vars(args), 'image_size': s})
    state, (tj, tt, compile_s) = rs._time_steps(fns, state, net, opt, k, tb, run_args, rng,
                                                torch, device, peer, calls)
    print(f'   {k} step(s) per call, jax compile {compile_s:.1f} s: flax {tj:7.3f} s/step   '
          f'torch {tt:7.3f} s/step   flax/torch speed {tt / tj:.2f}x')
    _print_spread(calls, k, 's/step')
    _print_rates(step_flops, 'a step', tj, tt)


def _print_spread(calls: dict, k: int, unit: str) -> None:
  """The fastest and slowest timed call of each side (per step: over `k`), the spread behind
  each median: where the ranges overlap, the ratio is within this machine's noise."""
  j, t = ([x / k for x in calls[side]] for side in ('jax', 'torch'))
  print(f'     {len(j)} timed calls, {unit}: flax {min(j):.3f}-{max(j):.3f}, '
        f'torch {min(t):.3f}-{max(t):.3f}')


def _print_rates(flops: float, per: str, tj: float, tt: float) -> None:
  """Both sides' rates on the same work: XLA's FLOP count of the JAX program over each side's
  seconds (the networks compute the same thing), to hold against the matmul rates above."""
  print(f'     {flops / 1e9:.1f} GFLOP {per} (XLA count): flax {flops / tj / 1e9:.0f} GFLOP/s, '
        f'torch {flops / tt / 1e9:.0f} GFLOP/s')


def rss_child(arch: str, args) -> None:
  """VGG16 fine-tuning steps at 224 px, batch 32; prints the peak RSS in bytes."""
  import jax
  import numpy as np
  from transfer import create_model, steps, weights
  model = create_model(arch, args.num_classes)
  fns = steps.phase_fns(_spec(model, arch, 224))
  variables = {'batch_stats': {}, **weights._init_fn(model, 224)(jax.random.key(0))}
  state = rs._jax_state(fns, variables)  # VGG16 has no BatchNorm statistics
  rng = np.random.default_rng(0)
  for _ in range(2):  # the first call compiles
    batch = rs._random_batches(rng, args.steps_per_call, 32, 224, args.num_classes)
    state, metrics = fns.chunk(state, batch, rs._hparams(1e-3, 100))
    jax.block_until_ready(metrics)
  print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def main() -> None:
  args = _args()
  rs._set_threads(args.threads)
  if args.rss_child:
    rss_child(args.rss_child, args)
    return
  import jax
  import numpy as np
  import torch

  from benchmarks import peer
  torch.set_num_threads(args.threads)
  device = peer.torch_device(jax, torch)
  peer.match_precision(torch, device, full=False)
  print(f'{peer.describe(jax, torch, device)}; {args.threads} CPU threads each, '
        f'{os.cpu_count()} cores')
  print(f'float32 matmul at its best ({MATMUL_N}^2): jax '
        f'{peer.jax_matmul_gflops(jax, MATMUL_N, 2.0):.0f} GFLOP/s, torch '
        f'{peer.torch_matmul_gflops(torch, device, MATMUL_N, 2.0):.0f} GFLOP/s')
  for arch in args.archs.split(','):
    bench_arch(arch, args, jax, np, torch, peer, device)
  if args.rss:
    cmd = [sys.executable, os.path.abspath(__file__), '--rss_child=vgg16',
           f'--steps_per_call={args.steps_per_call}', f'--threads={args.threads}']
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if out.returncode != 0:
      print(f'\npeak RSS: child failed ({out.returncode}): {out.stderr.strip()[-500:]}')
      return
    rss = int(out.stdout.strip().splitlines()[-1])
    print(f'\nvgg16 3. peak RSS fine-tuning at 224 px, batch 32, {args.steps_per_call} steps per '
          f'call ({time.perf_counter() - t0:.0f} s): {rss / 2**30:.2f} GiB (target < 8 GB)')


if __name__ == '__main__':
  main()
