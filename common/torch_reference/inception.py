"""InceptionV3 in torch, NCHW throughout with torch's own interpolate and pooling semantics.

- `TorchFIDInception` / `random_fid_inception`: pytorch-fid's FID InceptionV3; state_dict keys
  are those of pytorch-fid's `pt_inception-2015-12-05-6726825d.pth`.
- `TorchInceptionV3` / `torch_inception_v3`: torchvision's `inception_v3` (average pools that
  count padding, both last blocks average-pooling, `transform_input`, the auxiliary classifier
  `AuxLogits`), with torchvision's state_dict names.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class BasicConv2d(nn.Module):

  def __init__(self, cin: int, cout: int, **kwargs):
    super().__init__()
    self.conv = nn.Conv2d(cin, cout, bias=False, **kwargs)
    self.bn = nn.BatchNorm2d(cout, eps=0.001)

  def forward(self, x):
    return F.relu(self.bn(self.conv(x)))


def _avg3(x, include_pad: bool = False):
  """3x3 stride-1 average pool; the TF graph (FID) excludes padding, torchvision counts it."""
  return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=include_pad)


class InceptionA(nn.Module):

  def __init__(self, cin: int, pool_features: int, include_pad: bool = False):
    super().__init__()
    self.include_pad = include_pad
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
        self.branch_pool(_avg3(x, self.include_pad)),
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

  def __init__(self, cin: int, c7: int, include_pad: bool = False):
    super().__init__()
    self.include_pad = include_pad
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
    return torch.cat([self.branch1x1(x), b7, bd, self.branch_pool(_avg3(x, self.include_pad))], 1)


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

  def __init__(self, cin: int, pool: str, include_pad: bool = False):
    super().__init__()
    self.pool = pool
    self.include_pad = include_pad
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
      pooled = _avg3(x, self.include_pad)
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
  return randomize(TorchFIDInception(), seed)


def randomize(model: nn.Module, seed: int) -> nn.Module:
  """`model` in eval mode with He-scaled random convs, random BatchNorm parameters and running
  statistics near identity, and random Linear layers (weights / sqrt(fan_in), biases N(0, 1))."""
  gen = torch.Generator().manual_seed(seed)
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


# --- torchvision's inception_v3 ----------------------------------------------------------------


class InceptionAux(nn.Module):
  """torchvision's auxiliary classifier on Mixed_6e: [B, 768, 17, 17] -> [B, classes]."""

  def __init__(self, cin: int, num_classes: int):
    super().__init__()
    self.conv0 = BasicConv2d(cin, 128, kernel_size=1)
    self.conv1 = BasicConv2d(128, 768, kernel_size=5)
    self.fc = nn.Linear(768, num_classes)

  def forward(self, x):
    x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
    return self.fc(F.adaptive_avg_pool2d(x, (1, 1)).flatten(1))


class TorchInceptionV3(nn.Module):
  """torchvision's inception_v3: NCHW ImageNet-normalised input -> (logits, {stage: NHWC}).

  Stages: 'stem' (after the second max pool), 'mixed0'..'mixed10' and 'pool' [B, 2048]. In
  training mode `forward` also runs AuxLogits, as torchvision does (its output is dropped).
  """

  def __init__(self, num_classes: int, transform_input: bool = True, aux_logits: bool = True):
    super().__init__()
    self.transform_input = transform_input
    self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
    self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
    self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
    self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
    self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
    self.Mixed_5b = InceptionA(192, 32, include_pad=True)
    self.Mixed_5c = InceptionA(256, 64, include_pad=True)
    self.Mixed_5d = InceptionA(288, 64, include_pad=True)
    self.Mixed_6a = InceptionB(288)
    self.Mixed_6b = InceptionC(768, 128, include_pad=True)
    self.Mixed_6c = InceptionC(768, 160, include_pad=True)
    self.Mixed_6d = InceptionC(768, 160, include_pad=True)
    self.Mixed_6e = InceptionC(768, 192, include_pad=True)
    self.AuxLogits = InceptionAux(768, num_classes) if aux_logits else None
    self.Mixed_7a = InceptionD(768)
    self.Mixed_7b = InceptionE(1280, 'avg', include_pad=True)
    self.Mixed_7c = InceptionE(2048, 'avg', include_pad=True)
    self.dropout = nn.Dropout(0.5)
    self.fc = nn.Linear(2048, num_classes)

  def forward(self, x, stages: bool = True):
    out = {}

    def keep(name, t):
      if stages:
        out[name] = t.detach().permute(0, 2, 3, 1).numpy() if t.ndim == 4 else t.detach().numpy()

    if self.transform_input:
      mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
      x = torch.cat([x[:, i:i + 1] * (std[i] / 0.5) + (mean[i] - 0.5) / 0.5 for i in range(3)],
                    1)
    x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
    x = F.max_pool2d(x, kernel_size=3, stride=2)
    keep('stem', x)
    names = ('Mixed_5b', 'Mixed_5c', 'Mixed_5d', 'Mixed_6a', 'Mixed_6b', 'Mixed_6c', 'Mixed_6d',
             'Mixed_6e', 'Mixed_7a', 'Mixed_7b', 'Mixed_7c')
    for i, name in enumerate(names):
      x = getattr(self, name)(x)
      keep(f'mixed{i}', x)
      if name == 'Mixed_6e' and self.training and self.AuxLogits is not None:
        self.AuxLogits(x)
    pool = F.adaptive_avg_pool2d(x, (1, 1)).flatten(1)
    keep('pool', pool)
    return self.fc(self.dropout(pool)), out


def torch_inception_v3(num_classes: int, seed: int, transform_input: bool = True
                       ) -> TorchInceptionV3:
  """torchvision's inception_v3 in eval mode with random weights and BatchNorm statistics."""
  return randomize(TorchInceptionV3(num_classes, transform_input), seed)
