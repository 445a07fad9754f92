"""Models and train state of a GAN config: what training, evaluation and sampling all rebuild."""
from __future__ import annotations

import functools

import jax
import ml_collections

from common import sharding
from common.errors import unknown_name
from gan import conditional, models
from gan.steps import GanSteps

COMPUTE_DTYPES = ('float32', 'bfloat16', 'auto')


def compute_dtype(name: str) -> str:
  """'auto' -> bfloat16 on GPU/TPU (mixed precision), float32 on CPU."""
  if name not in COMPUTE_DTYPES:
    raise unknown_name('model.dtype', name, COMPUTE_DTYPES)
  if name == 'auto':
    return 'float32' if jax.devices()[0].platform == 'cpu' else 'bfloat16'
  return name


def build_models(config: ml_collections.ConfigDict, data_shape: tuple[int, ...]):
  """(generator, discriminator): conditional ones when model.num_classes > 0."""
  model_cfg = {**config.model, 'dtype': compute_dtype(config.model.dtype)}
  if config.model.get('num_classes', 0) > 0:
    return conditional.create_models(model_cfg, data_shape)
  return models.create_models(model_cfg, data_shape)


def _init_fn(steps: GanSteps, data_shape: tuple[int, ...]):
  return functools.partial(steps.init, data_shape=data_shape)


def init_state(steps: GanSteps, config: ml_collections.ConfigDict, key: jax.Array,
               data_shape: tuple[int, ...], mesh) -> dict:
  """The initial train state laid out as `config.sharding.params` asks.

  Both layouts initialise under jit; fsdp straight into the shards, so no device ever holds the
  whole state.
  """
  mode, min_size = config.sharding.params, config.sharding.min_size
  init = _init_fn(steps, data_shape)
  if mode == 'replicated':
    # One compiled init instead of a compilation per initialiser op.
    return sharding.replicate(jax.jit(init)(key), mesh)
  out = sharding.state_shardings(jax.eval_shape(init, key), mesh, mode, min_size)
  return jax.jit(init, out_shardings=out)(key)


def abstract_state(steps: GanSteps, config: ml_collections.ConfigDict, key: jax.Array,
                   data_shape: tuple[int, ...], mesh):
  """The train state's shapes, dtypes and shardings, without computing it: enough to restore a
  checkpoint into (no eager init, which costs seconds of op compiles)."""
  abstract = jax.eval_shape(_init_fn(steps, data_shape), key)
  layout = sharding.state_shardings(abstract, mesh, config.sharding.params,
                                    config.sharding.min_size)
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s),
                      abstract, layout)
