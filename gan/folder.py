"""A folder of one's own images as a GAN dataset (`data.name=folder`, `data.path=DIR`).

Flat (images anywhere under DIR, unconditional) or one sub-folder per class (images under each,
classes sorted by name, for conditional runs). Every image is checked when the folder is scanned
(its header: readable, and grey or colour like the rest), decoded when a batch needs it, and made
an S x S square: the shorter side resized to S (Lanczos), the centre cropped. Problems are
one-line UserErrors that name the file.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os

import numpy as np

from common.errors import UserError

IMAGE_EXTENSIONS = ('.bmp', '.gif', '.jpeg', '.jpg', '.png', '.tif', '.tiff', '.webp')
# Pillow modes read as one grey channel; every other mode is read as RGB.
GREY_MODES = ('1', 'L', 'LA', 'I', 'I;16', 'I;16B', 'I;16L', 'F')


@dataclasses.dataclass(frozen=True)
class Folder:
  """What a scan found: files, labels [N] (-1 when flat), class names, channels (1 or 3)."""
  root: str
  files: tuple[str, ...]
  labels: np.ndarray
  classes: tuple[str, ...]
  channels: int

  def digest(self) -> str:
    """Identifies the folder's content listing (names, sizes, times), for caches."""
    h = hashlib.sha256()
    for f in self.files:
      st = os.stat(f)
      h.update(f'{os.path.relpath(f, self.root)}:{st.st_size}:{st.st_mtime_ns}\n'.encode())
    return h.hexdigest()[:12]


def _images_under(path: str) -> list[str]:
  out = []
  for dirpath, dirnames, filenames in os.walk(path):
    dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
    out += [os.path.join(dirpath, f) for f in sorted(filenames)
            if not f.startswith('.') and f.lower().endswith(IMAGE_EXTENSIONS)]
  return out


def _mode(path: str) -> str:
  from PIL import Image
  try:
    with Image.open(path) as im:
      return im.mode
  except Exception as e:  # pillow raises many types for a file that is not an image
    raise UserError(f'cannot read image {path} ({type(e).__name__}); fix or remove it') from None


def scan(root: str) -> Folder:
  """The images under `root`: flat, or one sub-folder per class when `root` holds only
  sub-folders. Refuses no images, unreadable headers and a mix of grey and colour images."""
  if not root:
    raise UserError('data.name=folder needs data.path: a folder of images (flat, or one '
                    'sub-folder per class)')
  if not os.path.isdir(root):
    raise UserError(f'image folder {root!r} does not exist; set data.path to a folder of images')
  entries = sorted(e for e in os.listdir(root) if not e.startswith('.'))
  top = [os.path.join(root, e) for e in entries if e.lower().endswith(IMAGE_EXTENSIONS)
         and os.path.isfile(os.path.join(root, e))]
  subdirs = [e for e in entries if os.path.isdir(os.path.join(root, e))]
  if top or not subdirs:
    files, labels, classes = _images_under(root), None, ()
  else:
    files, labels, classes = [], [], tuple(subdirs)
    for c, name in enumerate(subdirs):
      found = _images_under(os.path.join(root, name))
      if not found:
        raise UserError(f'class folder {os.path.join(root, name)} holds no images '
                        f'({", ".join(IMAGE_EXTENSIONS)}); add some or remove it')
      files += found
      labels += [c] * len(found)
  if not files:
    raise UserError(f'image folder {root} holds no images ({", ".join(IMAGE_EXTENSIONS)}); '
                    'point data.path at a folder of images')
  grey = [_mode(f) in GREY_MODES for f in files]
  if any(grey) and not all(grey):
    odd = grey.index(not grey[0])
    raise UserError(f'image folder {root} mixes grey and colour images: {files[odd]} is '
                    f'{"grey" if grey[odd] else "colour"} but {files[0]} is not; convert them '
                    'to one mode')
  labels = np.full(len(files), -1, np.int32) if labels is None else np.asarray(labels, np.int32)
  return Folder(root, tuple(files), labels, classes, 1 if grey[0] else 3)


def fit_square(image: np.ndarray, size: int) -> np.ndarray:
  """uint8 [H, W, C] -> [size, size, C]: shorter side resized to `size` (Lanczos), centre crop."""
  from PIL import Image
  h, w, c = image.shape
  if (h, w) != (size, size):
    scale = size / min(h, w)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))  # PIL: (width, height)
    pil = Image.fromarray(image[..., 0] if c == 1 else image)
    resized = np.asarray(pil.resize(new, Image.LANCZOS)).reshape(new[1], new[0], c)
    top, left = (new[1] - size) // 2, (new[0] - size) // 2
    image = resized[top:top + size, left:left + size]
  return image


def read_image(path: str, channels: int) -> np.ndarray:
  """uint8 [H, W, channels] of the image at `path`, or a UserError naming it."""
  from PIL import Image
  try:
    with Image.open(path) as im:
      image = np.asarray(im.convert('L' if channels == 1 else 'RGB'))
  except Exception as e:  # pillow raises many types for a truncated or corrupt file
    raise UserError(f'cannot decode image {path} ({type(e).__name__}); fix or remove it') from None
  return image[..., None] if image.ndim == 2 else image


class FolderSource:
  """grain-ready records {'image': float32 [S, S, C] in [-1, 1], 'label': int32} of a scan."""

  def __init__(self, folder: Folder, size: int):
    self.folder = folder
    self.size = size

  def __len__(self) -> int:
    return len(self.folder.files)

  def gather(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    images = [fit_square(read_image(self.folder.files[int(i)], self.folder.channels), self.size)
              for i in indices]
    x = np.stack(images).astype(np.float32) / 127.5 - 1.0
    return {'image': x, 'label': self.folder.labels[np.asarray(indices, np.int64)]}
