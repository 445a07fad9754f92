"""What the lab page draws, from the live G and D (not the EMA: the page shows what each step
does): generated samples, D's heatmap, the generator manifold, gradient arrows, and the
histogram KL/JS and PacGAN mode metrics of 2,500 generated samples.

One jitted call computes the arrays of a frame; the noise, grid and real samples are fixed per
(steps, data), so frames differ only by what training changed.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from common import rng as rng_lib
from gan import metrics as metrics_lib
from gan.data2d import Source2D, divergence_floor
from gan.steps import GanSteps

HEATMAP = 48  # D is evaluated on a HEATMAP x HEATMAP grid over the plot bounds
SHOWN = 400  # generated and real samples drawn on the page
MEASURED = 2500  # samples behind KL/JS and the mode metrics (as gan.evaluator)
MANIFOLD = 21  # noise grid side (1D noise: a line of MANIFOLD points)


class Views:
  """The frame arrays for one (steps, data source)."""

  def __init__(self, steps: GanSteps, source: Source2D, key: jax.Array):
    self.steps, self.source = steps, source
    self.noise = steps.noise(rng_lib.stream(key, 'fake'), MEASURED)
    self.real = np.asarray(jax.jit(source.sample, static_argnums=1)(
        rng_lib.stream(key, 'real'), MEASURED))
    self.floor = divergence_floor(source, rng_lib.stream(key, 'floor'), MEASURED)
    xmin, xmax, ymin, ymax = source.bounds
    gx, gy = jnp.meshgrid(jnp.linspace(xmin, xmax, HEATMAP), jnp.linspace(ymin, ymax, HEATMAP),
                          indexing='xy')
    self.grid = jnp.stack([gx.ravel(), gy.ravel()], 1)  # row-major from (xmin, ymin)
    self.manifold_z = self._manifold_noise()
    self._compute = jax.jit(self._arrays)

  def _manifold_noise(self) -> jax.Array:
    m = self.steps.cfg.model
    lo, hi = (-1.0, 1.0) if m.noise == 'uniform' else (-2.5, 2.5)
    t = jnp.linspace(lo, hi, MANIFOLD)
    if m.noise_dim == 1:
      return t[:, None]
    z = jnp.stack(jnp.meshgrid(t, t, indexing='ij'), -1).reshape(-1, 2)
    return jnp.pad(z, ((0, 0), (0, m.noise_dim - 2)))

  def _arrays(self, g_vars, d_vars):
    G, steps = self.steps.G, self.steps
    fake = G.apply(g_vars, self.noise, train=False)
    d_fn = steps.d_logits_fn(d_vars)
    d_prob = jax.nn.sigmoid(d_fn(self.grid)).reshape(HEATMAP, HEATMAP)
    manifold = G.apply(g_vars, self.manifold_z, train=False)
    shown = fake[:SHOWN]
    # Where the generator's loss pushes each shown sample: minus its gradient.
    arrows = -jax.grad(lambda x: steps.loss.g(d_fn(x)) * x.shape[0])(shown)
    return fake, d_prob, manifold, arrows

  def frame(self, state: dict) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(arrays to draw, metrics): fake [SHOWN, 2], d_prob [HEATMAP, HEATMAP] (row = y),
    manifold [MANIFOLD or MANIFOLD², 2], arrows [SHOWN, 2]; kl, js (and for distributions with
    modes, modes and high_quality)."""
    fake, d_prob, manifold, arrows = (np.asarray(a) for a in
                                      self._compute(state['g'], state['d']))
    metrics = {}
    if np.all(np.isfinite(fake)):
      metrics = metrics_lib.histogram_divergences(self.real, fake, self.source.bounds)
      if self.source.modes is not None:
        modes = metrics_lib.mode_metrics(fake, self.source.modes, self.source.sigma)
        metrics.update(modes=modes['modes'], high_quality=modes['high_quality'])
    arrays = {'fake': fake[:SHOWN], 'd_prob': d_prob, 'manifold': manifold, 'arrows': arrows}
    return arrays, metrics
