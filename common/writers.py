"""Metric and image writers: `metrics.jsonl`, TensorBoard events, `summary.json`, PNG, GIF."""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Mapping

import numpy as np

# Resolution of every matplotlib figure the project saves: high enough that thin lines,
# arrowheads and small markers survive viewing at full size.
FIGURE_DPI = 150


def _jsonable(v):
  if isinstance(v, (np.generic, np.ndarray)) or hasattr(v, 'item'):
    v = np.asarray(v)
    v = v.item() if v.ndim == 0 else v.tolist()
  if isinstance(v, float) and not math.isfinite(v):
    return str(v)  # JSON has no NaN/inf literals
  return v


class MetricWriter:
  """Appends `{"step": s, ...}` lines to metrics.jsonl, and scalars and images to TensorBoard.

  `start_step` is the step a run starts (or resumes) at: lines an interrupted attempt wrote
  after it are dropped, so a resumed run's metrics.jsonl equals an uninterrupted one, and 0
  starts the file afresh; TensorBoard purges that attempt's later events the same way.
  `append=True` keeps every line (results added to a finished run).
  """

  def __init__(self, workdir: str, start_step: int = 0, append: bool = False,
               tensorboard: bool = True, enabled: bool = True):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.summary_path = os.path.join(workdir, 'summary.json')
    self.enabled = enabled  # False on every process but the first of a multi-process run
    self._tb = None
    if not enabled:
      return
    if not append and os.path.exists(self.path):
      if start_step > 0:
        with open(self.path) as f:
          keep = [l for l in f if l.strip() and json.loads(l)['step'] <= start_step]
        with open(self.path, 'w') as f:
          f.writelines(keep)
      else:
        os.remove(self.path)  # a fresh run in an existing workdir without checkpoints
    if tensorboard:
      purge = {'purge_step': start_step + 1} if start_step > 0 and not append else {}
      self._tb = _summary_writer_class()(os.path.join(workdir, 'tensorboard'), flush_secs=30,
                                         **purge)

  def write(self, step: int, metrics: Mapping[str, object]) -> None:
    if not self.enabled:
      return
    row = {'step': int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
    with open(self.path, 'a') as f:
      f.write(json.dumps(row, sort_keys=True) + '\n')
    if self._tb is not None:
      for k, v in row.items():
        if k != 'step' and isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, step)

  def image(self, tag: str, step: int, image: np.ndarray) -> None:
    """A uint8 [H, W, C] picture (C in 1, 3, 4) under `tag` in TensorBoard."""
    if self._tb is not None:
      self._tb.add_image(tag, np.asarray(image), int(step), dataformats='HWC')

  def image_file(self, tag: str, step: int, path: str) -> None:
    """A PNG already written (a matplotlib figure) under `tag` in TensorBoard."""
    if self._tb is not None:
      from PIL import Image
      with Image.open(path) as im:
        self.image(tag, step, np.asarray(im.convert('RGB')))

  def write_summary(self, summary: Mapping[str, object]) -> None:
    if not self.enabled:
      return
    with open(self.summary_path, 'w') as f:
      json.dump({k: _jsonable(v) for k, v in summary.items()}, f, indent=2, sort_keys=True)

  def close(self) -> None:
    if self._tb is not None:
      self._tb.close()


def _summary_writer_class():
  """tensorboardX's SummaryWriter. tensorboardX imports torch at import time, when it is installed,
  only to accept torch tensors, which nothing here passes; hiding torch for that one import saves
  its 2-3 s start-up in every run. A torch imported before or after is untouched."""
  hide = 'torch' not in sys.modules
  if hide:
    sys.modules['torch'] = None  # makes `import torch` raise ImportError
  try:
    from tensorboardX import SummaryWriter
  finally:
    if hide:
      del sys.modules['torch']
  return SummaryWriter


def read_metrics(workdir: str) -> list[dict]:
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [json.loads(l) for l in f if l.strip()]


def to_uint8(images: np.ndarray, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """Float images in `value_range` (or uint8) -> uint8 [N, H, W, C]."""
  images = np.asarray(images)
  if images.dtype == np.uint8:
    return images
  lo, hi = value_range
  return (np.clip((images - lo) / (hi - lo), 0, 1) * 255 + 0.5).astype(np.uint8)


def image_grid(images: np.ndarray, ncol: int | None = None, pad: int = 1,
               value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
  """[N, H, W, C] -> one uint8 grid image [rows*(H+pad)+pad, cols*(W+pad)+pad, C]."""
  images = to_uint8(images, value_range)
  n, h, w, c = images.shape
  ncol = ncol or int(math.ceil(math.sqrt(n)))
  nrow = int(math.ceil(n / ncol))
  grid = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), 255, np.uint8)
  for i in range(n):
    r, col = divmod(i, ncol)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h, pad + col * (w + pad):pad + col * (w + pad) + w] = images[i]
  return grid


def save_png(path: str, image: np.ndarray, scale: int = 1) -> None:
  """Write a uint8 [H, W, C] (C in 1, 3, 4) image, optionally enlarged by `scale` (nearest)."""
  from PIL import Image
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  image = np.asarray(image)
  if scale > 1:
    image = image.repeat(scale, 0).repeat(scale, 1)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  Image.fromarray(image).save(path)


def save_gif(path: str, frame_paths: list[str], duration_ms: int = 300) -> None:
  """Animated GIF from PNG files, in order, looping."""
  from PIL import Image
  frames = [Image.open(p).convert('RGB') for p in frame_paths]
  if not frames:
    return
  frames[0].save(path, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0)
