"""Keras reference networks for the parity tests, and their tolerance check.

- `keras_resnet`: keras.applications ResNet50/101/152 on the JAX backend, with
  random weights and random BatchNorm running statistics, so a conversion that
  mixes up BN tensors cannot pass by accident.
- `keras_backbone`: keras.applications VGG16/VGG19/InceptionV3, randomised alike.
- `write_keras_legacy_h5`: a model's weights in the published files' layout.

The torch references (torchvision-layout ResNet) are in `common.torch_reference`.
"""

import os

os.environ['KERAS_BACKEND'] = 'jax'  # keras reads this once, at import

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.torch_reference import STAGE_KEYS  # noqa: E402

# The reference models are tiny; extra torch threads only spin on a shared CPU.
torch.set_num_threads(1)


def assert_close(actual, expected, what: str, rtol: float = 1e-4) -> float:
  """max|actual - expected| <= rtol * max|expected|; returns the ratio."""
  actual, expected = np.asarray(actual), np.asarray(expected)
  assert actual.shape == expected.shape, (what, actual.shape, expected.shape)
  scale = float(np.max(np.abs(expected)))
  err = float(np.max(np.abs(actual - expected)))
  assert scale > 0, f'{what}: reference is all zeros'
  assert err <= rtol * scale, f'{what}: max diff {err:.3g}, max |ref| {scale:.3g}'
  return err / scale


# ----------------------------------------------------------------------------
# keras.applications.


def keras_resnet(arch: str, num_classes: int, size: int, seed: int):
  """keras.applications ResNet (logits head) with random weights and stats."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  build = {'resnet50': keras.applications.ResNet50,
           'resnet101': keras.applications.ResNet101,
           'resnet152': keras.applications.ResNet152}[arch]
  model = build(weights=None, include_top=True, classes=num_classes,
                input_shape=(size, size, 3), classifier_activation=None)
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    if isinstance(layer, keras.layers.BatchNormalization):
      c = layer.gamma.shape[0]
      layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                         rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      kernel, bias = layer.get_weights()
      layer.set_weights([kernel, rng.normal(0, 0.1, bias.shape)])
  return model


def randomize_keras(model, seed: int):
  """Random biases and BatchNorm parameters/statistics (a BatchNorm without scale has 3)."""
  import keras  # pylint: disable=g-import-not-at-top
  rng = np.random.default_rng(seed)
  for layer in model.layers:
    weights = layer.get_weights()
    if isinstance(layer, keras.layers.BatchNormalization):
      c = weights[0].shape[0]
      new = [rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c), rng.normal(0, 0.1, c),
             rng.uniform(0.5, 1.5, c)]
      layer.set_weights(new[-len(weights):])
    elif isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)) and len(weights) == 2:
      layer.set_weights([weights[0], rng.normal(0, 0.1, weights[1].shape)])
  return model


def keras_backbone(arch: str, num_classes: int, size: int, include_top: bool, seed: int):
  """keras.applications VGG16/VGG19/InceptionV3 (logits head) with random weights and stats."""
  import keras  # pylint: disable=g-import-not-at-top
  keras.utils.set_random_seed(seed)
  build = {'vgg16': keras.applications.VGG16, 'vgg19': keras.applications.VGG19,
           'inception_v3': keras.applications.InceptionV3}[arch]
  model = build(weights=None, include_top=include_top, classes=num_classes,
                input_shape=(size, size, 3), classifier_activation=None)
  return randomize_keras(model, seed)


def keras_outputs(model, images_nhwc: np.ndarray, names: list[str]) -> list[np.ndarray]:
  """The outputs of `model`'s layers `names` for `images_nhwc`."""
  import keras  # pylint: disable=g-import-not-at-top
  probe = keras.Model(model.input, [model.get_layer(n).output for n in names])
  return [np.asarray(o) for o in probe(images_nhwc, training=False)]


def keras_forward(model, images_nhwc: np.ndarray, arch: str):
  """(logits, stages) of a keras ResNet, read from its named layers."""
  import keras  # pylint: disable=g-import-not-at-top
  depths = {'resnet50': (3, 4, 6, 3), 'resnet101': (3, 4, 23, 3),
            'resnet152': (3, 8, 36, 3)}[arch]
  names = (['pool1_pool'] +
           [f'conv{s + 2}_block{n}_out' for s, n in enumerate(depths)] +
           ['avg_pool', 'predictions'])
  probe = keras.Model(model.input,
                      [model.get_layer(n).output for n in names])
  outputs = [np.asarray(o) for o in probe(images_nhwc, training=False)]
  return outputs[-1], dict(zip(STAGE_KEYS, outputs[:-1]))


def write_keras_legacy_h5(model, path, include_top: bool = True) -> None:
  """Writes `model`'s weights in the layout of the published Keras files.

  The published `resnet*_weights_tf_dim_ordering_tf_kernels[_notop].h5` files
  were written by Keras 2's `save_weights`: root attributes `layer_names`
  (bytes, every layer in model order, weightless ones included), `backend`
  and `keras_version`; one group per layer whose `weight_names` attribute
  lists '<layer>/<var>:0' names, each stored as a dataset at that path inside
  the group (so 'conv1_conv/conv1_conv/kernel:0'). The classifier layer is
  called 'probs' there, and the notop files stop before it.
  """
  layers = [l for l in model.layers
            if include_top or l.name not in ('avg_pool', 'predictions')]
  names = ['probs' if l.name == 'predictions' else l.name for l in layers]
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [n.encode('utf8') for n in names]
    f.attrs['backend'] = b'tensorflow'
    f.attrs['keras_version'] = b'2.2.4'
    for layer, name in zip(layers, names):
      group = f.create_group(name)
      weight_names = [f'{name}/{w.name}:0' for w in layer.weights]
      group.attrs['weight_names'] = [n.encode('utf8') for n in weight_names]
      for weight_name, value in zip(weight_names, layer.get_weights()):
        group.create_dataset(weight_name, data=value)
