"""Independent torch implementations of networks this project ports, the references its parity
tests and benchmarks compare against. torchvision itself is not a dependency: each network is
written here from its description, with torchvision's (or pytorch-fid's) state_dict names, so
its `state_dict()` saved with torch.save or safetensors is a real file of that format.

- `TorchResNet` / `torch_resnet` (resnet.py): torchvision's ResNet v1.5.
- `TorchVGG` / `torch_vgg` (vgg.py): torchvision's vgg16/vgg19 and their `_bn` variants.
- `TorchInceptionV3` / `torch_inception_v3` (inception.py): torchvision's inception_v3, with
  `AuxLogits` and `transform_input`.
- `TorchFIDInception` / `random_fid_inception` (inception.py): pytorch-fid's FID InceptionV3.

Each comes with random weights and random BatchNorm running statistics, so a conversion that
mixes up BatchNorm tensors cannot pass by accident. torch is imported at the top: only tests and
benchmarks import this package (torch is in the `[torch]` extra, not a core dependency).
"""
from common.torch_reference.inception import (TorchFIDInception, TorchInceptionV3,
                                              random_fid_inception, torch_inception_v3)
from common.torch_reference.resnet import (STAGE_KEYS, TORCH_DEPTHS, TorchBasicBlock,
                                           TorchBottleneck, TorchResNet, torch_forward,
                                           torch_resnet)
from common.torch_reference.vgg import VGG_DEPTHS, TorchVGG, torch_vgg

__all__ = ['STAGE_KEYS', 'TORCH_DEPTHS', 'TorchBasicBlock', 'TorchBottleneck',
           'TorchFIDInception', 'TorchInceptionV3', 'TorchResNet', 'TorchVGG', 'VGG_DEPTHS',
           'random_fid_inception', 'torch_forward', 'torch_inception_v3', 'torch_resnet',
           'torch_vgg']
