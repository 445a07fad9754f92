"""torchvision's ResNet written from its v1.5 description (stride on the bottleneck's 3x3 conv),
with torchvision's state_dict names (conv1, bn1, layer1.0.conv1, layer1.0.downsample.0, fc).
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

# Stage names of `TorchResNet.forward`'s dict (and of the flax ResNet's captured stages).
STAGE_KEYS = ('stem', 'stage1', 'stage2', 'stage3', 'stage4', 'pool')


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


