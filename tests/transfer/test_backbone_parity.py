"""Parity of the VGG and InceptionV3 backbones (transfer.vgg, transfer.inception, via
transfer.convert) with torch and Keras references, from real files those write.

The torch networks (common.torch_reference) are torchvision's, written with its state_dict names;
the Keras ones are keras.applications' own. All carry random weights and random BatchNorm
statistics. Logits, every block's output and InceptionV3's 2048-d pool features must agree within
1e-4 x max |reference|. Networks with their full classifier are large (VGG's is 120M
parameters), so most cases are slow; one fast case covers VGG features from a notop file.
"""
import jax
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common import torch_reference
from tests.transfer import refs
from transfer import convert, create_model

NUM_CLASSES = 10
# Odd and unequal sides: every stride-2 layer sees odd sizes somewhere.
TORCH_SHAPES = {'vgg16': (2, 32, 40, 3), 'vgg19': (2, 33, 32, 3), 'vgg16_bn': (2, 40, 35, 3),
                'vgg19_bn': (2, 32, 32, 3), 'inception_v3': (2, 75, 83, 3)}


def _images(shape, seed, low=-2.0, high=2.0):
  return np.random.default_rng(seed).uniform(low, high, size=shape).astype(np.float32)


def _torch_model(arch):
  if arch == 'inception_v3':
    return torch_reference.torch_inception_v3(NUM_CLASSES, seed=1)
  return torch_reference.torch_vgg(arch, NUM_CLASSES, seed=1)


def _check(variables, arch, style, include_top, images, ref_out, ref_stages, what):
  model = create_model(arch, NUM_CLASSES, style, include_top)
  out, stages = model.apply(variables, images, capture_stages=True)
  ratios = {'out': refs.assert_close(out, ref_out, f'{what} output')}
  for key, ref in ref_stages.items():
    ratios[key] = refs.assert_close(stages[key], ref, f'{what} {key}')
  print(f'\n{what}: max |diff| / max |ref| '
        + ' '.join(f'{k}={v:.2e}' for k, v in ratios.items()))
  return ratios


@pytest.mark.slow
def test_vgg16_torchvision_features_from_notop_safetensors(tmp_path):
  """Features of a torchvision VGG16 file without its classifier, block by block."""
  model = torch_reference.torch_vgg('vgg16', NUM_CLASSES, seed=1, include_top=False)
  state = {k: v.contiguous() for k, v in model.state_dict().items()}
  save_file(state, str(tmp_path / 'vgg16_features.safetensors'))
  images = _images(TORCH_SHAPES['vgg16'], seed=2)
  with torch.no_grad():
    _, stages = model(torch.from_numpy(images).permute(0, 3, 1, 2))
  variables = convert.from_torchvision(tmp_path / 'vgg16_features.safetensors', 'vgg16',
                                       include_top=False)
  assert 'fc1' not in variables['params'] and 'head' not in variables['params']
  _check(variables, 'vgg16', 'torchvision', False, images, stages['pool'], stages,
         'vgg16 torchvision notop')


@pytest.mark.slow
@pytest.mark.parametrize('arch', list(TORCH_SHAPES))
def test_torchvision_parity(arch, tmp_path):
  """.pth with the classifier against torch; the .safetensors copy gives the same tensors and
  drops its classifier (and InceptionV3's AuxLogits) for include_top=False."""
  model = _torch_model(arch)
  state = model.state_dict()
  if arch == 'inception_v3':
    assert any(k.startswith('AuxLogits.') for k in state)  # a real torchvision file has it
  torch.save(state, tmp_path / f'{arch}.pth')
  save_file({k: v.contiguous() for k, v in state.items()}, str(tmp_path / f'{arch}.safetensors'))
  images = _images(TORCH_SHAPES[arch], seed=2)
  logits, stages = torch_reference.torch_forward(model, images)
  variables = convert.from_torchvision(tmp_path / f'{arch}.pth', arch)
  _check(variables, arch, 'torchvision', True, images, logits, stages, f'{arch} torchvision')
  notop = convert.from_torchvision(tmp_path / f'{arch}.safetensors', arch, include_top=False)
  assert sorted(notop['params']) == sorted(k for k in variables['params']
                                           if k not in ('fc1', 'fc2', 'head'))
  for key in notop['params']:
    jax.tree.map(np.testing.assert_array_equal, notop['params'][key], variables['params'][key])


# ----------------------------------------------------------------------------------------------
# keras.applications.

KERAS_CASES = {  # arch: (input size, include_top)
    'vgg16': (224, True), 'vgg19': (32, False), 'inception_v3': (75, True)}


def _keras_stage_layers(arch):
  if arch == 'inception_v3':
    return {f'mixed{i}': f'mixed{i}' for i in range(11)}
  return {f'block{b}': f'block{b}_pool' for b in range(1, 6)}


@pytest.mark.slow
@pytest.mark.parametrize('arch', list(KERAS_CASES))
def test_keras_parity(arch, tmp_path):
  """Keras 3 .weights.h5 against keras; the legacy .h5 (the published files' layout) must give
  the same tensors, with and without the top."""
  size, top = KERAS_CASES[arch]
  model = refs.keras_backbone(arch, NUM_CLASSES, size, top, seed=5)
  model.save_weights(str(tmp_path / f'{arch}.weights.h5'))
  refs.write_keras_legacy_h5(model, tmp_path / f'{arch}_legacy.h5')
  # Keras' VGG input is caffe-centred pixels (tens), InceptionV3's [-1, 1].
  images = (_images((2, size, size, 3), 6, -100, 100) if arch.startswith('vgg')
            else _images((2, size, size, 3), 6, -1, 1))
  stage_layers = _keras_stage_layers(arch)
  names = list(stage_layers.values()) + ([model.layers[-1].name] if top else [])
  if arch == 'inception_v3':
    names.insert(len(stage_layers), 'avg_pool')
  outputs = refs.keras_outputs(model, images, names)
  stages = dict(zip(stage_layers, outputs))
  if arch == 'inception_v3':
    stages['pool'] = outputs[len(stage_layers)]
  ref_out = outputs[-1] if top else stages['block5']
  variables = convert.from_keras(tmp_path / f'{arch}.weights.h5', arch, include_top=top)
  if top:
    _check(variables, arch, 'keras', True, images, ref_out, stages, f'{arch} keras .weights.h5')
  else:
    _check(variables, arch, 'keras', False, images, stages['block5'].reshape(2, -1), stages,
           f'{arch} keras notop .weights.h5')
  legacy = convert.from_keras(tmp_path / f'{arch}_legacy.h5', arch, include_top=top)
  jax.tree.map(np.testing.assert_array_equal, legacy, variables)
  if top:  # the file's top is dropped on request
    notop = convert.from_keras(tmp_path / f'{arch}.weights.h5', arch, include_top=False)
    assert 'head' not in notop['params'] and 'fc1' not in notop['params']
