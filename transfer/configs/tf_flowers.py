"""tf_flowers (5 classes, 3,670 photos; 80/20 split of train) from ImageNet weights.

  # once, with network access: the data and the torchvision weights
  pip install "advcnn[prepare]" && tfds build tf_flowers --file_format=array_record
  python -m launch.convert --source=torchvision --arch=resnet50 \
      --input=resnet50-11ad3fa6.pth --output=weights/resnet50_tv --include_top=false
  # then, offline
  python -m launch.transfer --config=transfer/configs/tf_flowers.py \
      --config.model.weights=weights/resnet50_tv --workdir=runs/flowers_ft
  python -m launch.transfer --config=transfer/configs/tf_flowers.py:ablation \
      --config.model.weights=weights/resnet50_tv --workdir=runs/flowers_ablation

ARG: fine_tune (default) | feature_extraction | two_phase | partial | scratch | ablation,
optionally with ',quick'. Keras weights: --config.model.style=keras and a Keras conversion.
"""
from transfer.configs.base import tfds_config


def get_config(arg=None):
  return tfds_config('tf_flowers', arg, epochs=10, head_epochs=10)
