"""In-run evaluation of a GAN: pictures and metrics at eval steps, from the EMA generator.

2D runs get GAN Lab's pictures (samples over D's heatmap, the generator manifold, gradient
arrows, loss curves) and histogram/mode metrics; image runs get sample grids from fixed noise
and `eval.metrics` (gan.evaluation).
"""
from __future__ import annotations

import glob
import os

import jax
import jax.numpy as jnp
import numpy as np

from common import distributed
from common import rng as rng_lib
from common.loop import is_due
from common.writers import MetricWriter, image_grid, save_gif, save_picture, save_png
from gan import evaluation, plots
from gan import metrics as metrics_lib
from gan.data import GanData
from gan.data2d import divergence_floor
from gan.steps import GanSteps


class Evaluator:
  """Metrics and pictures at an eval step, from the EMA generator."""

  def __init__(self, config, steps: GanSteps, gdata: GanData, workdir: str, key: jax.Array,
               writer: MetricWriter | None = None):
    self.config, self.steps, self.gdata = config, steps, gdata
    self.writer = writer  # pictures go to TensorBoard too
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
    return is_due(step, self.config.train.eval_every, total) or self._metrics_due(step, total)

  def _metrics_due(self, step: int, total: int) -> bool:
    return bool(self.metrics) and is_due(step, self.config.eval.fid_every, total)

  def __call__(self, state, step: int, history: list[dict], total: int) -> dict[str, float]:
    if self.gdata.source2d is not None:
      return self._points(state, step, history)
    if is_due(step, self.config.train.eval_every, total):
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
      grid = image_grid(x, ncol=ncol)
      save_png(path, grid, scale=max(1, 128 // x.shape[1]))
      if self.writer is not None:
        self.writer.image('samples', step, grid)

  def _sample_metrics(self, state) -> dict[str, float]:
    """eval.metrics of eval.num_samples EMA samples; the same noise at every step."""
    cfg = self.config
    if self._context is None:
      net = evaluation.create_feature_net(cfg, cfg.eval.inception_weights)
      self._context = evaluation.Context(cfg, net, cfg.eval.reference_stats)
    fake, labels = evaluation.generate(self.steps, state['ema'],
                                       rng_lib.stream(self.key, 'metrics'), cfg.eval.num_samples)
    return evaluation.compute_metrics(self._context, self.metrics, fake, labels)

  def floor(self, results: dict[str, float]) -> dict[str, float]:
    """`floor_<metric>` for the metrics in `results` that have one: for 2D runs KL and JS between
    two independent real draws of eval.num_samples points (mean of 5); for digits the metrics
    between two halves of the real digits. What a generator that matched the data would score."""
    src = self.gdata.source2d
    if src is not None:
      if 'js' not in results:
        return {}
      real = divergence_floor(src, rng_lib.stream(self.key, 'floor'), self.config.eval.num_samples)
      return {f'floor_{k}': v for k, v in real.items() if k in results}
    if self._context is None or not evaluation.uses_digits_net(self.config):
      return {}
    real = evaluation.real_vs_real(self.config, self._context.net)
    return {f'floor_{k}': v for k, v in real.items() if k in results}

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
        path = os.path.join(self.image_dir, f'step_{step:07d}.png')
        plots.plot_2d(path, real=self.real[:1000], fake=fake[:1000], d_prob=d_prob,
                      bounds=src.bounds, manifold=manifold, arrows=arrows, history=history,
                      step=step, title=title)
        if self.writer is not None:
          self.writer.image_file('gan_lab', step, path)
    return out

  def finish(self, history: list[dict]) -> None:
    """The run's GIF (every eval frame, including those before a resume) and final picture."""
    if not distributed.is_main():
      return
    is_2d = self.gdata.source2d is not None
    frames = sorted(glob.glob(os.path.join(self.image_dir, 'step_*.png' if is_2d else 'samples_*.png')))
    if frames:
      save_gif(os.path.join(self.image_dir, 'progress.gif' if is_2d else 'samples.gif'), frames)
      with open(frames[-1], 'rb') as f:
        last = f.read()
      save_picture(os.path.join(self.image_dir, 'final.png' if is_2d else 'samples.png'),
                   lambda out: out.write(last))
    if history:
      plots.save_loss_curves(os.path.join(self.image_dir, 'losses.png'), history)
