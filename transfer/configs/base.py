"""Defaults shared by the transfer configs; each config file overrides what it needs.

`HELP` gives every key's meaning (shown by `python -m launch.transfer --help`); the `optim` and
`train` cadence keys are the same words the GAN configs use.
"""
import ml_collections


HELP = {
    'seed': 'root of every random stream (init, data order, augmentation)',
    'mode': 'scratch | feature_extraction | fine_tune | partial | two_phase '
            '(transfer/freeze.py)',
    'data.name': 'digits | folder (data.path: one subfolder per class) | a TFDS name',
    'data.path': 'folder: the image folder (one subfolder per class)',
    'data.test_path': 'folder: a separate test folder (else test_fraction of data.path)',
    'data.data_dir': 'TFDS data directory (default: TFDS\'s own)',
    'data.train_split': 'TFDS: the training split (default: the dataset\'s train split)',
    'data.test_split': 'TFDS: the test split (default: test, else validation)',
    'data.classes': 'digits: the classes to use, e.g. 5-9',
    'data.class_subset': "folder/TFDS: classes kept, '' (all) | names or index ranges, e.g. 0-9",
    'data.val_fraction': '> 0: part of each training class held out for validation (model '
                         'selection, early stopping); the test split is scored once, at the end',
    'data.image_size': 'side of the square images the network sees',
    'data.resize_size': 'side of the stored training images (augment crops image_size from it)',
    'data.augment': 'random resized crop and horizontal flip on device',
    'data.crop_scale': 'augment: smallest crop area fraction',
    'data.rotation_range': 'Keras-style augmentation: random rotation up to this many degrees',
    'data.width_shift_range': 'Keras-style augmentation: random shift up to this width fraction',
    'data.height_shift_range': 'Keras-style augmentation: random shift up to this height fraction',
    'data.zoom_range': 'Keras-style augmentation: random zoom in [1 - z, 1 + z]',
    'data.brightness_range': "Keras-style augmentation: (low, high) brightness factor; () off",
    'data.horizontal_flip': 'Keras-style augmentation: random left-right flips',
    'data.vertical_flip': 'Keras-style augmentation: random up-down flips',
    'data.train_per_class': '> 0: keep this many labelled training images per class',
    'data.test_fraction': 'digits/folder without a test set: part of each class held out',
    'data.test_limit': '> 0: evaluate on at most this many test images',
    'data.batch_size': 'global training batch (divisible by the device count)',
    'data.eval_batch_size': 'batch for evaluation and feature extraction',
    'model.arch': 'resnet18 | resnet34 | resnet50 | resnet101 | resnet152 | vgg16 | vgg19 | '
                  'vgg16_bn | vgg19_bn | inception_v3 (torchvision\'s names)',
    'model.style': 'torchvision | keras: whose layout and initialisation the model follows',
    'model.weights': "'' (random init) | converted directory | .pth/.safetensors/.h5 file | "
                     "'pretrain' (the digits 0-4 source model made here)",
    'model.include_top': "keep the weights' classifier (its class count must match the data)",
    'model.head': 'new head: global_pool (mean over H, W) | flatten (the feature map, as VGG)',
    'model.head_hidden': 'new head: widths of hidden Dense+ReLU layers, e.g. (4096, 1072)',
    'model.head_dropout': 'new head: dropout rate before its last layer (training only)',
    'freeze.rules': '((regex, label), ...) over parameter paths replacing the mode\'s rules; '
                    'labels: frozen, trainable, head, backbone or a part of the arch (stem, '
                    'stage1..4; block1..5; mixed0..10)',
    'freeze.trainable_stages': 'partial: the top k parts trained (ResNet stages 1-4, VGG blocks '
                               '1-5, InceptionV3 stem+mixed 1-12)',
    'freeze.backbone_lr_mult': 'backbone learning rate = this x optim.lr',
    'freeze.layer_decay': '< 1: each stage further from the head gets this factor more',
    'freeze.bn_train': 'fine-tuning re-estimates BatchNorm statistics (train mode)',
    'optim.name': 'adam | adamw | sgd',
    'optim.lr': 'learning rate of phases that train the backbone',
    'optim.head_lr': 'learning rate of head-only phases',
    'optim.weight_decay': 'weight decay (adam, sgd: L2 in the gradient; adamw: decoupled)',
    'optim.decay_norm_and_bias': 'also decay BatchNorm scales and biases',
    'optim.momentum': 'sgd momentum (0: none)',
    'optim.b1': 'adam/adamw first-moment decay',
    'optim.b2': 'adam/adamw second-moment decay',
    'optim.schedule': 'learning-rate schedule within each phase: constant | linear | cosine',
    'optim.warmup_steps': 'linear warm-up from 0 over this many steps',
    'train.epochs': 'epochs of phases that train the backbone',
    'train.head_epochs': 'epochs of head-only phases (feature_extraction, two_phase\'s first)',
    'train.two_phase_lr_scale': "two_phase: phase two runs at optim.lr x this",
    'train.log_every': 'steps between metrics.jsonl rows',
    'train.eval_every': 'steps between evaluations: of validation with data.val_fraction (0: '
                        'every epoch), else of test (0: at the end only)',
    'train.select': 'validation metric that picks the weights tested at the end: val_top1 | '
                    'val_loss (with data.val_fraction)',
    'train.patience': '> 0: stop a phase after this many evaluations without improvement',
    'train.precise_bn': '> 0: before each evaluation, BatchNorm statistics re-estimated on this '
                        'many training batches under the current weights (0: running averages)',
    'train.min_delta': 'smallest change of train.select that counts as an improvement',
    'train.checkpoint': 'keep checkpoints (resume after an interruption)',
    'train.checkpoint_every': 'steps between checkpoints (0: at the end only)',
    'train.keep_checkpoints': 'checkpoints kept (the newest)',
    'train.steps_per_call': 'image steps fused into one jitted call (lax.scan)',
    'guard.max_abs_loss': 'stop as diverged when the loss exceeds this magnitude (0: off)',
    'features.cache': 'head-only phases train on cached backbone features',
    'features.dir': 'where cached features go (default WORKDIR/features)',
    'features.steps_per_call': 'cached-feature steps fused into one jitted call',
    'pretrain.dir': "model.weights='pretrain': where the source model is cached "
                    '(default WORKDIR/pretrain)',
    'pretrain.classes': 'digits classes the source model learns',
    'pretrain.epochs': 'source model: epochs',
    'pretrain.batch_size': 'source model: batch size',
    'pretrain.lr': 'source model: learning rate',
    'pretrain.train_per_class': 'source model: images per class (0: all)',
    'pretrain.test_fraction': 'source model: held-out part of each class',
    'pretrain.augment': 'source model: random crops',
    'pretrain.crop_scale': 'source model: smallest crop area fraction',
    'pretrain.weight_decay': 'source model: weight decay',
    'pretrain.optimizer': "source model: adam, adamw or sgd ('': optim.name)",
    'ablation.modes': 'non-empty: run every mode x seed and write a results table',
    'ablation.seeds': 'ablation: seeds per mode (seed, seed+1, ...)',
    'ablation.linear_probe': 'ablation: add a scikit-learn linear probe on frozen features',
    'ablation.archs': 'non-empty: compare these backbones (each mode x seed, each from its own '
                      'pretrain source), e.g. (resnet18, vgg16, inception_v3)',
    'ablation.per_arch': 'with ablation.archs: (arch, key, value) triples setting a key for one '
                         "arch's source and runs, e.g. (('inception_v3', 'pretrain.lr', 1e-3),)",
}


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.mode = 'fine_tune'
  # Train records are resize_size squares cropped on device when augment, else image_size centre
  # crops like the test ones.
  c.data = dict(name='digits', path='', test_path='', data_dir='', train_split='', test_split='',
                classes='5-9', class_subset='', image_size=224, resize_size=256, augment=True,
                crop_scale=0.08,
                rotation_range=0.0, width_shift_range=0.0, height_shift_range=0.0,
                zoom_range=0.0, brightness_range=(), horizontal_flip=False, vertical_flip=False,
                train_per_class=0, val_fraction=0.0,
                test_fraction=0.2, test_limit=0, batch_size=32, eval_batch_size=64)
  c.model = dict(arch='resnet50', style='torchvision', weights='', include_top=False,
                 head='global_pool', head_hidden=(), head_dropout=0.0)
  c.freeze = dict(rules=(), trainable_stages=1, backbone_lr_mult=0.1, layer_decay=1.0,
                  bn_train=False)
  c.optim = dict(name='adamw', lr=1e-3, head_lr=1e-2, weight_decay=1e-4,
                 decay_norm_and_bias=False, momentum=0.9, b1=0.9, b2=0.999, schedule='cosine',
                 warmup_steps=0)
  # steps_per_call: XLA:CPU faults in a fresh scratch buffer for every call, so a chunk of steps
  # pays that once (docs/performance.md).
  c.train = dict(epochs=10, head_epochs=10, two_phase_lr_scale=0.1, log_every=10, eval_every=0,
                 select='val_top1', patience=0, min_delta=0.0, precise_bn=0,
                 checkpoint=True, checkpoint_every=0, keep_checkpoints=2, steps_per_call=10)
  c.guard = dict(max_abs_loss=1e5)
  c.features = dict(cache=True, dir='', steps_per_call=100)
  c.pretrain = dict(dir='', classes='0-4', epochs=15, batch_size=64, lr=2e-3, train_per_class=0,
                    test_fraction=0.2, augment=False, crop_scale=0.5, weight_decay=1e-4,
                    optimizer='')
  c.ablation = dict(modes=(), seeds=5, linear_probe=True, archs=(), per_arch=())
  return c


def parse_arg(arg, first_choices):
  """'name[,quick]' -> (name or first_choices[0], quick)."""
  words = [w for w in (arg or '').split(',') if w]
  quick = 'quick' in words
  words = [w for w in words if w != 'quick']
  return (words[0] if words else first_choices[0]), quick


TFDS_VARIANTS = ('fine_tune', 'feature_extraction', 'two_phase', 'partial', 'scratch', 'ablation')


def tfds_config(name: str, arg, *, epochs: int, head_epochs: int) -> ml_collections.ConfigDict:
  """`name` with ImageNet weights from `--config.model.weights=DIR`; ARG picks a mode,
  'ablation' (all modes x 3 seeds) and/or 'quick'."""
  mode, quick = parse_arg(arg, TFDS_VARIANTS)
  c = base_config()
  c.mode = 'fine_tune' if mode == 'ablation' else mode
  c.data.update(name=name, image_size=224, resize_size=256, augment=True, batch_size=32,
                eval_batch_size=64)
  c.model.update(arch='resnet50', style='torchvision', weights='')
  c.optim.update(name='sgd', lr=1e-2, head_lr=1e-1, weight_decay=1e-4, momentum=0.9,
                 warmup_steps=100)
  c.train.update(epochs=epochs, head_epochs=head_epochs, log_every=50, checkpoint_every=1000)
  if mode == 'ablation':
    c.ablation.update(modes=('scratch', 'feature_extraction', 'fine_tune', 'two_phase',
                             'linear_probe'), seeds=3)
  if quick:
    c.data.update(image_size=64, resize_size=72, train_per_class=4, batch_size=8)
    c.train.update(epochs=1, head_epochs=1, log_every=1, checkpoint_every=0)
  return c
