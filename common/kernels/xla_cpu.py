"""`jit_xla_kernels`: `jax.jit` that keeps XLA:CPU's own dot and conv kernels.

By default XLA:CPU hands dots to the YNNPACK library (`xla_cpu_experimental_ynn_fusion_type`).
Whether that pays depends on the program, so each jitted function that is measurably faster
without it says so by using this wrapper (model steps: through `jit_for`). Faster without it:
the toy 2D GANs' MLP rounds, the InceptionV3 FID features and the InceptionV3 transfer
backbone; faster with it, so kept on the library: the ResNet-50 fine-tuning step and the DCGAN
rounds (figures in docs/performance.md).

The option is set per compiled function (`compiler_options`), not process-wide through
`XLA_FLAGS`, so a process that also runs the other kind of code keeps the library there. It is
an experimental XLA option: an XLA that does not know it gets a plain `jax.jit`, and
accelerators never see it.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp

_OPTIONS = {'xla_cpu_experimental_ynn_fusion_type': ''}  # no fusion goes to the library


@functools.lru_cache(maxsize=None)
def xla_kernel_options() -> dict[str, Any] | None:
  """The compiler options that keep XLA's own kernels on this backend (None: nothing to set)."""
  if jax.default_backend() != 'cpu':
    return None
  try:  # an XLA without this (experimental) option rejects it at compile time
    jax.jit(lambda x: x + 1, compiler_options=_OPTIONS).lower(jnp.zeros(())).compile()
  except Exception:  # noqa: BLE001 - any rejection means: leave XLA's defaults alone
    return None
  return dict(_OPTIONS)


def jit_xla_kernels(fn: Callable, **jit_kwargs) -> Callable:
  """`jax.jit(fn, **jit_kwargs)`, compiled with `xla_kernel_options()` on CPU."""
  return jax.jit(fn, compiler_options=xla_kernel_options(), **jit_kwargs)


def jit_for(*modules: Any) -> Callable[..., Callable]:
  """The jit for a step that runs `modules` (flax modules): `jit_xla_kernels` when every one
  declares the class attribute `xla_cpu_kernels = True`, else `jax.jit`. Models say which
  kernels suit them, so step code need not know them by name."""
  if modules and all(getattr(m, 'xla_cpu_kernels', False) for m in modules):
    return jit_xla_kernels
  return jax.jit
