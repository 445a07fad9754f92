"""train.precise_bn: BatchNorm statistics re-estimated on training batches before evaluation."""
import json

import jax
import numpy as np
import pytest

from common.config import load_config
from common.data import ArraySource
from common.errors import UserError
from transfer import create_model, precise_bn, preprocess
from transfer import loop
from transfer.validation import validate


# Tolerance x max |logit|: eval mode computes (x - mean) * a + bias, train mode x * a + b, and
# ResNet-50's 2x2 maps of 6 images leave float32 cancellation in E[x^2] - mean^2 to amplify.
@pytest.mark.slow
@pytest.mark.parametrize('arch,style,size,tol', [('resnet18', 'torchvision', 32, 1e-4),
                                                 ('resnet50', 'keras', 64, 5e-3)])
def test_eval_mode_with_precise_statistics_equals_train_mode_on_that_batch(arch, style, size,
                                                                             tol):
  """With the statistics of one batch, the model in eval mode normalises as train mode does on
  that batch, so their logits agree; with the initial running averages they are far apart."""
  model = create_model(arch, num_classes=5, style=style)
  rng = np.random.default_rng(0)
  images = rng.integers(0, 256, (6, size, size, 3), dtype=np.uint8)
  x = preprocess(images, style)
  variables = jax.jit(lambda k: model.init(k, x, train=False))(jax.random.key(1))
  train_logits, _ = model.apply(variables, x, train=True, mutable=['batch_stats'])
  source = ArraySource({'image': images, 'label': np.zeros(6, np.int32)})
  stats = precise_bn.estimate(precise_bn.statistics_fn(model, style), variables, source,
                              batch_size=6, num_batches=3, image_size=size)
  precise = model.apply({**variables, 'batch_stats': stats}, x, train=False)
  before = model.apply(variables, x, train=False)
  scale = float(np.max(np.abs(train_logits)))
  error = float(np.max(np.abs(precise - train_logits)))
  assert error <= tol * scale, (error, scale)
  assert float(np.max(np.abs(before - train_logits))) > max(10 * error, 1e-2 * scale)


@pytest.mark.slow
def test_inception_statistics_are_where_repeated_updates_converge():
  """InceptionV3 keeps torchvision's unbiased running variance, so eval mode is not train mode
  on one small batch; the estimate is where the model's own running averages converge when
  train mode sees that batch over and over (0.9^250 < 1e-11 of the start is left)."""
  model = create_model('inception_v3', num_classes=5, style='torchvision')
  images = np.random.default_rng(2).integers(0, 256, (4, 75, 75, 3), dtype=np.uint8)
  x = preprocess(images, 'torchvision')
  variables = model.init(jax.random.key(3), x, train=False)
  update = jax.jit(lambda s: model.apply({'params': variables['params'], 'batch_stats': s}, x,
                                         train=True, mutable=['batch_stats'])[1]['batch_stats'])
  stats = variables['batch_stats']
  for _ in range(250):
    stats = update(stats)
  source = ArraySource({'image': images, 'label': np.zeros(4, np.int32)})
  estimate = precise_bn.estimate(precise_bn.statistics_fn(model, 'torchvision'), variables,
                                 source, batch_size=4, num_batches=1, image_size=75)
  # float32 tolerance per layer: at InceptionV3's 1x1 maps a batch of 4 has 4 values a channel,
  # and E[x^2] - mean^2 cancels.
  jax.tree.map(lambda e, s: np.testing.assert_allclose(
      e, s, rtol=0, atol=3e-3 * float(np.max(np.abs(s))) + 1e-6), estimate, stats)


@pytest.mark.slow
def test_statistics_average_over_batches_and_read_centre_crops():
  """Two batches: the mean of each batch's statistics; records stored larger than the input are
  read as their centre crops."""
  model = create_model('resnet18', num_classes=3, style='torchvision')
  rng = np.random.default_rng(1)
  big = rng.integers(0, 256, (8, 36, 36, 3), dtype=np.uint8)
  crops = big[:, 2:34, 2:34]
  variables = model.init(jax.random.key(0), preprocess(crops[:1], 'torchvision'), train=False)
  fn = precise_bn.statistics_fn(model, 'torchvision')
  both = precise_bn.estimate(fn, variables, ArraySource({'image': big}), 4, 2, 32)
  first, second = fn(variables, crops[:4]), fn(variables, crops[4:])
  jax.tree.map(lambda b, f, s: np.testing.assert_allclose(b, (f + s) / 2, rtol=1e-5, atol=1e-6),
               both, first, second)


@pytest.mark.slow
def test_precise_bn_leaves_training_alone_and_changes_what_is_evaluated(tmp_path):
  """The same run with and without it: bitwise the same training rows, other validation rows;
  a negative count is refused."""
  base = ['data.train_per_class=10', 'data.val_fraction=0.5', 'data.batch_size=25',
          'train.epochs=3', 'train.log_every=1', 'mode=scratch']
  rows = {}
  for n in (0, 2):
    config = load_config('transfer/configs/digits.py:scratch,quick',
                         base + [f'train.precise_bn={n}'])
    loop.run(config, str(tmp_path / f'pbn{n}'), lambda: '')
    rows[n] = [json.loads(l) for l in open(tmp_path / f'pbn{n}' / 'metrics.jsonl')]
  train = {n: [(r['step'], r['loss']) for r in rs if 'loss' in r] for n, rs in rows.items()}
  assert train[0] and train[0] == train[2]
  val = {n: [r['val_loss'] for r in rs if 'val_loss' in r] for n, rs in rows.items()}
  assert len(val[0]) == len(val[2]) == 3 and val[0] != val[2]
  config = load_config('transfer/configs/digits.py:scratch,quick', ['train.precise_bn=-1'])
  with pytest.raises(UserError, match='train.precise_bn must be an integer >= 0'):
    validate(config)
