"""Metric and image writers: `metrics.jsonl`, TensorBoard events, `summary.json`, PNG, GIF.

No write loses what was there before: metrics.jsonl grows by whole lines, and summaries and
pictures replace their file atomically. A full disk raises common.diskspace.DiskFull.
"""
from __future__ import annotations

import json
import math
import os
import sys
from typing import Mapping

import numpy as np

from common.diskspace import DiskFull, is_disk_full, message, replace_atomically, writing

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
    self.workdir = workdir
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.summary_path = os.path.join(workdir, 'summary.json')
    self.enabled = enabled  # False on every process but the first of a multi-process run
    self._tb = None
    self._tb_error: OSError | None = None  # a failed TensorBoard write (on its own thread)
    if not enabled:
      return
    if not append and os.path.exists(self.path):
      if start_step > 0:
        self._drop_rows_after(start_step)
      else:
        os.remove(self.path)  # a fresh run in an existing workdir without checkpoints
    if tensorboard:
      purge = {'purge_step': start_step + 1} if start_step > 0 and not append else {}
      with writing('TensorBoard events', os.path.join(workdir, 'tensorboard'), workdir):
        self._tb = _summary_writer_class()(os.path.join(workdir, 'tensorboard'), flush_secs=30,
                                           **purge)
      self._guard_tensorboard()

  def _drop_rows_after(self, step: int) -> None:
    """Keep the rows up to `step` (and no line cut short by a kill or a full disk)."""
    with open(self.path) as f:
      lines = f.readlines()
    keep = [l for l in lines if (row := _parse_row(l)) is not None and row['step'] <= step]
    if keep != lines:
      with writing('metrics.jsonl', self.path, self.workdir):
        replace_atomically(self.path, ''.join(keep))

  def _guard_tensorboard(self) -> None:
    """tensorboardX writes events on its own thread, which dies on a write error (a full disk),
    after which the 11th queued event blocks the run for good. Keep the thread alive; `write`
    then reports the error from the run's own thread."""
    events = getattr(getattr(self._tb._get_file_writer(), 'event_writer', None), '_ev_writer', None)
    if events is None:
      return
    for name in ('write_event', 'flush'):
      original = getattr(events, name)

      def guarded(*args, _original=original):
        try:
          return _original(*args)
        except OSError as e:
          self._tb_error = self._tb_error or e

      setattr(events, name, guarded)

  def write(self, step: int, metrics: Mapping[str, object]) -> None:
    if not self.enabled:
      return
    row = {'step': int(step), **{k: _jsonable(v) for k, v in metrics.items()}}
    with writing(f'the metrics of step {step}', self.path, self.workdir):
      append_line(self.path, json.dumps(row, sort_keys=True) + '\n')
    if self._tb is not None:
      for k, v in row.items():
        if k != 'step' and isinstance(v, (int, float)):
          self._tb.add_scalar(k, v, step)
      if is_disk_full(self._tb_error):
        raise DiskFull(message('TensorBoard events', os.path.join(self.workdir, 'tensorboard'),
                               self.workdir))

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
    text = json.dumps({k: _jsonable(v) for k, v in summary.items()}, indent=2, sort_keys=True)
    with writing('summary.json', self.summary_path, self.workdir):
      replace_atomically(self.summary_path, text)

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


def append_line(path: str, line: str) -> None:
  """Append `line` with one write; on failure the file is cut back to what it was, so no partial
  line is left behind."""
  fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
  try:
    size = os.fstat(fd).st_size
    data = line.encode()
    try:
      if os.write(fd, data) != len(data):
        raise OSError(28, os.strerror(28), path)  # a short write: the device filled up
    except OSError:
      os.ftruncate(fd, size)
      raise
  finally:
    os.close(fd)


def _parse_row(line: str) -> dict | None:
  """A metrics.jsonl line as its row; None for a line that is not a whole row with a step."""
  try:
    row = json.loads(line)
  except ValueError:
    return None
  return row if isinstance(row, dict) and 'step' in row else None


def read_metrics(workdir: str) -> list[dict]:
  """The rows of metrics.jsonl (a last line cut short by a kill is left out)."""
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    return [row for row in map(_parse_row, f) if row is not None]


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


def save_picture(path: str, save, workdir: str | None = None) -> None:
  """`save(file)` writes a picture to an open binary file; it lands at `path` atomically (a
  failed write leaves the old picture), and a full disk is a DiskFull naming it."""
  folder = os.path.dirname(os.path.abspath(path))
  os.makedirs(folder, exist_ok=True)
  if workdir is None:  # pictures live in WORKDIR/images or in the workdir itself
    workdir = os.path.dirname(folder) if os.path.basename(folder) == 'images' else folder
  tmp = f'{path}.tmp'
  with writing(f'the picture {os.path.basename(path)}', path, workdir):
    try:
      with open(tmp, 'wb') as f:
        save(f)
      os.replace(tmp, path)
    finally:
      if os.path.exists(tmp):
        os.remove(tmp)


def save_figure(path: str, fig, dpi: int = FIGURE_DPI) -> None:
  """A matplotlib figure as a PNG at `path` (`save_picture`)."""
  save_picture(path, lambda f: fig.savefig(f, dpi=dpi, format='png'))


def save_png(path: str, image: np.ndarray, scale: int = 1) -> None:
  """Write a uint8 [H, W, C] (C in 1, 3, 4) image, optionally enlarged by `scale` (nearest)."""
  from PIL import Image
  image = np.asarray(image)
  if scale > 1:
    image = image.repeat(scale, 0).repeat(scale, 1)
  if image.ndim == 3 and image.shape[-1] == 1:
    image = image[..., 0]
  save_picture(path, lambda f: Image.fromarray(image).save(f, format='PNG'))


def save_gif(path: str, frame_paths: list[str], duration_ms: int = 300) -> None:
  """Animated GIF from PNG files, in order, looping."""
  from PIL import Image
  frames = [Image.open(p).convert('RGB') for p in frame_paths]
  if not frames:
    return
  save_picture(path, lambda f: frames[0].save(f, format='GIF', save_all=True,
                                              append_images=frames[1:], duration=duration_ms,
                                              loop=0))
