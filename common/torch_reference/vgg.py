"""torchvision's VGG (`vgg16`, `vgg19` and their `_bn` variants) written from its description,
with torchvision's state_dict names: `features.<index>` for the Sequential of convs, BatchNorms,
ReLUs and max pools, `classifier.0/3/6` for the three Linear layers.
"""
from __future__ import annotations

import torch
from torch import nn

# Convs per block of each arch (widths 64, 128, 256, 512, 512).
VGG_DEPTHS = {'vgg16': (2, 2, 3, 3, 3), 'vgg19': (2, 2, 4, 4, 4)}


class TorchVGG(nn.Module):
  """NCHW input -> (logits, {'block1'..'block5': NHWC after each pool, 'pool': [B, 25088]}).

  With include_top=False there is no `classifier` (a features-only file) and the first output
  is the pooled, flattened features.
  """

  def __init__(self, arch: str, num_classes: int, include_top: bool = True):
    super().__init__()
    batch_norm = arch.endswith('_bn')
    layers, cin = [], 3
    for width, n in zip((64, 128, 256, 512, 512), VGG_DEPTHS[arch.removesuffix('_bn')]):
      for _ in range(n):
        layers.append(nn.Conv2d(cin, width, kernel_size=3, padding=1))
        if batch_norm:
          layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        cin = width
      layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
    self.features = nn.Sequential(*layers)
    self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
    self.classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(4096, num_classes)) if include_top else None

  def forward(self, x, stages: bool = True):
    out, block = {}, 1
    for layer in self.features:
      x = layer(x)
      if isinstance(layer, nn.MaxPool2d):
        if stages:
          out[f'block{block}'] = x.detach().permute(0, 2, 3, 1).numpy()
        block += 1
    x = torch.flatten(self.avgpool(x), 1)
    if stages:
      out['pool'] = x.detach().numpy()
    return (x if self.classifier is None else self.classifier(x)), out


def torch_vgg(arch: str, num_classes: int, seed: int, include_top: bool = True) -> TorchVGG:
  """Eval-mode VGG with He-scaled random weights, random biases and BatchNorm statistics."""
  gen = torch.Generator().manual_seed(seed)
  model = TorchVGG(arch, num_classes, include_top)
  with torch.no_grad():
    for m in model.modules():
      if isinstance(m, (nn.Conv2d, nn.Linear)):
        fan_in = m.weight[0].numel()
        m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * (2.0 / fan_in) ** 0.5)
        m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=gen))
      elif isinstance(m, nn.BatchNorm2d):
        n = m.num_features
        m.weight.copy_(0.5 + torch.rand(n, generator=gen))
        m.bias.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_mean.copy_(0.1 * torch.randn(n, generator=gen))
        m.running_var.copy_(0.5 + torch.rand(n, generator=gen))
  return model.eval()
