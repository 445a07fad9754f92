"""Transfer learning on your own images: a folder with one sub-folder per class.

  python -m launch.convert --source=torchvision --arch=resnet50 --input=resnet50-0676ba61.pth \
      --output=weights/r50
  python -m launch.transfer --config=transfer/configs/folder.py --config.data.path=my_images \
      --config.model.weights=weights/r50 --workdir=runs/my_images

ARG picks the mode: fine_tune (default), feature_extraction, two_phase, partial, scratch, or
ablation (all of them x 3 seeds); `,quick` shrinks everything to run in seconds. Every image of
every class is used: 20% of each class is held out as the test set unless data.test_path names a
test folder with the same sub-folders. Without model.weights the backbone starts random.
"""
from transfer.configs.base import tfds_config


def get_config(arg=None):
  c = tfds_config('folder', arg, epochs=10, head_epochs=10)
  c.data.update(test_fraction=0.2, batch_size=16, eval_batch_size=32)
  if 'quick' in (arg or '').split(','):
    c.data.update(train_per_class=0, batch_size=4, eval_batch_size=8)
    c.model.arch = 'resnet18'
  return c
