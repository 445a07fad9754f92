"""The GAN training loop: `train_and_evaluate(config, workdir)`.

Rounds run in chunks of up to `train.rounds_per_call` fused by `lax.scan`;
chunk boundaries fall on every log, eval, metrics (`eval.fid_every`, when
`eval.metrics` names any) and checkpoint step, and depend on the step alone, so
a resumed run replays exactly the chunks of an uninterrupted one.
"""
from __future__ import annotations

import dataclasses
import functools
import glob
import json
import os
import shutil
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from common import data as data_lib
from common import distributed
from common import rng as rng_lib
from common import sharding
from common.checkpoint import Checkpointer
from common.errors import UserError, unknown_name
from common.progress import progress
from common.workdir import prepare_workdir
from common.writers import MetricWriter, image_grid, read_metrics, save_gif, save_png
from gan import conditional, data2d, evaluation, images, losses, models, plots
from gan import metrics as metrics_lib
from gan.steps import GanSteps, all_finite, chunk_means


class TrainingDiverged(UserError):
  """A loss became NaN or inf; the last good checkpoint is kept."""


@dataclasses.dataclass
class GanData:
  shape: tuple[int, ...]
  real_fn: Callable[[jax.Array, Any], jax.Array]
  source2d: data2d.Source2D | None = None
  iterator: data_lib.BatchIterator | None = None
  num_examples: int | None = None
  labels: bool = False  # conditional runs also take each batch's 'label'

  def next_chunk(self, rounds: int, n_d: int, mesh, length: int | None = None):
    """Real batches for `rounds` rounds: None (sampled on device) or {'image': [L, n_d, B, ...]}
    (and 'label' [L, n_d, B]) sharded along B over the mesh's `data` axis. L = max(rounds,
    length): zero batches pad a short chunk to `length` rounds so every chunk has one shape."""
    if self.iterator is None:
      return None
    taken = self.iterator.take(rounds * n_d)
    keys = ('image', 'label') if self.labels else ('image',)
    out = {}
    for k in keys:
      arr = taken[k].reshape(rounds, n_d, *taken[k].shape[1:])
      if length is not None and length > rounds:
        arr = np.concatenate([arr, np.zeros((length - rounds, *arr.shape[1:]), arr.dtype)])
      out[k] = sharding.global_batch(arr, mesh, batch_axis=2)
    return out


def build_data(config: ml_collections.ConfigDict) -> GanData:
  name, batch = config.data.name, config.data.batch_size
  if name in data2d.DISTRIBUTIONS or name == 'points':
    source = data2d.get_source(name, config.data.path)
    if source.num_points is not None and batch > source.num_points:
      raise UserError(f'batch size {batch} is larger than the points file ({source.num_points} '
                      'points); lower data.batch_size')
    return GanData((2,), lambda key, _: source.sample(key, batch), source2d=source)
  if name not in images.IMAGE_DATASETS:
    raise unknown_name('dataset', name, [*data2d.DISTRIBUTIONS, 'points', *images.IMAGE_DATASETS])
  src, shape = images.image_source(name, 'train', config.data.data_dir or None)
  ds = data_lib.batched(src, batch, seed=config.seed, shuffle=True,
                        shard_index=jax.process_index(), shard_count=jax.process_count())
  return GanData(tuple(shape), lambda _, b: b['image'], iterator=data_lib.BatchIterator(ds),
                 num_examples=len(src), labels=config.model.get('num_classes', 0) > 0)


def build_models(config: ml_collections.ConfigDict, data_shape: tuple[int, ...]):
  """(generator, discriminator): conditional ones when model.num_classes > 0."""
  model_cfg = {**config.model, 'dtype': compute_dtype(config.model.dtype)}
  if config.model.get('num_classes', 0) > 0:
    return conditional.create_models(model_cfg, data_shape)
  return models.create_models(model_cfg, data_shape)


def validate(config: ml_collections.ConfigDict) -> None:
  """Reject bad values before any work is done (each a one-line UserError)."""
  t = config.train
  for key in ('g_lr', 'd_lr'):
    if not t[key] > 0:
      raise UserError(f'train.{key} must be positive, got {t[key]}')
  if config.data.batch_size <= 0:
    raise UserError(f'data.batch_size must be positive, got {config.data.batch_size}')
  for key in ('steps', 'n_d', 'n_g', 'rounds_per_call'):
    if t[key] < 1:
      raise UserError(f'train.{key} must be at least 1, got {t[key]}')
  if not 0 <= t.ema_decay < 1:
    raise UserError(f'train.ema_decay must be in [0, 1), got {t.ema_decay}')
  if t.optimizer not in ('adam', 'sgd'):
    raise unknown_name('optimizer', t.optimizer, ['adam', 'sgd'])
  if t.lr_decay not in ('constant', 'linear', 'cosine'):
    raise unknown_name('train.lr_decay', t.lr_decay, ['constant', 'linear', 'cosine'])
  losses.get_loss(config.loss.name)
  if config.loss.gp_weight < 0 or config.loss.r1_gamma < 0:
    raise UserError('loss.gp_weight and loss.r1_gamma must be >= 0')
  if config.loss.get('r1_every', 1) < 1:
    raise UserError(f'loss.r1_every must be >= 1 (1 = R1 every round), got {config.loss.r1_every}')
  if config.model.name not in models.MODELS:
    raise unknown_name('model', config.model.name, models.MODELS)
  compute_dtype(config.model.dtype)
  for key in ('eval_every', 'checkpoint_every', 'log_every'):
    if config[key] < 1:
      raise UserError(f'{key} must be at least 1, got {config[key]}')
  if config.model.num_classes < 0:
    raise UserError('model.num_classes must be >= 0 (0: unconditional), got '
                    f'{config.model.num_classes}')
  if config.model.num_classes > 0:
    conditional.check_config(config.model, config.data.name)
  metric_names = evaluation.parse_metrics(config.eval.metrics)
  if metric_names and config.eval.fid_every < 1:
    raise UserError(f'eval.fid_every must be at least 1, got {config.eval.fid_every}')
  evaluation.check_metrics(config, metric_names, config.eval.num_samples,
                           config.eval.inception_weights, config.eval.reference_stats)
  sharding.check_param_mode(config.sharding.params, config.sharding.min_size)


def compute_dtype(name: str) -> str:
  """'auto' -> bfloat16 on GPU/TPU (mixed precision), float32 on CPU."""
  if name == 'auto':
    return 'float32' if jax.devices()[0].platform == 'cpu' else 'bfloat16'
  if name not in ('float32', 'bfloat16'):
    raise unknown_name('model.dtype', name, ['float32', 'bfloat16', 'auto'])
  return name


def init_state(steps: GanSteps, config: ml_collections.ConfigDict, key: jax.Array,
               data_shape: tuple[int, ...], mesh) -> dict:
  """The initial train state laid out as `config.sharding.params` asks.

  Both layouts initialise under jit; fsdp straight into the shards, so no device ever holds the
  whole state.
  """
  mode, min_size = config.sharding.params, config.sharding.min_size
  init = functools.partial(steps.init, data_shape=data_shape)
  if mode == 'replicated':
    # One compiled init instead of a compilation per initialiser op.
    return sharding.replicate(jax.jit(init)(key), mesh)
  out = sharding.state_shardings(jax.eval_shape(init, key), mesh, mode, min_size)
  return jax.jit(init, out_shardings=out)(key)


def _next_boundary(step: int, every: int) -> int:
  return (step // every + 1) * every


class Evaluator:
  """Metrics and pictures at an eval step, from the EMA generator."""

  def __init__(self, config, steps: GanSteps, gdata: GanData, workdir: str, key: jax.Array):
    self.config, self.steps, self.gdata = config, steps, gdata
    self.image_dir = os.path.join(workdir, 'images')
    self.key = key
    n = config.eval.num_samples
    src = gdata.source2d
    self.metrics = evaluation.parse_metrics(config.eval.metrics)
    self._context = None  # the feature net loads (or trains) at the first metrics step
    if src is not None:
      self.real = np.asarray(jax.jit(src.sample, static_argnums=1)(rng_lib.stream(key, 'real'), n))
      self._plot_fns = jax.jit(self._plot_fns_impl)
    elif steps.conditional:
      # One row per class, one column per fixed noise vector.
      k = steps.num_classes
      self.grid_cols = max(1, config.eval.grid_size // k)
      z = steps.noise(rng_lib.stream(key, 'grid'), self.grid_cols)
      self.fixed_noise = jnp.tile(z, (k, 1))
      self.grid_labels = jnp.repeat(jnp.arange(k, dtype=jnp.int32), self.grid_cols)
    else:
      self.fixed_noise = steps.noise(rng_lib.stream(key, 'grid'), config.eval.grid_size)

  def due(self, step: int, total: int) -> bool:
    """Whether `step` (a chunk boundary) has pictures or metrics to produce."""
    return step % self.config.eval_every == 0 or step == total or self._metrics_due(step, total)

  def _metrics_due(self, step: int, total: int) -> bool:
    return bool(self.metrics) and (step % self.config.eval.fid_every == 0 or step == total)

  def __call__(self, state, step: int, history: list[dict], total: int) -> dict[str, float]:
    if self.gdata.source2d is not None:
      return self._points(state, step, history)
    if step % self.config.eval_every == 0 or step == total:
      self._images(state, step)
    return self._sample_metrics(state) if self._metrics_due(step, total) else {}

  def _images(self, state, step):
    if self.steps.conditional:
      x = self.steps.G.apply(state['ema'], self.fixed_noise, self.grid_labels, train=False)
      ncol = self.grid_cols
    else:
      x = self.steps.G.apply(state['ema'], self.fixed_noise, train=False)
      ncol = None
    x = distributed.to_host(x)
    if distributed.is_main():
      path = os.path.join(self.image_dir, f'samples_{step:07d}.png')
      save_png(path, image_grid(x, ncol=ncol), scale=max(1, 128 // x.shape[1]))

  def _sample_metrics(self, state) -> dict[str, float]:
    """eval.metrics of eval.num_samples EMA samples; the same noise at every step."""
    cfg = self.config
    if self._context is None:
      net = evaluation.create_feature_net(cfg, cfg.eval.inception_weights)
      self._context = evaluation.Context(cfg, net, cfg.eval.reference_stats)
    fake, labels = evaluation.generate(self.steps, state['ema'],
                                       rng_lib.stream(self.key, 'metrics'), cfg.eval.num_samples)
    return evaluation.compute_metrics(self._context, self.metrics, fake, labels)

  def _plot_fns_impl(self, state, fake):
    """D's probability on a grid, the manifold, and -∇ of the G loss at generated points."""
    src = self.gdata.source2d
    xmin, xmax, ymin, ymax = src.bounds
    r = 60
    gx, gy = jnp.meshgrid(jnp.linspace(xmin, xmax, r), jnp.linspace(ymin, ymax, r), indexing='ij')
    d_fn = self.steps.d_logits_fn(state['d'])
    d_prob = jax.nn.sigmoid(d_fn(jnp.stack([gx.ravel(), gy.ravel()], 1))).reshape(r, r)
    m = self.config.model
    lo, hi = (-1.0, 1.0) if m.noise == 'uniform' else (-2.5, 2.5)
    t = jnp.linspace(lo, hi, 25)
    if m.noise_dim == 1:
      z = t[:, None]
      shape = (1, 25)
    else:
      z = jnp.stack(jnp.meshgrid(t, t, indexing='ij'), -1).reshape(-1, 2)
      z = jnp.pad(z, ((0, 0), (0, m.noise_dim - 2)))
      shape = (25, 25)
    manifold = self.steps.G.apply(state['ema'], z, train=False).reshape(*shape, 2)
    g_loss = lambda x: self.steps.loss.g(d_fn(x)) * x.shape[0]
    arrows = -jax.grad(g_loss)(fake)
    return d_prob, manifold, arrows

  def _points(self, state, step, history):
    cfg = self.config
    src = self.gdata.source2d
    fake = distributed.to_host(self.steps.sample(state['ema'], rng_lib.stream(self.key, 'fake'),
                                                 cfg.eval.num_samples))
    out = metrics_lib.histogram_divergences(self.real, fake, src.bounds)
    if src.modes is not None:
      out.update(metrics_lib.mode_metrics(fake, src.modes, src.sigma))
    if cfg.eval.plots:
      d_prob, manifold, arrows = map(distributed.to_host,
                                     self._plot_fns(state, jnp.asarray(fake[:300])))
      if distributed.is_main():
        title = f'{src.name}: ' + ', '.join(f'{k} {v:.3g}' for k, v in out.items())
        plots.plot_2d(os.path.join(self.image_dir, f'step_{step:07d}.png'), real=self.real[:1000],
                      fake=fake[:1000], d_prob=d_prob, bounds=src.bounds, manifold=manifold,
                      arrows=arrows, history=history, step=step, title=title)
    return out

  def finish(self, history: list[dict]) -> None:
    """The run's GIF (every eval frame, including those before a resume) and final picture."""
    if not distributed.is_main():
      return
    is_2d = self.gdata.source2d is not None
    frames = sorted(glob.glob(os.path.join(self.image_dir, 'step_*.png' if is_2d else 'samples_*.png')))
    if frames:
      save_gif(os.path.join(self.image_dir, 'progress.gif' if is_2d else 'samples.gif'), frames)
      shutil.copyfile(frames[-1], os.path.join(self.image_dir, 'final.png' if is_2d else 'samples.png'))
    if history:
      plots.save_loss_curves(os.path.join(self.image_dir, 'losses.png'), history)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       return_state: bool = False):
  """Train (or resume) the GAN in `config`, writing the workdir contract.

  Returns the summary dict, or (summary, final train state) with `return_state`.
  """
  validate(config)
  gdata = build_data(config)
  generator, discriminator = build_models(config, gdata.shape)
  if distributed.is_main():
    prepare_workdir(workdir, config)
  distributed.barrier('workdir')
  mesh = sharding.data_mesh()
  sharding.check_batch(config.data.batch_size, mesh)
  steps = GanSteps(generator, discriminator, config, gdata.real_fn, mesh)
  key = rng_lib.root_key(config.seed)
  state = init_state(steps, config, rng_lib.stream(key, 'init'), gdata.shape, mesh)
  ckpt = Checkpointer(workdir, keep=config.keep_checkpoints)
  start = 0
  if ckpt.latest_step() is not None:
    if ckpt.latest_step() >= config.train.steps and os.path.exists(os.path.join(workdir, 'summary.json')):
      state, _, _ = ckpt.restore(state)
      with open(os.path.join(workdir, 'summary.json')) as f:
        summary = json.load(f)  # already finished: nothing to do
      return (summary, state) if return_state else summary
    state, meta, start = ckpt.restore(state)
    if gdata.iterator is not None:
      gdata.iterator.set_state(meta['data'])
  writer = MetricWriter(workdir, resume_step=start if start else None, enabled=distributed.is_main())
  history = [m for m in read_metrics(workdir) if 'loss_d' in m] if start else []
  evaluator = Evaluator(config, steps, gdata, workdir, rng_lib.stream(key, 'eval'))
  total, t = config.train.steps, config.train
  step, last_eval = start, {}
  bar = progress(total, initial=start, desc='gan', unit='round')
  t0, rounds_timed = None, 0
  while step < total:
    every = [config.log_every, config.eval_every, config.checkpoint_every]
    if evaluator.metrics:
      every.append(config.eval.fid_every)
    k = min(t.rounds_per_call, total - step, *(_next_boundary(step, e) - step for e in every))
    batches = gdata.next_chunk(k, t.n_d, mesh, length=t.rounds_per_call)
    state, chunk = steps.train_chunk(state, batches, k)
    if not all_finite(chunk):
      last = ckpt.latest_step()
      raise TrainingDiverged(
          f'a loss became NaN/inf between rounds {step} and {step + k}; the last good checkpoint '
          f'({"step " + str(last) if last is not None else "none"}) is kept; lower the learning '
          'rates or add a gradient penalty')
    if t0 is None:
      jax.block_until_ready(state)
      t0 = time.perf_counter()  # exclude the first chunk (compilation) from the rate
    else:
      rounds_timed += k
    step += k
    bar.update(k)
    if step % config.log_every == 0 or step == total:
      row = chunk_means(chunk)
      writer.write(step, row)
      history.append({'step': step, **row})
    if evaluator.due(step, total):
      last_eval = evaluator(state, step, history, total)
      if last_eval:
        writer.write(step, last_eval)
    if step % config.checkpoint_every == 0 or step == total:
      meta = {'data': gdata.iterator.get_state()} if gdata.iterator is not None else {}
      ckpt.save(step, state, meta)
  bar.close()
  jax.block_until_ready(state)
  elapsed = time.perf_counter() - t0 if t0 is not None else 0.0
  evaluator.finish(history)
  summary = {'step': step, **last_eval, **({'rounds_per_sec': rounds_timed / elapsed}
                                           if rounds_timed and elapsed > 0 else {})}
  if history:
    summary.update({k: v for k, v in history[-1].items() if k != 'step'})
  writer.write_summary(summary)
  writer.close()
  ckpt.close()
  return (summary, state) if return_state else summary
