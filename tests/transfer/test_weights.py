"""check_weights: weights of another arch or style are refused before any heavy work.

The weight files here carry real tensor names with one-element values: the check must judge a
file by its names alone, so no model is built and no full-size tensors are written.
"""
import json

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common import torch_reference
from common.config import load_config
from common.errors import UserError
from transfer import convert, keras_files, resnet, weights

DIGITS = 'transfer/configs/digits.py:fine_tune,quick'


def _config(weights_path, arch='resnet18', style='torchvision', mode='fine_tune'):
  return load_config(DIGITS, [f'model.weights={weights_path}', f'model.arch={arch}',
                              f'model.style={style}', f'mode={mode}'])


def _converted(tmp_path, arch, style):
  """A converted directory as check_weights sees it: only its metadata.json is read."""
  out = tmp_path / f'{arch}_{style}'
  out.mkdir()
  meta = {'format_version': 1, 'arch': arch, 'style': style, 'include_top': False,
          'num_classes': None}
  (out / convert.METADATA_FILE).write_text(json.dumps(meta))
  return out


def _torchvision_file(tmp_path, arch, suffix):
  names = torch_reference.TorchResNet(arch, 10).state_dict()  # torchvision's own names
  tensors = {name: torch.zeros(1) for name in names}
  path = tmp_path / f'{arch}{suffix}'
  if suffix == '.safetensors':
    save_file(tensors, str(path))
  else:
    torch.save(tensors, path)
  return path


def _keras_file(tmp_path, arch):
  """A legacy Keras .h5 with keras.applications layer names for `arch`."""
  order = keras_files.keras3_layer_order(resnet.ARCHS[arch])
  path = tmp_path / f'{arch}.h5'
  with h5py.File(path, 'w') as f:
    layers = order['conv2d'] + order['batch_normalization']
    f.attrs['layer_names'] = [name.encode() for name in layers]
    for name in layers:
      group = f.create_group(name)
      var = 'gamma' if name.endswith('_bn') else 'kernel'
      group.attrs['weight_names'] = [f'{name}/{var}:0'.encode()]
      group.create_dataset(f'{name}/{var}:0', data=np.zeros(1, np.float32))
  return path


def _one_line_error(config) -> str:
  with pytest.raises(UserError) as info:
    weights.check_weights(config)
  message = str(info.value)
  assert '\n' not in message
  return message


def test_converted_directory_of_another_arch(tmp_path):
  path = _converted(tmp_path, 'resnet50', 'torchvision')
  message = _one_line_error(_config(path, arch='resnet18'))
  assert message == (f'model.weights {path} holds resnet50 (torchvision) weights (says its '
                     'metadata.json) but the config asks for resnet18 (torchvision); set '
                     '--config.model.arch=resnet50, or give resnet18 (torchvision) weights')


def test_converted_directory_of_another_style(tmp_path):
  path = _converted(tmp_path, 'resnet50', 'keras')
  message = _one_line_error(_config(path, arch='resnet50'))
  assert 'holds resnet50 (keras) weights' in message
  assert 'set --config.model.style=keras,' in message and 'model.arch=' not in message


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors'])
def test_original_torchvision_file_of_another_arch(tmp_path, suffix):
  path = _torchvision_file(tmp_path, 'resnet50', suffix)
  message = _one_line_error(_config(path, arch='resnet18'))
  assert 'holds resnet50 (torchvision) weights (judged by its tensor names)' in message
  assert 'asks for resnet18 (torchvision); set --config.model.arch=resnet50' in message
  weights.check_weights(_config(path, arch='resnet50'))  # the right arch passes


def test_original_keras_file_of_another_arch(tmp_path):
  path = _keras_file(tmp_path, 'resnet101')
  message = _one_line_error(_config(path, arch='resnet50', style='keras'))
  assert 'holds resnet101 (keras) weights' in message
  assert 'set --config.model.arch=resnet101' in message
  weights.check_weights(_config(path, arch='resnet101', style='keras'))


def test_matching_and_nothing_to_check(tmp_path):
  weights.check_weights(_config(_converted(tmp_path, 'resnet18', 'torchvision')))
  weights.check_weights(_config(''))
  weights.check_weights(_config('pretrain'))
  other = _converted(tmp_path, 'resnet50', 'torchvision')
  weights.check_weights(_config(other, mode='scratch'))  # scratch runs ignore the weights
  # A file that fits no ResNet is left to loading, which lists what is missing and unused.
  torch.save({'w': torch.zeros(1)}, tmp_path / 'other.pth')
  weights.check_weights(_config(tmp_path / 'other.pth'))


def test_missing_weights_and_metadata(tmp_path):
  assert 'not found' in _one_line_error(_config(tmp_path / 'nope'))
  (tmp_path / 'empty').mkdir()
  assert 'has no metadata.json' in _one_line_error(_config(tmp_path / 'empty'))
  broken = _converted(tmp_path, 'resnet18', 'torchvision')
  (broken / convert.METADATA_FILE).write_text('{"arch": "resnet18"')
  assert 'metadata.json is corrupt' in _one_line_error(_config(broken))
