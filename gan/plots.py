"""GAN Lab-style pictures of a 2D GAN, and loss curves.

One figure per evaluation: (a) real (green) and generated (purple) samples over
the discriminator's output heatmap; (b) the generator's manifold, a grid of
noise pushed through G; (c) the direction each generated sample is pushed by
the generator's loss gradient; (d) loss curves so far.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
import numpy as np  # noqa: E402


def _heatmap(ax, d_prob, bounds):
  ax.imshow(d_prob.T, origin='lower', extent=bounds, cmap='PiYG', vmin=0, vmax=1,
            alpha=0.55, aspect='auto', interpolation='bilinear')


def plot_2d(path: str, *, real: np.ndarray, fake: np.ndarray, d_prob: np.ndarray, bounds,
            manifold: np.ndarray, arrows: np.ndarray, history: list[dict], step: int,
            title: str = '') -> None:
  """Write the four-panel figure.

  d_prob: [R, R] sigmoid(D) on a regular grid over `bounds` (x index first);
  manifold: [M, M, 2] G of a noise grid (for 1D noise, [1, M, 2]);
  arrows: [N, 2] minus the gradient of the G loss at `fake[:N]`.
  """
  fig, axes = plt.subplots(1, 4, figsize=(17, 4.4))
  xmin, xmax, ymin, ymax = bounds
  ax = axes[0]
  _heatmap(ax, d_prob, bounds)
  ax.scatter(real[:, 0], real[:, 1], s=3, c='#1a9641', alpha=0.5, label='real')
  ax.scatter(fake[:, 0], fake[:, 1], s=3, c='#7b3294', alpha=0.5, label='generated')
  ax.set_title('samples over D(x)')
  ax.legend(loc='upper right', fontsize=7, markerscale=3)
  ax = axes[1]
  lines = list(manifold) + (list(manifold.transpose(1, 0, 2)) if manifold.shape[0] > 1 else [])
  ax.add_collection(LineCollection(lines, colors='#7b3294', linewidths=0.6))
  ax.scatter(real[:500, 0], real[:500, 1], s=2, c='#1a9641', alpha=0.3)
  ax.set_title('generator manifold')
  ax = axes[2]
  _heatmap(ax, d_prob, bounds)
  n = len(arrows)
  norm = np.linalg.norm(arrows, axis=1, keepdims=True).max() + 1e-12
  scale = 0.08 * max(xmax - xmin, ymax - ymin) / norm
  ax.quiver(fake[:n, 0], fake[:n, 1], arrows[:, 0] * scale, arrows[:, 1] * scale,
            angles='xy', scale_units='xy', scale=1, color='#7b3294', width=0.003)
  ax.set_title('generator gradients')
  for ax in axes[:3]:
    ax.set_xlim(xmin, xmax)
    ax.set_ylim(ymin, ymax)
    ax.set_aspect('equal')
  plot_losses(axes[3], history)
  fig.suptitle(f'{title}  step {step}')
  # Fixed margins: tight_layout renders the figure once more just to measure it.
  fig.subplots_adjust(left=0.035, right=0.99, bottom=0.12, top=0.85, wspace=0.22)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)


def plot_losses(ax, history: list[dict]) -> None:
  steps = [h['step'] for h in history]
  for key, colour in (('loss_d', '#1a9641'), ('loss_g', '#7b3294')):
    vals = [h.get(key) for h in history]
    if any(v is not None for v in vals):
      ax.plot(steps, vals, c=colour, label=key, lw=1)
  ax.set_xlabel('round')
  ax.set_title('losses')
  ax.legend(fontsize=7)


def save_loss_curves(path: str, history: list[dict]) -> None:
  fig, ax = plt.subplots(figsize=(5, 3.5))
  plot_losses(ax, history)
  fig.tight_layout()
  os.makedirs(os.path.dirname(path), exist_ok=True)
  fig.savefig(path, dpi=80)
  plt.close(fig)
