"""Where the PyTorch peer runs: on the same kind of device as JAX, so ratios compare like with like.

JAX on a GPU puts torch on CUDA (when torch has it); otherwise both run on the CPU. Timed torch
calls end with `sync`, since CUDA kernels return before they finish, as JAX's
`block_until_ready` waits for its own.
"""
from __future__ import annotations

import time


def torch_device(jax, torch) -> str:
  """'cuda' when JAX's default backend is a GPU and torch can use one, else 'cpu'."""
  if jax.default_backend() == 'gpu' and torch.cuda.is_available():
    return 'cuda'
  return 'cpu'


def sync(torch, device: str) -> None:
  """Waits for torch's queued work on `device`."""
  if device == 'cuda':
    torch.cuda.synchronize()


def match_precision(torch, device: str, full: bool) -> None:
  """Sets torch's float32 conv/matmul precision on CUDA to the JAX side's.

  `full`: true float32, as JAX's 'highest'; otherwise TF32, which is what JAX's default
  precision gives float32 convs and dots on NVIDIA GPUs (torch's default allows TF32 for cuDNN
  convs but not for matmuls). No effect on the CPU, where both compute in float32.
  """
  if device == 'cuda':
    torch.backends.cudnn.allow_tf32 = not full
    torch.backends.cuda.matmul.allow_tf32 = not full


def describe(jax, torch, device: str) -> str:
  """One line naming both sides' devices and the host's free memory (`memory_state`)."""
  name = torch.cuda.get_device_name() if device == 'cuda' else 'cpu'
  line = (f'jax {jax.__version__} on {jax.devices()[0].device_kind} ({jax.default_backend()}), '
          f'torch {torch.__version__} on {name}')
  memory = memory_state()
  return f'{line} ({memory})' if memory else line


def memory_state(path: str = '/proc/meminfo') -> str:
  """The host's free memory and page cache (Linux; '' elsewhere). On the CPU, XLA maps each
  call's scratch buffer afresh: with the page cache filling memory, every page of it is
  reclaimed first, and a call that needs hundreds of MB slows (docs/performance.md)."""
  try:
    with open(path) as f:
      kib = {k: int(v.split()[0]) for k, v in (line.split(':', 1) for line in f if ':' in line)}
    total, free, cache = kib['MemTotal'], kib['MemFree'], kib['Cached'] + kib.get('Buffers', 0)
  except (OSError, KeyError, ValueError, IndexError):
    return ''
  gib = 1024.0 ** 2
  return (f'host memory: {free / gib:.1f} GiB free, {cache / gib:.1f} GiB page cache, '
          f'of {total / gib:.1f} GiB')


def xla_flops(compiled) -> float:
  """The floating-point operations XLA counts in a compiled function (`.lower(...).compile()`)."""
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost['flops'])


def _best_rate(fn, flops: float, seconds: float) -> float:
  """GFLOP/s of the fastest of the calls of `fn` (which waits for its work) in `seconds`."""
  fn()
  best, t_end = 0.0, time.perf_counter() + seconds
  while time.perf_counter() < t_end:
    t0 = time.perf_counter()
    fn()
    best = max(best, flops / (time.perf_counter() - t0) / 1e9)
  return best


def jax_matmul_gflops(jax, n: int = 1024, seconds: float = 3.0) -> float:
  """JAX's best float32 [n, n] @ [n, n] rate over a few seconds, in GFLOP/s."""
  a = jax.random.normal(jax.random.key(0), (n, n), 'float32')
  f = jax.jit(lambda x: x @ x)
  return _best_rate(lambda: f(a).block_until_ready(), 2.0 * n ** 3, seconds)


def torch_matmul_gflops(torch, device: str, n: int = 1024, seconds: float = 3.0) -> float:
  """torch's best float32 [n, n] @ [n, n] rate on `device` over a few seconds, in GFLOP/s."""
  a = torch.randn(n, n, device=device)

  def call():
    a @ a
    sync(torch, device)
  return _best_rate(call, 2.0 * n ** 3, seconds)
