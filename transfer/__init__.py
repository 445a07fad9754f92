"""Transfer learning of pretrained ResNets, VGGs and InceptionV3.

`transfer.create_model(arch, num_classes, style)` builds any backbone by torchvision's arch name
(`transfer.models`); `transfer.preprocess(images_uint8_nhwc, style)` is the public preprocessing
entry point; weight conversion lives in `transfer.convert`.
"""

from transfer.models import create_model
from transfer.preprocessing import preprocess

__all__ = ['create_model', 'preprocess']
