"""common.kernels.xla_cpu: same values as jax.jit, compiled without library fusions on CPU."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from common.kernels import xla_cpu


def _mlp(x, w):
  for _ in range(3):
    x = jnp.tanh(x @ w)
  return x


def test_same_values_as_jax_jit():
  kx, kw = jax.random.split(jax.random.key(0))
  x = jax.random.normal(kx, (256, 128))
  w = jax.random.normal(kw, (128, 128)) / 12
  ours = xla_cpu.jit_xla_kernels(_mlp)(x, w)
  np.testing.assert_allclose(np.asarray(ours), np.asarray(jax.jit(_mlp)(x, w)), rtol=1e-5,
                             atol=1e-6)


def test_no_library_fusion_in_compiled_program():
  options = xla_cpu.xla_kernel_options()
  if options is None:
    pytest.skip('not CPU, or this XLA has no library-fusion option')
  x, w = jnp.ones((256, 128)), jnp.ones((128, 128))
  text = xla_cpu.jit_xla_kernels(_mlp).lower(x, w).compile().as_text()
  assert 'dot' in text and '__ynn_fusion' not in text
  # jit_kwargs pass through (donation, static arguments).
  f = xla_cpu.jit_xla_kernels(lambda x, n: x * n, static_argnums=1)
  assert float(f(jnp.ones(()), 3)) == 3.0


class _Declares:
  xla_cpu_kernels = True


def test_jit_for_needs_every_module_to_declare_xla_kernels():
  assert xla_cpu.jit_for(_Declares(), _Declares()) is xla_cpu.jit_xla_kernels
  assert xla_cpu.jit_for(_Declares(), object()) is jax.jit
  assert xla_cpu.jit_for() is jax.jit
