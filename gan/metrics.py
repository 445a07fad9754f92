"""2D sample-quality metrics.

Mode metrics follow PacGAN (Lin et al. 2018): a sample is high quality if it
lies within 3σ per axis of its nearest mode; `modes` counts modes nearest to at
least one high-quality sample; `reverse_kl` = KL(p̂_G ‖ uniform) over the
nearest-mode assignments of all samples. Histogram metrics compare 30×30
histograms of real and generated samples over the plot bounds.
"""
from __future__ import annotations

import numpy as np


def nearest_mode(samples: np.ndarray, modes: np.ndarray) -> np.ndarray:
  """Index of the nearest mode (Euclidean) for each sample: [N, 2], [K, 2] -> [N]."""
  d2 = ((samples[:, None, :] - modes[None, :, :]) ** 2).sum(-1)
  return d2.argmin(1)


def mode_metrics(samples: np.ndarray, modes: np.ndarray, sigma: float) -> dict[str, float]:
  samples = np.asarray(samples, np.float64)
  modes = np.asarray(modes, np.float64)
  k = len(modes)
  assign = nearest_mode(samples, modes)
  close = np.all(np.abs(samples - modes[assign]) <= 3 * sigma, axis=1)
  covered = np.unique(assign[close])
  p = np.bincount(assign, minlength=k) / len(samples)
  nz = p > 0
  reverse_kl = float(np.sum(p[nz] * np.log(p[nz] * k)))
  return {'modes': int(len(covered)), 'high_quality': float(close.mean()),
          'reverse_kl': reverse_kl}


def histogram(samples: np.ndarray, bounds, bins: int = 30) -> np.ndarray:
  """Normalised [bins, bins] histogram over `bounds`; samples outside are clipped to the border
  bins so that both histograms count every sample."""
  xmin, xmax, ymin, ymax = bounds
  x = np.clip(samples[:, 0], xmin, np.nextafter(xmax, xmin))
  y = np.clip(samples[:, 1], ymin, np.nextafter(ymax, ymin))
  h, _, _ = np.histogram2d(x, y, bins=bins, range=[[xmin, xmax], [ymin, ymax]])
  return h / h.sum()


def histogram_divergences(real: np.ndarray, fake: np.ndarray, bounds, bins: int = 30,
                          eps: float = 1e-10) -> dict[str, float]:
  """KL(real ‖ fake) and JS(real, fake) between 30×30 histograms (natural log).

  KL is infinite when `fake` misses a bin `real` uses; `eps` mass is added to
  every bin of both histograms (then renormalised) to keep it finite. JS needs
  no smoothing and is bounded by log 2.
  """
  p = histogram(real, bounds, bins).ravel()
  q = histogram(fake, bounds, bins).ravel()
  ps, qs = (p + eps) / (p + eps).sum(), (q + eps) / (q + eps).sum()
  kl = float(np.sum(ps * np.log(ps / qs)))
  m = 0.5 * (p + q)

  def _kl(a, b):
    nz = a > 0
    return float(np.sum(a[nz] * np.log(a[nz] / b[nz])))

  return {'kl': kl, 'js': 0.5 * _kl(p, m) + 0.5 * _kl(q, m)}
