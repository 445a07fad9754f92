"""oxford_iiit_pet (37 breeds, 3,680 train / 3,669 test photos) from ImageNet weights.

  # once, with network access: the data and the torchvision weights
  pip install "advcnn[prepare]" && tfds build oxford_iiit_pet --file_format=array_record
  python -m launch.convert --source=torchvision --arch=resnet50 \
      --input=resnet50-11ad3fa6.pth --output=weights/resnet50_tv --include_top=false
  # then, offline
  python -m launch.transfer --config=transfer/configs/oxford_iiit_pet.py \
      --config.model.weights=weights/resnet50_tv --workdir=runs/pets_ft

ARG: fine_tune (default) | feature_extraction | two_phase | partial | scratch | ablation,
optionally with ',quick'.
"""
from transfer.configs.base import tfds_config


def get_config(arg=None):
  return tfds_config('oxford_iiit_pet', arg, epochs=15, head_epochs=10)
