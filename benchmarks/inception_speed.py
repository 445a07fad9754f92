"""FID feature extraction: this project's Flax InceptionV3 vs the same network in torch.

Both sides run the FID InceptionV3 (resize to 299, pool features [N, 2048]) with the same random
weights: the torch network is saved as a pytorch-fid style .pth and converted with
`common.metrics.inception.convert_pytorch_fid`, and the first batch's features are compared before
timing. Both get the same number of threads (XLA via XLA_FLAGS, torch via set_num_threads).
Compilation and warm-up are timed apart from throughput. Batches alternate between the two
sides, so load from other processes on a shared machine hits both alike; --num is rounded down to
whole batches. When JAX runs on a GPU, torch runs on CUDA (benchmarks/peer.py); both sides take
host arrays and return host features, and both compute in full float32 (no TF32), as FID
features should.

  python benchmarks/inception_speed.py [--num=10000] [--batch_size=50] [--image_size=32]
      [--threads=N]

Prints images/s for Flax and torch and their ratio.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--num', type=int, default=10_000, help='images to evaluate per side')
  parser.add_argument('--batch_size', type=int, default=50)
  parser.add_argument('--image_size', type=int, default=32, help='input side, resized to 299')
  parser.add_argument('--threads', type=int, default=os.cpu_count(),
                      help='threads for both XLA and torch')
  args = parser.parse_args()
  if min(args.num, args.batch_size, args.image_size, args.threads) < 1:
    parser.error('--num, --batch_size, --image_size and --threads must be positive')

  # XLA reads its flags when the backend starts, so they go in before jax computes anything.
  os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_cpu_multi_thread_eigen='
                             f'{str(args.threads > 1).lower()} '
                             f'intra_op_parallelism_threads={args.threads}')
  import jax
  import numpy as np
  import torch

  from benchmarks import peer
  from common.metrics import inception
  from common.torch_reference import random_fid_inception  # the parity test's torch network

  b = min(args.batch_size, args.num)
  num = args.num // b * b
  torch.set_num_threads(args.threads)
  device = peer.torch_device(jax, torch)
  peer.match_precision(torch, device, full=True)  # the FID network computes in full float32
  print(f'{peer.describe(jax, torch, device)}; {args.threads} CPU threads each, '
        f'{os.cpu_count()} cores; {num} images of {args.image_size}x{args.image_size}, batch {b}')

  net = random_fid_inception(seed=0)
  with tempfile.TemporaryDirectory() as tmp:
    path = os.path.join(tmp, 'fid_inception.pth')
    torch.save(net.state_dict(), path)
    variables = inception.convert_pytorch_fid(path)
  net.to(device)

  rng = np.random.default_rng(0)
  images = rng.random((num, args.image_size, args.image_size, 3), dtype=np.float32)

  def torch_features(x: np.ndarray) -> np.ndarray:
    with torch.inference_mode():
      return net(torch.from_numpy(x).to(device).permute(0, 3, 1, 2))[0].cpu().numpy()

  start = time.perf_counter()
  first = inception.fid_features(variables, images[:b], batch_size=b)
  flax_warm = time.perf_counter() - start
  start = time.perf_counter()
  first_torch = torch_features(images[:b])
  torch_warm = time.perf_counter() - start
  diff = np.abs(first - first_torch).max() / np.abs(first_torch).max()
  print(f'same network: max |flax - torch| / max |torch| = {diff:.2e} on the first batch')
  print(f'first batch (flax includes jit compile): flax {flax_warm:.1f} s, '
        f'torch {torch_warm:.1f} s')

  flax_s = torch_s = 0.0
  for i in range(0, num, b):
    start = time.perf_counter()
    inception.fid_features(variables, images[i:i + b], batch_size=b)
    middle = time.perf_counter()
    torch_features(images[i:i + b])
    flax_s, torch_s = flax_s + middle - start, torch_s + time.perf_counter() - middle
  flax_rate, torch_rate = num / flax_s, num / torch_s

  print(f'flax  {flax_rate:8.2f} images/s')
  print(f'torch {torch_rate:8.2f} images/s')
  print(f'flax / torch = {flax_rate / torch_rate:.2f}')


if __name__ == '__main__':
  main()
