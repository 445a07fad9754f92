"""Freezing rules: labels, optimiser state, and bitwise-frozen parameters after real training."""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from common import rng
from common.config import load_config
from common.errors import UserError
from common.writers import read_metrics
from transfer import freeze, loop, resnet, weights

DIGITS = 'transfer/configs/digits.py'


@functools.lru_cache(maxsize=1)
def _params():
  model = resnet.create_model('resnet18', 5)
  return jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 16, 16, 3)))['params']


def _size(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _labels_by_path(labels) -> dict:
  return {'/'.join(k): v for k, v in traverse_util.flatten_dict(labels).items()}


def test_rules_that_leave_parameters_unlabelled_are_an_error():
  with pytest.raises(UserError, match=r'3 parameters match no freezing rule \(stem_bn/bias, stem_bn/scale, stem_conv/kernel\)'):
    freeze.label_params(_params(), [('^head/', 'head'), ('^stage', 'backbone')])


def test_first_matching_rule_wins():
  labels = _labels_by_path(freeze.label_params(
      _params(), [('^stage4/block1/', 'frozen'), ('^stage4/', 'backbone'), ('.*', 'head')]))
  assert labels['stage4/block1/conv1/kernel'] == 'frozen'
  assert labels['stage4/block0/conv1/kernel'] == 'backbone'
  assert labels['stem_conv/kernel'] == 'head'


def test_bad_regex_is_an_error():
  with pytest.raises(UserError, match='not a valid regex'):
    freeze.label_params(_params(), [('(', 'head')])


def test_frozen_parameters_keep_no_optimizer_state():
  params = _params()
  head = _size(params['head'])
  rules, mults = freeze.mode_rules('feature_extraction')
  tx, _ = freeze.make_optimizer(params, rules, mults, optimizer='adamw', weight_decay=1e-4)
  state = jax.eval_shape(tx.init, params)
  # Adam keeps two moments per trainable element plus a step count per group.
  assert 2 * head <= freeze.count_state(state) <= 2 * head + 8
  rules, mults = freeze.mode_rules('fine_tune')
  tx, _ = freeze.make_optimizer(params, rules, mults, optimizer='adamw')
  assert freeze.count_state(jax.eval_shape(tx.init, params)) >= 2 * _size(params)


def test_partial_and_layer_decay_labels():
  params = _params()
  rules, mults = freeze.mode_rules('partial', trainable_stages=2, backbone_lr_mult=0.1,
                                   layer_decay=0.5)
  labels = _labels_by_path(freeze.label_params(params, rules))
  assert labels['head/kernel'] == 'head'
  assert labels['stage4/block0/conv1/kernel'] == 'stage4'
  assert labels['stage3/block1/bn2/scale'] == 'stage3'
  assert labels['stage2/block0/conv1/kernel'] == freeze.FROZEN
  assert labels['stem_bn/bias'] == freeze.FROZEN
  assert mults['stage4'] == pytest.approx(0.05) and mults['stage3'] == pytest.approx(0.025)


def test_no_weight_decay_on_batchnorm_and_biases():
  params = _params()
  rules, mults = freeze.mode_rules('scratch')
  _, labels = freeze.make_optimizer(params, rules, mults, weight_decay=1e-4)
  labels = _labels_by_path(labels)
  assert labels['stage1/block0/conv1/kernel'] == 'lr*1.0'
  assert labels['head/kernel'] == 'lr*1.0'
  assert labels['stage1/block0/bn1/scale'] == 'lr*1.0|no_decay'
  assert labels['head/bias'] == 'lr*1.0|no_decay'
  mask = _labels_by_path(freeze.decay_mask(params))
  assert mask['stem_conv/kernel'] and not mask['stem_bn/scale'] and not mask['head/bias']


def test_unknown_mode_is_an_error():
  with pytest.raises(UserError, match="unknown mode 'finetune'"):
    loop.validate(load_config(DIGITS, ['mode=finetune']))


# --- Real training: a few steps per mode on digits (random backbone, no pretraining) ----------


def _run(tmp_path, mode, overrides=()):
  config = load_config(f'{DIGITS}:{mode},quick', [
      'model.weights=', 'train.epochs=4', 'train.head_epochs=4', 'train.log_every=1',
      'data.test_limit=50', *overrides])
  summary, variables = loop.run(config, str(tmp_path / mode))
  losses = [r['loss'] for r in read_metrics(str(tmp_path / mode)) if 'loss' in r]
  return config, summary, variables, losses


def _initial(config):
  model = resnet.create_model(config.model.arch, 5, config.model.style)
  return jax.device_get(weights.init_variables(
      model, config, '', rng.stream(rng.root_key(config.seed), 'init')))


def _flat(tree):
  return {'/'.join(k): np.asarray(v) for k, v in traverse_util.flatten_dict(tree).items()}


@pytest.mark.slow
@pytest.mark.parametrize('mode', ['scratch', 'fine_tune', 'two_phase'])
def test_each_mode_trains_and_the_loss_falls(tmp_path, mode):
  _, summary, _, losses = _run(tmp_path, mode)
  assert len(losses) >= 4 and losses[-1] < losses[0], losses
  assert 0 <= summary['top1'] <= 1


@pytest.fixture(scope='module')
def feature_extraction_on_images(tmp_path_factory):
  # Through images (no cached features), so the frozen backbone really runs each step.
  return _run(tmp_path_factory.mktemp('fe'), 'feature_extraction', ['features.cache=False'])


def test_feature_extraction_leaves_backbone_and_statistics_bitwise_unchanged(
    feature_extraction_on_images):
  config, _, variables, losses = feature_extraction_on_images
  assert losses[-1] < losses[0], losses
  before, after = _flat(_initial(config)), _flat(jax.device_get(variables))
  changed = [k for k in before if not np.array_equal(before[k], after[k])]
  assert changed and all(k.startswith('params/head/') for k in changed), changed


@pytest.mark.slow
def test_partial_updates_only_the_last_stages_even_with_batchnorm_training(tmp_path):
  config, _, variables, losses = _run(tmp_path, 'partial', ['freeze.trainable_stages=1',
                                                            'freeze.bn_train=True'])
  assert losses[-1] < losses[0], losses
  before, after = _flat(_initial(config)), _flat(jax.device_get(variables))
  trained = ('params/head/', 'params/stage4/', 'batch_stats/stage4/')
  for k in before:
    if k.startswith(trained):
      continue
    assert np.array_equal(before[k], after[k]), f'{k} changed although frozen'
  assert not np.array_equal(before['batch_stats/stage4/block0/bn1/mean'],
                            after['batch_stats/stage4/block0/bn1/mean'])
  assert not np.array_equal(before['params/stage4/block1/conv2/kernel'],
                            after['params/stage4/block1/conv2/kernel'])


def test_cached_head_training_follows_the_image_path(tmp_path, feature_extraction_on_images):
  """Feature extraction on cached features gives the image path's losses and accuracy."""
  _, direct, _, direct_losses = feature_extraction_on_images
  _, cached, _, cached_losses = _run(tmp_path, 'feature_extraction')
  assert cached['cached_features'] == [True] and direct['cached_features'] == [False]
  np.testing.assert_allclose(cached_losses, direct_losses, rtol=1e-4, atol=1e-5)
  assert cached['top1'] == pytest.approx(direct['top1'], abs=0.021)
