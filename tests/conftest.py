"""Shared test settings.

The tests compare float32 results with independent references at float32 tolerances. On a GPU,
JAX's default matmul and conv precision is TF32 (about 3 decimal digits), which is a speed
choice, not what these comparisons check; there the tests run in full float32. XLA:CPU computes
float32 in full either way, so the CPU runs are left as they are.
"""
import jax

if jax.default_backend() != 'cpu':
  jax.config.update('jax_default_matmul_precision', 'highest')
