"""Image preprocessing matching each weight source, plus eval/train crops.

`preprocess` turns uint8 RGB images into the float input a style's weights
were trained on:
- 'torchvision': x / 255, minus ImageNet mean (0.485, 0.456, 0.406), divided
  by std (0.229, 0.224, 0.225), RGB order.
- 'keras' (Keras 'caffe' mode: ResNet, VGG): RGB -> BGR, minus (103.939,
  116.779, 123.68) in BGR order, no scaling.
- 'tf' (Keras 'tf' mode: InceptionV3): x / 127.5 - 1, in [-1, 1], RGB order.

Crops work on uint8 images before `preprocess`: `resize_center_crop` is the
usual eval transform (host side, pillow, like torchvision's PIL path);
`random_resized_crop_flip` is the train-time augmentation, in jax so it can
run jitted on device batches (resampling as two small matrix products).
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

from common.errors import UserError, unknown_name

PREPROCESS_STYLES = ('torchvision', 'keras', 'tf')
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def _check_uint8_nhwc(images: Any, what: str) -> None:
  dtype = getattr(images, 'dtype', None)
  shape = tuple(getattr(images, 'shape', ()))
  if dtype != np.uint8 or len(shape) != 4 or shape[-1] != 3:
    raise UserError(f'{what} expects uint8 RGB images [B, H, W, 3]; got '
                    f'{dtype} with shape {shape}; convert to uint8 NHWC first')


def preprocess(images: Any, style: str) -> jnp.ndarray:
  """uint8 RGB [B, H, W, 3] -> float32 [B, H, W, 3] input for `style`."""
  if style not in PREPROCESS_STYLES:
    raise unknown_name('preprocessing style', style, PREPROCESS_STYLES)
  _check_uint8_nhwc(images, 'preprocess')
  x = jnp.asarray(images).astype(jnp.float32)
  if style == 'torchvision':
    return (x / 255.0 - jnp.asarray(TORCH_MEAN)) / jnp.asarray(TORCH_STD)
  if style == 'tf':
    return x / 127.5 - 1.0
  return x[..., ::-1] - jnp.asarray(CAFFE_MEAN_BGR)


def resize_center_crop(images: Any, resize: int = 256, crop: int = 224
                       ) -> np.ndarray:
  """Eval transform: shorter side to `resize` (bilinear), centre `crop` square.

  uint8 [B, H, W, 3] -> uint8 [B, crop, crop, 3]. Sizes and rounding follow
  torchvision's Resize(int) + CenterCrop on PIL images.
  """
  _check_uint8_nhwc(images, 'resize_center_crop')
  if not 0 < crop <= resize:
    raise UserError(f'crop must be in (0, resize]; got crop={crop}, '
                    f'resize={resize}')
  images = np.asarray(images)
  out = np.empty((images.shape[0], crop, crop, 3), np.uint8)
  for i, image in enumerate(images):
    h, w = image.shape[:2]
    # torchvision: the long side becomes int(resize * long / short).
    if h <= w:
      size = (int(resize * w / h), resize)
    else:
      size = (resize, int(resize * h / w))
    pil = Image.fromarray(image)
    if pil.size != size:
      pil = pil.resize(size, Image.BILINEAR)
    resized = np.asarray(pil)
    top = int(round((resized.shape[0] - crop) / 2.0))
    left = int(round((resized.shape[1] - crop) / 2.0))
    out[i] = resized[top:top + crop, left:left + crop]
  return out


def _crop_boxes(key: jax.Array, batch: int, height: int, width: int,
                scale: tuple[float, float], ratio: tuple[float, float],
                attempts: int = 10) -> jnp.ndarray:
  """Random-resized-crop boxes [B, 4] as (top, left, h, w) floats.

  Like torchvision: up to `attempts` (area, aspect) draws per image, the first
  that fits wins; if none fits, the whole image is used.
  """
  k_area, k_ratio, k_top, k_left = jax.random.split(key, 4)
  area = height * width * jax.random.uniform(
      k_area, (batch, attempts), minval=scale[0], maxval=scale[1])
  log_ratio = jax.random.uniform(k_ratio, (batch, attempts),
                                 minval=np.log(ratio[0]),
                                 maxval=np.log(ratio[1]))
  aspect = jnp.exp(log_ratio)
  w = jnp.round(jnp.sqrt(area * aspect))
  h = jnp.round(jnp.sqrt(area / aspect))
  fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
  first = jnp.argmax(fits, axis=1)
  any_fits = jnp.any(fits, axis=1)
  pick = lambda a: jnp.take_along_axis(a, first[:, None], axis=1)[:, 0]
  h = jnp.where(any_fits, pick(h), height)
  w = jnp.where(any_fits, pick(w), width)
  top = jnp.floor(jax.random.uniform(k_top, (batch,)) * (height - h + 1))
  left = jnp.floor(jax.random.uniform(k_left, (batch,)) * (width - w + 1))
  return jnp.stack([top, left, h, w], axis=1)


def _resample_matrix(start: jnp.ndarray, length: jnp.ndarray, size: int,
                     n_in: int) -> jnp.ndarray:
  """[B, size, n_in] weights taking input span [start, start + length) to
  `size` samples: a triangle (bilinear) filter, widened when shrinking so it
  antialiases like PIL; taps outside the image are dropped and rows
  renormalised."""
  step = length / size  # [B]
  centres = start[:, None] + (jnp.arange(size) + 0.5) * step[:, None] - 0.5
  width = jnp.maximum(step, 1.0)[:, None, None]
  taps = jnp.arange(n_in, dtype=jnp.float32)
  weights = jnp.maximum(0.0, 1.0 - jnp.abs(taps - centres[..., None]) / width)
  return weights / jnp.sum(weights, axis=-1, keepdims=True)


def random_resized_crop_flip(key: jax.Array, images: jnp.ndarray,
                             size: int = 224,
                             scale: tuple[float, float] = (0.08, 1.0),
                             ratio: tuple[float, float] = (3 / 4, 4 / 3)
                             ) -> jnp.ndarray:
  """Train augmentation: random resized crop, then random horizontal flip.

  [B, H, W, C] -> [B, size, size, C], one crop and one coin flip per image,
  all drawn from `key`. uint8 input gives uint8 output (rounded) so
  `preprocess` can follow; float input stays float. Jittable with `size`,
  `scale` and `ratio` static.
  """
  if images.ndim != 4:
    raise UserError(f'random_resized_crop_flip expects images [B, H, W, C]; '
                    f'got shape {tuple(images.shape)}')
  batch, height, width, _ = images.shape
  k_box, k_flip = jax.random.split(key)
  top, left, h, w = _crop_boxes(k_box, batch, height, width, scale, ratio).T
  rows = _resample_matrix(top, h, size, height)
  cols = _resample_matrix(left, w, size, width)
  # Flipping the column weights mirrors the crop at no extra cost.
  flip = jax.random.bernoulli(k_flip, 0.5, (batch,))
  cols = jnp.where(flip[:, None, None], cols[:, ::-1], cols)
  out = jnp.einsum('biy,byxc,bjx->bijc', rows, images.astype(jnp.float32),
                   cols, precision=jax.lax.Precision.HIGHEST)
  if images.dtype == jnp.uint8:
    return jnp.clip(jnp.round(out), 0, 255).astype(jnp.uint8)
  return out.astype(images.dtype)
