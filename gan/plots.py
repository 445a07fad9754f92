"""GAN Lab-style pictures of a 2D GAN, and loss curves.

One figure per evaluation: (a) real (green) and generated (purple) samples over
the discriminator's output heatmap; (b) the generator's manifold, a grid of
noise pushed through G; (c) the direction each generated sample is pushed by
the generator's loss gradient; (d) loss curves so far. The heatmap's colour bar
reads D(x) = P(real): purple where D calls x fake, green where it calls x real,
and a mid grey at 0.5, where a GAN at equilibrium leaves it, so the samples
stay readable on it. Pictures are saved at FIGURE_DPI so arrowheads show.
"""
from __future__ import annotations


import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.colors import LinearSegmentedColormap  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402
import numpy as np  # noqa: E402

from common.writers import save_figure  # noqa: E402

REAL, FAKE = '#1a7a3c', '#6a2c8a'  # sample colours: green real, purple generated
# D(x) = P(real): light purple (fake) -> mid grey at 0.5 -> light green (real). The ends are
# lighter than the sample colours and the middle is no lighter than the ends' tint, so both
# kinds of sample keep their contrast wherever they fall.
D_CMAP = LinearSegmentedColormap.from_list(
    'd_prob', [(0.0, '#b48fcb'), (0.5, '#a6a6a6'), (1.0, '#8fcf95')])
D_LABEL = 'D(x) = P(real)'


def _heatmap(ax, d_prob, bounds):
  return ax.imshow(d_prob.T, origin='lower', extent=bounds, cmap=D_CMAP, vmin=0, vmax=1,
                   aspect='auto', interpolation='bilinear')


def _samples(ax, points, colour, label=None, size=4.0):
  # A thin white rim keeps a sample visible on any heatmap colour.
  ax.scatter(points[:, 0], points[:, 1], s=size, c=colour, alpha=0.85, label=label,
             edgecolors='white', linewidths=0.25)


def plot_2d(path: str, *, real: np.ndarray, fake: np.ndarray, d_prob: np.ndarray, bounds,
            manifold: np.ndarray, arrows: np.ndarray, history: list[dict], step: int,
            title: str = '') -> None:
  """Write the four-panel figure.

  d_prob: [R, R] sigmoid(D) on a regular grid over `bounds` (x index first);
  manifold: [M, M, 2] G of a noise grid (for 1D noise, [1, M, 2]);
  arrows: [N, 2] minus the gradient of the G loss at `fake[:N]`.
  """
  fig = plt.figure(figsize=(18, 4.4))
  # Panels a-c, the heatmap's colour bar, a gap for its label, then the loss curves.
  grid = fig.add_gridspec(1, 6, width_ratios=[1, 1, 1, 0.05, 0.1, 1.1], left=0.035, right=0.99,
                          bottom=0.12, top=0.85, wspace=0.22)
  axes = [fig.add_subplot(grid[0, i]) for i in (0, 1, 2, 5)]
  xmin, xmax, ymin, ymax = bounds
  ax = axes[0]
  image = _heatmap(ax, d_prob, bounds)
  _samples(ax, real, REAL, 'real')
  _samples(ax, fake, FAKE, 'generated')
  ax.set_title('samples over D(x)')
  ax.legend(loc='upper right', fontsize=7, markerscale=3)
  ax = axes[1]
  lines = list(manifold) + (list(manifold.transpose(1, 0, 2)) if manifold.shape[0] > 1 else [])
  ax.add_collection(LineCollection(lines, colors=FAKE, linewidths=0.6))
  ax.scatter(real[:500, 0], real[:500, 1], s=2, c=REAL, alpha=0.3)
  ax.set_title('generator manifold')
  ax = axes[2]
  _heatmap(ax, d_prob, bounds)
  n = len(arrows)
  norm = np.linalg.norm(arrows, axis=1, keepdims=True).max() + 1e-12
  scale = 0.08 * max(xmax - xmin, ymax - ymin) / norm
  ax.quiver(fake[:n, 0], fake[:n, 1], arrows[:, 0] * scale, arrows[:, 1] * scale,
            angles='xy', scale_units='xy', scale=1, color=FAKE, width=0.004, headwidth=4,
            headlength=5, headaxislength=4.5)
  ax.set_title('generator gradients')
  for ax in axes[:3]:
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect('equal')
  bar = fig.colorbar(image, cax=fig.add_subplot(grid[0, 3]), ticks=[0, 0.25, 0.5, 0.75, 1])
  bar.set_label(D_LABEL)
  plot_losses(axes[3], history)
  fig.suptitle(f'{title}  step {step}')
  # Fixed margins (the grid above): tight_layout renders the figure once more to measure it.
  save_figure(path, fig)
  plt.close(fig)


def plot_losses(ax, history: list[dict]) -> None:
  steps = [h['step'] for h in history]
  for key, colour in (('loss_d', REAL), ('loss_g', FAKE)):
    vals = [h.get(key) for h in history]
    if any(v is not None for v in vals):
      ax.plot(steps, vals, c=colour, label=key, lw=1)
  ax.set_xlabel('round')
  ax.xaxis.set_major_locator(MaxNLocator(4))  # 40,000 rounds' labels overlapped at 9 ticks
  ax.set_title('losses')
  ax.legend(fontsize=7)


def save_loss_curves(path: str, history: list[dict]) -> None:
  fig, ax = plt.subplots(figsize=(5, 3.5))
  plot_losses(ax, history)
  fig.tight_layout()
  save_figure(path, fig)
  plt.close(fig)
