"""Transfer learning of pretrained ResNets.

`transfer.preprocess(images_uint8_nhwc, style)` is the public preprocessing
entry point; models live in `transfer.resnet`, weight conversion in
`transfer.convert`.
"""

from transfer.preprocessing import preprocess

__all__ = ['preprocess']
