"""ResNet transfer learning: this project's Flax/optax code vs PyTorch, side by side.

Four measurements, each printed with its ratio:

1. inference images/s of ResNet-50 (batch 16 at 224 px by default), uint8 in, logits out;
2. fine-tuning steps (SGD with momentum, backbone at 0.1x the head's learning rate,
   BatchNorm in train mode), the project's jitted steps (`transfer.steps.phase_fns`) vs
   `loss.backward(); opt.step()`, in seconds per step: once with one step per call, once with
   `--steps_per_call` steps per call (default: the trainer's `train.steps_per_call`, steps
   fused by `lax.scan`; torch runs as many steps per timed call);
3. feature-extraction training per epoch: the head on cached features
   (`transfer.features`) vs recomputing the frozen backbone every epoch (target >= 20x);
4. peak RSS of fine-tuning ResNet-50 at 224 px, batch 32, `--steps_per_call` steps per call,
   in a fresh subprocess (`resource.getrusage` ru_maxrss; target < 8 GB).

The torch network is the parity tests' plain torch.nn ResNet (torchvision layout,
common/torch_reference.py); its random weights go through `transfer.convert.from_torchvision`,
so both sides compute with the same weights, checked before timing. Both get the same threads;
when JAX runs on a GPU, torch runs on CUDA (benchmarks/peer.py). Inference takes uint8 host
images on both sides; the fine-tuning step's batch is already on the device on both sides.
Compilation and `--warmup` calls per side are left out of the timing; the `--iters` timed calls
alternate between the two sides, so load from other processes on a shared machine hits both
alike, and each side's figure is the median of its calls.

  python benchmarks/resnet_speed.py [--arch=resnet50] [--image_size=224] [--batch_size=16]
      [--train_batch_size=8] [--steps_per_call=10] [--iters=5] [--warmup=2] [--head_images=128]
      [--head_image_size=64] [--head_epochs=50] [--rss_batch_size=32] [--rss_calls=1] [--skip_rss]
      [--threads=N]
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def _args():
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument('--arch', default='resnet50')
  p.add_argument('--image_size', type=int, default=224)
  p.add_argument('--batch_size', type=int, default=16, help='inference batch')
  p.add_argument('--train_batch_size', type=int, default=8, help='fine-tuning step batch')
  p.add_argument('--steps_per_call', type=int, default=None,
                 help="fine-tuning steps per jitted call (default: the trainer's "
                      'train.steps_per_call)')
  p.add_argument('--iters', type=int, default=5, help='timed calls per side')
  p.add_argument('--warmup', type=int, default=2, help='untimed calls per side before timing')
  p.add_argument('--num_classes', type=int, default=10)
  p.add_argument('--head_images', type=int, default=128, help='images in the head-training set')
  p.add_argument('--head_image_size', type=int, default=64)
  p.add_argument('--head_epochs', type=int, default=50, help='cached-feature epochs timed')
  p.add_argument('--rss_batch_size', type=int, default=32)
  p.add_argument('--rss_calls', type=int, default=1, help='calls after the compiling one')
  p.add_argument('--skip_rss', action='store_true')
  p.add_argument('--threads', type=int, default=os.cpu_count())
  p.add_argument('--rss_child', action='store_true', help=argparse.SUPPRESS)
  args = p.parse_args()
  if args.steps_per_call is None:
    from transfer.configs.base import base_config
    args.steps_per_call = base_config().train.steps_per_call
  if args.warmup < 0:
    p.error('--warmup must be >= 0')
  if min(args.image_size, args.batch_size, args.train_batch_size, args.steps_per_call,
         args.iters, args.head_images, args.head_image_size, args.head_epochs,
         args.rss_batch_size, args.rss_calls, args.threads) < 1:
    p.error('sizes, counts and --threads must be positive')
  return args


def _set_threads(threads: int) -> None:
  # XLA reads its flags when the backend starts, so they go in before jax computes anything.
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen='
                             f'{str(threads > 1).lower()} '
                             f'intra_op_parallelism_threads={threads}')


def _fine_tune_spec(model, image_size: int, cached: bool = False, mode: str = 'fine_tune'):
  from transfer import freeze, steps
  rules, mults = freeze.mode_rules(mode, backbone_lr_mult=0.1)
  return steps.step_spec(model, 'torchvision', image_size, rules, mults, optimizer='sgd',
                         weight_decay=1e-4, momentum=0.9, bn_train=mode != 'feature_extraction',
                         cached=cached)


def _hparams(lr: float, steps: int):
  import jax
  import numpy as np
  return {'step0': np.int32(0), 'start': np.int32(0), 'steps': np.float32(steps),
          'lr': np.float32(lr), 'warmup': np.float32(0), 'cosine': np.bool_(False),
          'linear': np.bool_(False), 'key': jax.random.key(0)}


def _jax_state(fns, variables):
  import jax
  import jax.numpy as jnp
  # Copies: the jitted steps donate their state, which must not delete `variables`.
  state = {'params': variables['params'], 'batch_stats': variables['batch_stats'],
           'opt': fns.tx.init(variables['params'])}
  return jax.device_put(jax.tree.map(jnp.copy, state), jax.devices()[0])


def _torch_optimizer(net, torch):
  head = [p for n, p in net.named_parameters() if n.startswith('fc.')]
  decay = [p for n, p in net.named_parameters() if not n.startswith('fc.') and p.ndim > 1]
  rest = [p for n, p in net.named_parameters() if not n.startswith('fc.') and p.ndim <= 1]
  return torch.optim.SGD([{'params': decay, 'lr': 1e-3, 'weight_decay': 1e-4},
                          {'params': rest, 'lr': 1e-3, 'weight_decay': 0.0},
                          {'params': head, 'lr': 1e-2, 'weight_decay': 0.0}],
                         lr=1e-2, momentum=0.9)


def _torch_input(images, torch, device: str = 'cpu'):
  """uint8 NHWC on the host -> normalised float NCHW on `device` (uint8 crosses, as for JAX)."""
  mean = torch.tensor([0.485, 0.456, 0.406], device=device).view(1, 3, 1, 1)
  std = torch.tensor([0.229, 0.224, 0.225], device=device).view(1, 3, 1, 1)
  x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float().div_(255.0)
  return ((x - mean) / std).contiguous()


def _random_batches(rng, k: int, b: int, s: int, num_classes: int) -> dict:
  """k batches of b random uint8 s x s RGB images and labels, stacked: [k, b, ...]."""
  import numpy as np
  return {'image': rng.integers(0, 256, (k, b, s, s, 3), np.uint8),
          'label': rng.integers(0, num_classes, (k, b), np.int32)}


def rss_child(args) -> None:
  """Fine-tune steps at --rss_batch_size; prints the peak RSS in bytes."""
  import jax
  import numpy as np
  from transfer import resnet, steps, weights
  model = resnet.create_model(args.arch, args.num_classes)
  fns = steps.phase_fns(_fine_tune_spec(model, args.image_size))
  variables = weights._init_fn(model, args.image_size)(jax.random.key(0))
  state = _jax_state(fns, variables)
  rng = np.random.default_rng(0)
  s = args.image_size
  for _ in range(args.rss_calls + 1):  # the first call compiles
    batch = _random_batches(rng, args.steps_per_call, args.rss_batch_size, s, args.num_classes)
    state, metrics = fns.chunk(state, batch, _hparams(1e-3, 100))
    jax.block_until_ready(metrics)
  # Linux reports ru_maxrss in KiB.
  print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def _time_pair(jax_fn, torch_fn, iters: int, warmup: int, samples: dict | None = None
               ) -> tuple[float, float]:
  """Median seconds per call of each, alternating calls, after `warmup` untimed calls of each.

  The first calls after compiling run slower on both sides (fresh memory pages, allocator
  caches), so they are left out; the median keeps one call slowed by a neighbour's load from
  setting the figure. `samples`, when given, receives each side's timed calls ('jax', 'torch')."""
  for _ in range(warmup):
    jax_fn()
    torch_fn()
  tj, tt = [], []
  for _ in range(iters):
    t0 = time.perf_counter()
    jax_fn()
    tj.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    torch_fn()
    tt.append(time.perf_counter() - t0)
  if samples is not None:
    samples.update(jax=tj, torch=tt)
  return statistics.median(tj), statistics.median(tt)


def _time_steps(fns, state, net, opt, k: int, tb: int, args, rng, torch, device, peer,
                samples: dict | None = None):
  """Seconds per fine-tuning step of each side, `k` steps (k different batches) per timed call:
  one jitted `chunk` call on the JAX side, a loop of k steps on the torch side."""
  import jax
  batches = _random_batches(rng, k, tb, args.image_size, args.num_classes)
  hp = _hparams(1e-2, 100)
  xs = [_torch_input(x, torch, device) for x in batches['image']]
  ys = [torch.from_numpy(y).long().to(device) for y in batches['label']]
  batches = jax.device_put(batches)  # both sides' step batches wait on the device
  t0 = time.perf_counter()
  state, m = fns.chunk(state, batches, hp)
  jax.block_until_ready(m)
  compile_s = time.perf_counter() - t0

  def torch_steps():
    for x, y in zip(xs, ys):
      opt.zero_grad(set_to_none=True)
      loss = torch.nn.functional.cross_entropy(net(x, stages=False)[0], y)
      loss.backward()
      opt.step()
    peer.sync(torch, device)

  torch_steps()  # warm-up: allocates gradients and momentum buffers

  def jax_steps():
    nonlocal state
    state, metrics = fns.chunk(state, batches, hp)
    jax.block_until_ready(metrics)

  tj, tt = _time_pair(jax_steps, torch_steps, args.iters, args.warmup, samples)
  return state, (tj / k, tt / k, compile_s)


def main() -> None:
  args = _args()
  _set_threads(args.threads)
  if args.rss_child:
    rss_child(args)
    return
  import jax
  import numpy as np
  import torch

  from benchmarks import peer
  from common.torch_reference import torch_resnet  # the parity tests' torch network
  from transfer import convert, features, resnet, steps
  torch.set_num_threads(args.threads)
  device = peer.torch_device(jax, torch)
  peer.match_precision(torch, device, full=False)  # the project's ResNets use JAX's default
  print(f'{peer.describe(jax, torch, device)}; {args.threads} CPU threads each, '
        f'{os.cpu_count()} cores; {args.arch}')

  net = torch_resnet(args.arch, args.num_classes, seed=0)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, f'{args.arch}.pth')
    torch.save(net.state_dict(), path)
    variables = convert.from_torchvision(path, args.arch)
  net.to(device)
  model = resnet.create_model(args.arch, args.num_classes)
  rng = np.random.default_rng(0)
  s, b = args.image_size, args.batch_size

  # 1. Inference.
  images = rng.integers(0, 256, (b, s, s, 3), np.uint8)
  forward = features.forward_fn(model, 'torchvision')
  t0 = time.perf_counter()
  logits = np.asarray(jax.block_until_ready(forward(variables, images))[0])
  compile_s = time.perf_counter() - t0
  net.eval()
  with torch.no_grad():
    ref = net(_torch_input(images, torch, device), stages=False)[0].cpu().numpy()
  rel = float(np.max(np.abs(logits - ref)) / np.max(np.abs(ref)))

  def torch_infer():
    with torch.no_grad():
      net(_torch_input(images, torch, device), stages=False)
    peer.sync(torch, device)

  tj, tt = _time_pair(lambda: jax.block_until_ready(forward(variables, images)), torch_infer,
                      args.iters, args.warmup)
  print(f'\n1. inference, batch {b} at {s} px (logits max rel diff {rel:.1e}; '
        f'jax compile {compile_s:.1f} s)')
  print(f'   flax {b / tj:8.1f} images/s   torch {b / tt:8.1f} images/s   '
        f'flax/torch {tt / tj:.2f}x')

  # 2. Fine-tuning steps: one per call, and the trainer's chunk of steps per call.
  tb = args.train_batch_size
  fns = steps.phase_fns(_fine_tune_spec(model, s))
  state = _jax_state(fns, variables)
  net.train()
  opt = _torch_optimizer(net, torch)
  print(f'\n2. fine-tuning steps, batch {tb} at {s} px, BatchNorm in train mode')
  for k in sorted({1, args.steps_per_call}):
    state, (tj, tt, compile_s) = _time_steps(fns, state, net, opt, k, tb, args, rng, torch,
                                             device, peer)
    label = ('1 step per call' if k == 1 else
             f'{k} steps per call (train.steps_per_call; lax.scan)')
    print(f'   {label}, jax compile {compile_s:.1f} s:')
    print(f'   flax {tj:8.3f} s/step     torch {tt:8.3f} s/step     flax/torch speed '
          f'{tt / tj:.2f}x')
  del state

  # 3. Feature-extraction epochs: cached features vs recomputing the backbone.
  hs, n = args.head_image_size, args.head_images
  hb = min(32, n)
  n_batches = n // hb
  head_images = rng.integers(0, 256, (n_batches, hb, hs, hs, 3), np.uint8)
  head_labels = rng.integers(0, args.num_classes, (n_batches, hb), np.int32)
  fe_images = steps.phase_fns(_fine_tune_spec(model, hs, mode='feature_extraction'))
  fe_cached = steps.phase_fns(_fine_tune_spec(model, hs, cached=True,
                                              mode='feature_extraction'))
  st_img = _jax_state(fe_images, variables)
  st_feat = _jax_state(fe_cached, variables)
  t0 = time.perf_counter()
  feats = np.concatenate([np.asarray(forward(variables, x)[1]) for x in head_images])
  extract_s = time.perf_counter() - t0  # includes compiling the forward at this size
  feat_batches = {'feature': feats.reshape(n_batches, hb, -1), 'label': head_labels}
  img_batches = {'image': head_images, 'label': head_labels}
  hp = _hparams(1e-2, n_batches * args.head_epochs)
  # Warm-up calls compile both (one epoch per call).
  st_img, m = fe_images.chunk(st_img, img_batches, hp)
  st_feat, m2 = fe_cached.chunk(st_feat, feat_batches, hp)
  jax.block_until_ready((m, m2))
  t0 = time.perf_counter()
  for _ in range(args.head_epochs):
    st_feat, m2 = fe_cached.chunk(st_feat, feat_batches, hp)
  jax.block_until_ready(m2)
  cached_epoch = (time.perf_counter() - t0) / args.head_epochs
  image_epochs = max(1, min(3, args.iters))
  t0 = time.perf_counter()
  for _ in range(image_epochs):
    st_img, m = fe_images.chunk(st_img, img_batches, hp)
  jax.block_until_ready(m)
  image_epoch = (time.perf_counter() - t0) / image_epochs
  print(f'\n3. feature-extraction training, {n_batches * hb} images at {hs} px, batch {hb} '
        f'(one-off feature extraction {extract_s:.1f} s incl. compile)')
  print(f'   cached features {1e3 * cached_epoch:8.2f} ms/epoch   backbone every epoch '
        f'{1e3 * image_epoch:9.1f} ms/epoch   cached speed-up {image_epoch / cached_epoch:.0f}x '
        f'(target >= 20x)')

  # 4. Peak RSS of fine-tuning, in a fresh process.
  if args.skip_rss:
    return
  cmd = [sys.executable, os.path.abspath(__file__), '--rss_child', f'--arch={args.arch}',
         f'--image_size={s}', f'--rss_batch_size={args.rss_batch_size}',
         f'--rss_calls={args.rss_calls}', f'--steps_per_call={args.steps_per_call}',
         f'--num_classes={args.num_classes}',
         f'--threads={args.threads}']
  t0 = time.perf_counter()
  out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
  if out.returncode != 0:
    print(f'\n4. peak RSS: child failed ({out.returncode}): {out.stderr.strip()[-500:]}')
    return
  rss = int(out.stdout.strip().splitlines()[-1])
  print(f'\n4. peak RSS fine-tuning {args.arch} at {s} px, batch {args.rss_batch_size} '
        f'({args.rss_calls} call(s) of {args.steps_per_call} steps after compiling, '
        f'{time.perf_counter() - t0:.0f} s): '
        f'{rss / 2**30:.2f} GiB (target < 8 GB)')


if __name__ == '__main__':
  main()
