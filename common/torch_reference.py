"""Independent torch implementations of networks this project ports, the references its parity
tests and benchmarks compare against.

- `TorchResNet` / `torch_resnet`: a plain torch.nn ResNet written from the torchvision v1.5
  description (stride on the bottleneck's 3x3 conv), with torchvision's state_dict names (conv1,
  bn1, layer1.0.conv1, layer1.0.downsample.0, fc). torchvision itself is not a dependency.
- `TorchFIDInception` / `random_fid_inception`: pytorch-fid's FID InceptionV3, NCHW throughout
  with torch's own interpolate and pooling semantics; state_dict keys are those of pytorch-fid's
  `pt_inception-2015-12-05-6726825d.pth`.

Both come with random weights and random BatchNorm running statistics, so a conversion that
mixes up BatchNorm tensors cannot pass by accident. torch is imported at the top: only tests and
benchmarks import this module (torch is in the `[torch]` extra, not a core dependency).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Stage names of `TorchResNet.forward`'s dict (and of the flax ResNet's captured stages).
STAGE_KEYS = ('stem', 'stage1', 'stage2', 'stage3', 'stage4', 'pool')


# --- ResNet (torchvision layout) ---------------------------------------------------------------


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


# --- FID InceptionV3 (pytorch-fid layout) ------------------------------------------------------


class BasicConv2d(nn.Module):

  def __init__(self, cin: int, cout: int, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _avg3(x):
  return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=False)


class InceptionA(nn.Module):

  def __init__(self, cin: int, pool_features: int):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch5x5_1 = BasicConv2d(cin, 48, kernel_size=1)
    self.branch5x5_2 = BasicConv2d(48, 64, kernel_size=5, padding=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, padding=1)
    self.branch_pool = BasicConv2d(cin, pool_features, kernel_size=1)

  def forward(self, x):
    return torch.cat([
        self.branch1x1(x),
        self.branch5x5_2(self.branch5x5_1(x)),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        self.branch_pool(_avg3(x)),
    ], 1)


class InceptionB(nn.Module):

  def __init__(self, cin: int):
    super().__init__()
    self.branch3x3 = BasicConv2d(cin, 384, kernel_size=3, stride=2)
    self.branch3x3dbl_1 = BasicConv2d(cin, 64, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(64, 96, kernel_size=3, padding=1)
    self.branch3x3dbl_3 = BasicConv2d(96, 96, kernel_size=3, stride=2)

  def forward(self, x):
    return torch.cat([
        self.branch3x3(x),
        self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x))),
        F.max_pool2d(x, kernel_size=3, stride=2),
    ], 1)


class InceptionC(nn.Module):

  def __init__(self, cin: int, c7: int):
    super().__init__()
    self.branch1x1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7_2 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7_3 = BasicConv2d(c7, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_1 = BasicConv2d(cin, c7, kernel_size=1)
    self.branch7x7dbl_2 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_3 = BasicConv2d(c7, c7, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7dbl_4 = BasicConv2d(c7, c7, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7dbl_5 = BasicConv2d(c7, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    b7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
    bd = self.branch7x7dbl_1(x)
    for layer in (self.branch7x7dbl_2, self.branch7x7dbl_3, self.branch7x7dbl_4,
                  self.branch7x7dbl_5):
      bd = layer(bd)
    return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg3(x))], 1)


class InceptionD(nn.Module):

  def __init__(self, cin: int):
    super().__init__()
    self.branch3x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch3x3_2 = BasicConv2d(192, 320, kernel_size=3, stride=2)
    self.branch7x7x3_1 = BasicConv2d(cin, 192, kernel_size=1)
    self.branch7x7x3_2 = BasicConv2d(192, 192, kernel_size=(1, 7), padding=(0, 3))
    self.branch7x7x3_3 = BasicConv2d(192, 192, kernel_size=(7, 1), padding=(3, 0))
    self.branch7x7x3_4 = BasicConv2d(192, 192, kernel_size=3, stride=2)

  def forward(self, x):
    b7 = x
    for layer in (self.branch7x7x3_1, self.branch7x7x3_2, self.branch7x7x3_3,
                  self.branch7x7x3_4):
      b7 = layer(b7)
    return torch.cat([self.branch3x3_2(self.branch3x3_1(x)), b7,
                      F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):

  def __init__(self, cin: int, pool: str):
    super().__init__()
    self.pool = pool
    self.branch1x1 = BasicConv2d(cin, 320, kernel_size=1)
    self.branch3x3_1 = BasicConv2d(cin, 384, kernel_size=1)
    self.branch3x3_2a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3_2b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch3x3dbl_1 = BasicConv2d(cin, 448, kernel_size=1)
    self.branch3x3dbl_2 = BasicConv2d(448, 384, kernel_size=3, padding=1)
    self.branch3x3dbl_3a = BasicConv2d(384, 384, kernel_size=(1, 3), padding=(0, 1))
    self.branch3x3dbl_3b = BasicConv2d(384, 384, kernel_size=(3, 1), padding=(1, 0))
    self.branch_pool = BasicConv2d(cin, 192, kernel_size=1)

  def forward(self, x):
    b3 = self.branch3x3_1(x)
    b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
    bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
    bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
    if self.pool == 'avg':
      pooled = _avg3(x)
    else:
      pooled = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
    return torch.cat([self.branch1x1(x), b3, bd, self.branch_pool(pooled)], 1)


class TorchFIDInception(nn.Module):
  """images [B, 3, H, W] in [0, 1] -> (pool [B, 2048], fc logits [B, 1008] with bias)."""

  def __init__(self):
    super().__init__()
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = InceptionA(192, 32)
    self.Mixed_5c = InceptionA(256, 64)
    self.Mixed_5d = InceptionA(288, 64)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = InceptionC(768, 128)
    self.Mixed_6c = InceptionC(768, 160)
    self.Mixed_6d = InceptionC(768, 160)
    self.Mixed_6e = InceptionC(768, 192)
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = InceptionE(1280, 'avg')
    self.Mixed_7c = InceptionE(2048, 'max')
    self.fc = nn.Linear(2048, 1008)

  def forward(self, x):
    x = F.interpolate(x, size=(299, 299), mode='bilinear', align_corners=False)
    x = 2 * x - 1
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b,
                  self.Mixed_6c, self.Mixed_6d, self.Mixed_6e, self.Mixed_7a, self.Mixed_7b,
                  self.Mixed_7c):
      x = block(x)
    pool = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    return pool, self.fc(pool)


def random_fid_inception(seed: int = 0) -> TorchFIDInception:
  """The network in eval mode with random weights and random BatchNorm running statistics.

  He-scaled convolutions and BN statistics near identity keep activations O(1) through the 94
  layers, so a relative comparison of the features is meaningful.
  """
  gen = torch.Generator().manual_seed(seed)
  model = TorchFIDInception()
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, nn.Conv2d):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
      elif isinstance(m, nn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(0.5 + torch.rand(n, generator=gen))
        m.bias.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
      elif isinstance(m, nn.Linear):
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen) / m.in_features ** 0.5)
        m.bias.copy_(torch.randn(m.bias.shape, generator=gen))
  return model.eval()
