"""Parity of transfer.resnet + transfer.convert with torch and Keras references.

Every arch runs in every style it has. Inputs are 32x32 (40x48 for
resnet18, to cover odd sizes at stride 2): small enough that ResNet-152 stays
cheap, while every stride-2 layer still sees an even or odd size where
asymmetric 'SAME' padding would shift the result.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common import torch_reference
from common.errors import UserError
from tests.transfer import refs
from transfer import convert, resnet

NUM_CLASSES = 10
TORCH_SHAPES = {'resnet18': (2, 40, 48, 3), 'resnet34': (2, 32, 32, 3),
                'resnet50': (2, 32, 32, 3), 'resnet101': (2, 32, 32, 3),
                'resnet152': (2, 32, 32, 3)}
KERAS_ARCHS = ('resnet50', 'resnet101', 'resnet152')
KERAS_SIZE = 32


def _images(shape, seed, scale=1.0):
  return (np.random.default_rng(seed).normal(size=shape) * scale
          ).astype(np.float32)


def _check_parity(variables, arch, style, include_top, images, ref_out,
                  ref_stages, what):
  model = resnet.create_model(arch, NUM_CLASSES, style, include_top)
  out, stages = model.apply(variables, images, train=False,
                            capture_stages=True)
  ratios = {'out': refs.assert_close(out, ref_out, f'{what} output')}
  for key in torch_reference.STAGE_KEYS:
    ratios[key] = refs.assert_close(stages[key], ref_stages[key],
                                    f'{what} {key}')
  print(f'\n{what}: max |diff| / max |ref| '
        + ' '.join(f'{k}={v:.2e}' for k, v in ratios.items()))


# ----------------------------------------------------------------------------
# torchvision style against the torch reference.


# ResNet-18 and -50 in the fast suite; the deeper ones (same blocks, more of them) in -m slow.
@pytest.fixture(scope='module', params=[
    a if a == 'resnet18' else pytest.param(a, marks=pytest.mark.slow)
    for a in TORCH_SHAPES])
def torch_case(request, tmp_path_factory):
  arch = request.param
  tmp = tmp_path_factory.mktemp(arch)
  model = torch_reference.torch_resnet(arch, NUM_CLASSES, seed=1)
  state = model.state_dict()
  torch.save(state, tmp / f'{arch}.pth')
  save_file({k: v.contiguous() for k, v in state.items()},
            str(tmp / f'{arch}.safetensors'))
  images = _images(TORCH_SHAPES[arch], seed=2)
  logits, stages = torch_reference.torch_forward(model, images)
  return dict(arch=arch, tmp=tmp, images=images, logits=logits, stages=stages)


def test_torchvision_parity(torch_case):
  """.pth against torch; .safetensors (notop) must give the same tensors."""
  c = torch_case
  arch, tmp = c['arch'], c['tmp']
  variables = convert.from_torchvision(tmp / f'{arch}.pth', arch)
  _check_parity(variables, arch, 'torchvision', True, c['images'],
                c['logits'], c['stages'], f'{arch} torchvision .pth')
  notop = convert.from_torchvision(tmp / f'{arch}.safetensors', arch,
                                   include_top=False)
  del variables['params']['head']
  jax.tree.map(np.testing.assert_array_equal, notop, variables)
  if arch == 'resnet18':  # the notop model itself, once
    _check_parity(notop, arch, 'torchvision', False, c['images'],
                  c['stages']['pool'], c['stages'], f'{arch} torchvision notop')


@pytest.mark.slow
def test_torchvision_train_mode_matches_torch(tmp_path):
  """train=True normalises with batch statistics and updates running stats
  with momentum 0.1; flax uses the biased batch variance where torch uses the
  unbiased one, which the expected value below accounts for."""
  arch = 'resnet18'
  model = torch_reference.torch_resnet(arch, NUM_CLASSES, seed=3)
  state = {k: v.numpy().copy() for k, v in model.state_dict().items()}
  torch.save(model.state_dict(), tmp_path / 'r18.pth')
  variables = convert.from_torchvision(tmp_path / 'r18.pth', arch)
  images = _images((4, 48, 48, 3), seed=4)
  model.train()
  with torch.no_grad():
    ref_logits, _ = model(torch.from_numpy(images).permute(0, 3, 1, 2))
  flax_model = resnet.create_model(arch, NUM_CLASSES)
  logits, updates = flax_model.apply(variables, images, train=True,
                                     mutable=['batch_stats'])
  refs.assert_close(logits, ref_logits.numpy(), 'train-mode logits')
  new_stats = updates['batch_stats']
  for flax_bn, torch_bn, n in (('stem_bn', 'bn1', 4 * 24 * 24),
                               (('stage4', 'block1', 'bn2'),
                                'layer4.1.bn2', 4 * 2 * 2)):
    path = (flax_bn,) if isinstance(flax_bn, str) else flax_bn
    stats = new_stats
    for p in path:
      stats = stats[p]
    torch_mean = model.state_dict()[f'{torch_bn}.running_mean'].numpy()
    torch_var = model.state_dict()[f'{torch_bn}.running_var'].numpy()
    old_var = state[f'{torch_bn}.running_var']
    unbiased = (torch_var - 0.9 * old_var) / 0.1
    expected_var = 0.9 * old_var + 0.1 * unbiased * (n - 1) / n
    np.testing.assert_allclose(stats['mean'], torch_mean, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(stats['var'], expected_var, rtol=1e-4,
                               atol=1e-5)


# ----------------------------------------------------------------------------
# keras style against keras.applications.


# Building Keras models takes seconds each: the Keras tests run in the slow suite.
@pytest.fixture(scope='module', params=[
    pytest.param(a, marks=pytest.mark.slow) for a in KERAS_ARCHS])
def keras_case(request, tmp_path_factory):
  arch = request.param
  tmp = tmp_path_factory.mktemp(f'keras_{arch}')
  model = refs.keras_resnet(arch, NUM_CLASSES, KERAS_SIZE, seed=5)
  model.save_weights(str(tmp / f'{arch}.weights.h5'))
  refs.write_keras_legacy_h5(model, tmp / f'{arch}_legacy.h5')
  if arch == 'resnet50':
    refs.write_keras_legacy_h5(model, tmp / f'{arch}_legacy_notop.h5',
                               include_top=False)
  # Keras-preprocessed inputs are caffe-centred pixels, tens in magnitude.
  images = _images((2, KERAS_SIZE, KERAS_SIZE, 3), seed=6, scale=50.0)
  logits, stages = refs.keras_forward(model, images, arch)
  return dict(arch=arch, tmp=tmp, images=images, logits=logits, stages=stages,
              model=model)


@pytest.mark.slow
def test_keras_parity(keras_case):
  """.weights.h5 against keras; the legacy .h5 must give the same tensors."""
  c = keras_case
  arch, tmp = c['arch'], c['tmp']
  variables = convert.from_keras(tmp / f'{arch}.weights.h5', arch)
  _check_parity(variables, arch, 'keras', True, c['images'], c['logits'],
                c['stages'], f'{arch} keras .weights.h5')
  legacy = convert.from_keras(tmp / f'{arch}_legacy.h5', arch)
  jax.tree.map(np.testing.assert_array_equal, legacy, variables)
  if arch != 'resnet50':  # notop files and models do not depend on depth
    return
  del variables['params']['head']
  _check_parity(variables, arch, 'keras', False, c['images'],
                c['stages']['pool'], c['stages'], f'{arch} keras notop')
  notop = convert.from_keras(tmp / f'{arch}_legacy_notop.h5', arch,
                             include_top=False)
  jax.tree.map(np.testing.assert_array_equal, notop, variables)
  with pytest.raises(UserError, match='no classifier head'):
    convert.from_keras(tmp / f'{arch}_legacy_notop.h5', arch)


@pytest.mark.slow
def test_legacy_test_file_loads_in_keras(keras_case):
  """Keras' own legacy-HDF5 reader restores the model from the hand-written
  file, so the file mirrors the published layout."""
  c = keras_case
  if c['arch'] != 'resnet50':
    return  # the layout does not depend on depth
  model = c['model']
  original = model.get_weights()
  model.set_weights([np.zeros_like(w) for w in original])
  model.load_weights(str(c['tmp'] / f'{c["arch"]}_legacy.h5'))
  for got, want in zip(model.get_weights(), original):
    np.testing.assert_array_equal(got, want)


def test_keras_wrong_arch_is_reported(keras_case):
  c = keras_case
  if c['arch'] == 'resnet50':
    return  # deeper files converted as resnet50 cover it
  wrong = 'resnet50'
  for name in (f'{c["arch"]}.weights.h5', f'{c["arch"]}_legacy.h5'):
    with pytest.raises(convert.WeightsMismatchError) as info:
      convert.from_keras(c['tmp'] / name, wrong)
    message = str(info.value)
    assert '\n' not in message
    assert (f'does not fit {wrong} (keras) but looks like {c["arch"]}: '
            in message)
    assert info.value.missing or info.value.unused


# ----------------------------------------------------------------------------
# Model construction.


@pytest.mark.slow
def test_every_registered_arch_builds_in_its_styles():
  for arch, spec in resnet.ARCHS.items():
    for style in spec.styles:
      variables = resnet.abstract_variables(arch, style, NUM_CLASSES, True)
      paths = resnet.param_paths(variables['params'])
      assert {p.split('/')[0] for p in paths} == {
          'stem_conv', 'stem_bn', 'stage1', 'stage2', 'stage3', 'stage4',
          'head'}
      n_blocks = len({tuple(p.split('/')[:2]) for p in paths
                      if p.startswith('stage')})
      assert n_blocks == sum(spec.stage_sizes)
      assert variables['params']['head']['kernel'].shape[1] == NUM_CLASSES
      has_bias = any(p.endswith('conv1/bias') for p in paths)
      assert has_bias == (style == 'keras')


@pytest.mark.parametrize('kwargs, match', [
    (dict(arch='resnet200', num_classes=10),
     "unknown ResNet architecture 'resnet200'; choose one of: resnet101, resnet152, resnet18"),
    (dict(arch='resnet50', num_classes=10, style='caffe'),
     "unknown ResNet style 'caffe'; choose one of: keras, torchvision"),
    (dict(arch='resnet18', num_classes=10, style='keras'), 'no keras layout'),
    (dict(arch='resnet50', num_classes=0), 'num_classes must be'),
    (dict(arch='resnet50', num_classes=None), 'num_classes must be'),
])
def test_create_model_rejects_bad_input(kwargs, match):
  with pytest.raises(UserError, match=match):
    resnet.create_model(**kwargs)


def test_notop_model_ignores_num_classes():
  model = resnet.create_model('resnet18', 1000, include_top=False)
  assert model.num_classes is None
  variables = resnet.abstract_variables('resnet18', 'torchvision', None, False)
  assert 'head' not in variables['params']
  features = jax.eval_shape(model.apply, variables, jnp.zeros((2, 32, 32, 3)))
  assert features.shape == (2, 512)
