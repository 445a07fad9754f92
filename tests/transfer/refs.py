"""Independent reference ResNets for the parity tests.

- `TorchResNet`: a plain torch.nn ResNet written from the torchvision v1.5
  description (stride on the bottleneck's 3x3 conv), with torchvision's
  state_dict names (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, fc).
  torchvision itself is not a dependency.
- `keras_resnet`: keras.applications ResNet50/101/152 on the JAX backend.

Both come with random weights and random BatchNorm running statistics, so a
conversion that mixes up BN tensors cannot pass by accident.
"""

import os

os.environ['KERAS_BACKEND'] = 'jax'  # keras reads this once, at import

import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

STAGE_KEYS = ('stem', 'stage1', 'stage2', 'stage3', 'stage4', 'pool')

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
# torch (torchvision layout).


class TorchBasicBlock(nn.Module):
  expansion = 1

  def __init__(self, in_ch: int, width: int, stride: int):
    super().__init__()
    self.conv1 = nn.Conv2d(in_ch, width, 3, stride, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, 1, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.downsample = None
    if stride != 1 or in_ch != width:
      self.downsample = nn.Sequential(
          nn.Conv2d(in_ch, width, 1, stride, bias=False), nn.BatchNorm2d(width))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = self.bn2(self.conv2(y))
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(y + identity)


class TorchBottleneck(nn.Module):
  expansion = 4

  def __init__(self, in_ch: int, width: int, stride: int):
    super().__init__()
    out_ch = width * 4
    self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
    self.bn1 = nn.BatchNorm2d(width)
    self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
    self.bn2 = nn.BatchNorm2d(width)
    self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
    self.bn3 = nn.BatchNorm2d(out_ch)
    self.downsample = None
    if stride != 1 or in_ch != out_ch:
      self.downsample = nn.Sequential(
          nn.Conv2d(in_ch, out_ch, 1, stride, bias=False),
          nn.BatchNorm2d(out_ch))

  def forward(self, x):
    y = torch.relu(self.bn1(self.conv1(x)))
    y = torch.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    identity = x if self.downsample is None else self.downsample(x)
    return torch.relu(y + identity)


TORCH_DEPTHS = {
    'resnet18': (TorchBasicBlock, (2, 2, 2, 2)),
    'resnet34': (TorchBasicBlock, (3, 4, 6, 3)),
    'resnet50': (TorchBottleneck, (3, 4, 6, 3)),
    'resnet101': (TorchBottleneck, (3, 4, 23, 3)),
    'resnet152': (TorchBottleneck, (3, 8, 36, 3)),
}


class TorchResNet(nn.Module):
  """Takes NCHW input; `forward` returns (logits, {stage name: NHWC array})."""

  def __init__(self, arch: str, num_classes: int):
    super().__init__()
    block, depths = TORCH_DEPTHS[arch]
    self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
    self.bn1 = nn.BatchNorm2d(64)
    self.maxpool = nn.MaxPool2d(3, 2, 1)
    in_ch = 64
    for i, (width, n) in enumerate(zip((64, 128, 256, 512), depths)):
      blocks = []
      for b in range(n):
        stride = 2 if (b == 0 and i > 0) else 1
        blocks.append(block(in_ch, width, stride))
        in_ch = width * block.expansion
      setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
    self.fc = nn.Linear(in_ch, num_classes)

  def forward(self, x, stages: bool = True):
    """With `stages=False` the dict is empty (no host copies, as a timed forward wants)."""
    out = {}

    def keep(name, t):
      if stages:
        out[name] = t.detach().cpu().numpy()

    x = self.maxpool(torch.relu(self.bn1(self.conv1(x))))
    keep('stem', x.permute(0, 2, 3, 1))
    for i in range(1, 5):
      x = getattr(self, f'layer{i}')(x)
      keep(f'stage{i}', x.permute(0, 2, 3, 1))
    x = x.mean(dim=(2, 3))
    keep('pool', x)
    return self.fc(x), out


def torch_resnet(arch: str, num_classes: int, seed: int) -> TorchResNet:
  """Eval-mode reference with random weights and BN statistics."""
  torch.manual_seed(seed)
  model = TorchResNet(arch, num_classes)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5)
        m.bias.normal_(0.0, 0.1)
        m.running_mean.normal_(0.0, 0.1)
        m.running_var.uniform_(0.5, 1.5)
  return model.eval()


def torch_forward(model: TorchResNet, images_nhwc: np.ndarray):
  """(logits [B, K], stages) for NHWC numpy images."""
  with torch.no_grad():
    logits, stages = model(torch.from_numpy(images_nhwc).permute(0, 3, 1, 2))
  return logits.numpy(), stages


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
