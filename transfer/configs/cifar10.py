"""cifar10 (10 classes, 50k/10k 32x32 images, upsampled to 224) from ImageNet weights.

  # once, with network access: the data and the torchvision weights
  pip install "advcnn[prepare]" && tfds build cifar10 --file_format=array_record
  python -m launch.convert --source=torchvision --arch=resnet50 \
      --input=resnet50-11ad3fa6.pth --output=weights/resnet50_tv --include_top=false
  # then, offline (fine-tuning is GPU work: ~1,560 steps per epoch)
  python -m launch.transfer --config=transfer/configs/cifar10.py \
      --config.model.weights=weights/resnet50_tv --workdir=runs/cifar10_ft

ARG: fine_tune (default) | feature_extraction | two_phase | partial | scratch | ablation,
optionally with ',quick'. Few labels: --config.data.train_per_class=100.
"""
from transfer.configs.base import tfds_config


def get_config(arg=None):
  c = tfds_config('cifar10', arg, epochs=5, head_epochs=5)
  if c.data.image_size == 224:
    c.data.resize_size = 224  # 32 px sources: no resize-then-crop margin to take
  return c
