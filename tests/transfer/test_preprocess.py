"""transfer.preprocess against Keras' imagenet_utils, and the crop transforms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import transfer
from common.errors import UserError
from tests.transfer import refs  # noqa: F401  (selects keras' JAX backend)
from transfer import preprocessing


def _uint8_images(shape, seed=0):
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _smooth_uint8(h, w, seed=0):
  """A smooth RGB image, so resampling methods can only differ slightly."""
  rng = np.random.default_rng(seed)
  y, x = np.mgrid[0:h, 0:w] / max(h, w)
  channels = [np.sin(2 * np.pi * (a * x + b * y) + c)
              for a, b, c in rng.uniform(0.5, 2.0, (3, 3))]
  return np.round(127.5 + 120 * np.stack(channels, -1)).astype(np.uint8)


@pytest.mark.parametrize('style, keras_mode', [('torchvision', 'torch'),
                                               ('keras', 'caffe'), ('tf', 'tf')])
def test_matches_keras_imagenet_utils(style, keras_mode):
  from keras.applications import imagenet_utils  # pylint: disable=g-import-not-at-top
  images = _uint8_images((2, 8, 10, 3))
  expected = imagenet_utils.preprocess_input(
      images.astype(np.float32), mode=keras_mode, data_format='channels_last')
  got = transfer.preprocess(images, style)
  assert got.dtype == jnp.float32 and got.shape == images.shape
  np.testing.assert_allclose(np.asarray(got), np.asarray(expected), rtol=1e-6,
                             atol=1e-4)


def test_package_exposes_the_function():
  assert transfer.preprocess is preprocessing.preprocess
  assert callable(transfer.preprocess)


@pytest.mark.parametrize('images, found', [
    (np.zeros((2, 8, 8, 3), np.float32), 'float32 with shape (2, 8, 8, 3)'),
    (np.zeros((2, 8, 8, 4), np.uint8), 'uint8 with shape (2, 8, 8, 4)'),
    (np.zeros((8, 8, 3), np.uint8), 'uint8 with shape (8, 8, 3)'),
    ([[1, 2, 3]], 'None with shape ()'),
])
def test_rejects_non_uint8_nhwc(images, found):
  with pytest.raises(UserError) as info:
    transfer.preprocess(images, 'torchvision')
  message = str(info.value)
  assert found in message and 'uint8 RGB images [B, H, W, 3]' in message


def test_rejects_unknown_style():
  with pytest.raises(UserError, match="unknown preprocessing style 'caffe'; "
                                      "choose one of: keras, tf, torchvision"):
    transfer.preprocess(_uint8_images((1, 4, 4, 3)), 'caffe')


# ----------------------------------------------------------------------------
# Eval resize + centre crop.


def test_center_crop_without_resize_is_a_slice():
  images = _uint8_images((2, 256, 320, 3))
  out = preprocessing.resize_center_crop(images, resize=256, crop=224)
  np.testing.assert_array_equal(out, images[:, 16:240, 48:272])


@pytest.mark.parametrize('h, w', [(60, 80), (80, 60), (48, 48)])
def test_resize_close_to_torch_antialiased_bilinear(h, w):
  """torch's antialiased bilinear interpolate is an independent resampler
  documented to approximate PIL; smooth images keep them within rounding."""
  image = _smooth_uint8(h, w)
  out = preprocessing.resize_center_crop(image[None], resize=32, crop=24)
  assert out.shape == (1, 24, 24, 3) and out.dtype == np.uint8
  size = (32, int(32 * w / h)) if h <= w else (int(32 * h / w), 32)
  ref = F.interpolate(
      torch.from_numpy(image).permute(2, 0, 1)[None].float(), size=size,
      mode='bilinear', antialias=True, align_corners=False)[0]
  ref = ref.permute(1, 2, 0).round().clamp(0, 255).numpy()
  top, left = round((size[0] - 24) / 2), round((size[1] - 24) / 2)
  ref = ref[top:top + 24, left:left + 24]
  diff = np.abs(out[0].astype(np.float32) - ref)
  assert diff.max() <= 3 and diff.mean() < 0.5, (diff.max(), diff.mean())


def test_resize_rejects_crop_larger_than_resize():
  with pytest.raises(UserError, match='crop must be in'):
    preprocessing.resize_center_crop(_uint8_images((1, 8, 8, 3)), 8, 16)


# ----------------------------------------------------------------------------
# Train-time random resized crop + flip. One image shape throughout keeps the
# number of XLA compilations (the cost of these tests on CPU) small.

CROP_BATCH = (8, 16, 16, 3)


@pytest.mark.slow
def test_random_crop_shapes_and_determinism():
  images = jnp.asarray(_uint8_images(CROP_BATCH))
  fn = jax.jit(preprocessing.random_resized_crop_flip, static_argnums=(2,))
  a = fn(jax.random.key(0), images, 8)
  b = fn(jax.random.key(0), images, 8)
  c = fn(jax.random.key(1), images, 8)
  assert a.shape == (8, 8, 8, 3) and a.dtype == jnp.uint8
  np.testing.assert_array_equal(a, b)
  assert np.any(np.asarray(a) != np.asarray(c))
  floats = preprocessing.random_resized_crop_flip(
      jax.random.key(0), images.astype(jnp.float32), 8)
  assert floats.dtype == jnp.float32
  assert float(jnp.max(jnp.abs(floats - a))) <= 0.5 + 1e-3


def test_full_crop_is_identity_or_mirror():
  images = _uint8_images(CROP_BATCH, seed=2)
  out = np.asarray(preprocessing.random_resized_crop_flip(
      jax.random.key(3), jnp.asarray(images), 16, scale=(1.0, 1.0),
      ratio=(1.0, 1.0)))
  same = [np.array_equal(o, i) for o, i in zip(out, images)]
  mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
  assert all(s or m for s, m in zip(same, mirrored))
  assert any(same) and any(mirrored)


def test_quarter_area_crop_is_a_window_of_the_input():
  """scale 1/4 and ratio 1 of a 16x16 image is an 8x8 window; at size 8 no
  resampling happens, so each output must equal some window (or mirror)."""
  images = _uint8_images(CROP_BATCH, seed=5)
  out = np.asarray(preprocessing.random_resized_crop_flip(
      jax.random.key(4), jnp.asarray(images), 8, scale=(0.25, 0.25),
      ratio=(1.0, 1.0)))
  corners = set()
  for o, image in zip(out, images):
    hits = [(t, l, flipped) for t in range(9) for l in range(9)
            for flipped in (False, True)
            if np.array_equal(o[:, ::-1] if flipped else o,
                              image[t:t + 8, l:l + 8])]
    assert hits, 'output is not a window of its input'
    corners.add(hits[0][:2])
  assert len(corners) > 1  # positions are random, not always the same


def test_random_crop_rejects_non_batches():
  with pytest.raises(UserError, match=r'\[B, H, W, C\]'):
    preprocessing.random_resized_crop_flip(jax.random.key(0),
                                           jnp.zeros((16, 16, 3)), 8)
