"""The hands-on "Transfer Learning with Keras and the VGG16 Model" on 10 classes of Food-101.

Keras' ImageNet VGG16 without its top, a new head (Flatten, Dense 4096, Dense 1072, Dropout 0.2,
softmax), Keras-style augmentation (rotation 90, width/height shift 0.5, brightness 0.1-0.7,
horizontal and vertical flips), 15% of the training images held out for validation, the best
weights by validation loss kept and early stopping after 10 epochs without improvement; the
selected weights are tested once on Food-101's validation split (its test set here). With no
ARG it compares, over 3 seeds, the same network trained from scratch, VGG16 as a frozen feature
extractor (Adam 1e-3) and VGG16 with its last block fine-tuned (Adam 1e-4), each with its
confusion matrix (runs/*/images/confusion.png), in one table and plot:

  tfds build food101 --file_format=array_record          # once (needs tensorflow, a network)
  python -m launch.convert --source=keras --arch=vgg16 --include_top=false \\
      --input=vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5 --output=weights/vgg16_keras
  python -m launch.transfer --config=transfer/configs/food101_vgg16.py \\
      --config.model.weights=weights/vgg16_keras --workdir=runs/food101_vgg16

ARG may name one mode instead (`:partial`, `:feature_extraction`, `:scratch`); `,quick` shrinks
everything (32 px, 2 epochs, 1 seed) to check a setup in minutes. data.class_subset picks the
classes (default 0-9: the first ten, apple_pie .. breakfast_burrito); other TFDS datasets and
image folders take the same options (--config.data.name=folder --config.data.path=DIR).
"""
from transfer.configs.base import base_config, parse_arg

MODES = ('scratch', 'feature_extraction', 'partial')


def get_config(arg=None):
  mode, quick = parse_arg(arg, ('ablation',))
  c = base_config()
  c.mode = 'partial' if mode == 'ablation' else mode
  # Keras resizes each image to 224x224; here the shorter side goes to 224 and the centre is
  # cropped, so no image is distorted.
  c.data.update(name='food101', class_subset='0-9', image_size=224, resize_size=224,
                augment=False, rotation_range=90.0, width_shift_range=0.5,
                height_shift_range=0.5, brightness_range=(0.1, 0.7), horizontal_flip=True,
                vertical_flip=True, val_fraction=0.15, batch_size=64, eval_batch_size=64)
  c.model.update(arch='vgg16', style='keras', weights='', include_top=False, head='flatten',
                 head_hidden=(4096, 1072), head_dropout=0.2)
  # The tutorial fine-tunes the last block and the head together at one rate.
  c.freeze.update(trainable_stages=1, backbone_lr_mult=1.0)
  c.optim.update(name='adam', lr=1e-4, head_lr=1e-3, weight_decay=0.0, schedule='constant',
                 warmup_steps=0)
  c.train.update(epochs=50, head_epochs=50, select='val_loss', patience=10, min_delta=0.0,
                 log_every=20, checkpoint_every=500)
  c.ablation.update(modes=MODES if mode == 'ablation' else (), seeds=3, linear_probe=False)
  if quick:
    c.data.update(image_size=32, resize_size=32, batch_size=8, eval_batch_size=16)
    c.model.head_hidden = (64, 32)
    c.train.update(epochs=2, head_epochs=2, patience=1, log_every=1, checkpoint_every=0)
    c.ablation.seeds = 1
  return c
