"""Models and train state of a GAN config: what training, evaluation and sampling all rebuild."""
from __future__ import annotations

import dataclasses
import functools
import os

import jax
import ml_collections

from common import rng as rng_lib
from common import sharding
from common.checkpoint import Checkpointer
from common.errors import UserError, unknown_name
from common.workdir import read_config
from gan import conditional, images, models
from gan.configs.base import base_config
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


def load_run_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config in `workdir/config.json`, on top of today's defaults (new keys)."""
  if not os.path.isfile(os.path.join(workdir, 'config.json')):
    raise UserError(f'{workdir} has no config.json; pass the --workdir of a launch.gan run')
  saved = read_config(workdir, 'pass the --workdir of a launch.gan run')

  def tuples(v):  # JSON turned the config's tuples into lists
    return {k: tuples(x) for k, x in v.items()} if isinstance(v, dict) else (
        tuple(v) if isinstance(v, list) else v)

  config = base_config()
  config.update(tuples(saved))
  return config


@dataclasses.dataclass
class RestoredRun:
  """A finished (or interrupted) image GAN run, rebuilt from its workdir at one checkpoint."""
  config: ml_collections.ConfigDict
  steps: GanSteps
  state: dict  # the train state; samples come from state['ema']
  step: int
  key: jax.Array  # the run's root key (config.seed)
  shape: tuple[int, ...]


def checkpoint_steps(workdir: str) -> list[int]:
  ckpt_dir = os.path.join(workdir, 'checkpoints')
  return sorted(int(d) for d in os.listdir(ckpt_dir) if d.isdigit()) if os.path.isdir(
      ckpt_dir) else []


def restore_run(workdir: str, step: int | None = None) -> RestoredRun:
  """The run in `workdir` at checkpoint `step` (default: the latest); image runs only."""
  config = load_run_config(workdir)
  if config.data.name not in images.IMAGE_DATASETS:
    raise UserError(f'{workdir} trained on {config.data.name!r} points, not images; its '
                    'pictures are in its images/ folder')
  saved = checkpoint_steps(workdir)
  if not saved:
    raise UserError(f'{workdir} has no checkpoints; train it first (python -m launch.gan '
                    f'--workdir={workdir} ...) or pass another --workdir')
  if step is not None and step not in saved:
    raise UserError(f'{workdir} has no checkpoint at step {step}; it has '
                    f'{", ".join(map(str, saved))}')
  shape = tuple(images.image_shape(config.data))
  generator, discriminator = build_models(config, shape)
  mesh = sharding.data_mesh()
  steps = GanSteps(generator, discriminator, config, real_fn=None, mesh=mesh)
  key = rng_lib.root_key(config.seed)
  abstract = abstract_state(steps, config, rng_lib.stream(key, 'init'), shape, mesh)
  ckpt = Checkpointer(workdir, keep=config.train.keep_checkpoints)
  try:
    state, _, step = ckpt.restore(abstract, step)
  finally:
    ckpt.close()
  return RestoredRun(config, steps, state, int(step), key, shape)
