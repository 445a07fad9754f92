"""Error handling, checksums, converted checkpoints and the launch.convert CLI."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common import torch_reference
from common.errors import UserError
from tests.transfer import refs  # noqa: F401  (keras' JAX backend, one torch thread)
from transfer import convert, keras_files, resnet

REPO_ROOT = Path(__file__).resolve().parents[2]
NUM_CLASSES = 10


@pytest.fixture(scope='module')
def r18(tmp_path_factory):
  """A resnet18 state dict saved as .pth; returns (path, state dict)."""
  tmp = tmp_path_factory.mktemp('r18')
  state = torch_reference.torch_resnet('resnet18', NUM_CLASSES, seed=11).state_dict()
  path = tmp / 'resnet18.pth'
  torch.save(state, path)
  return path, state


def _assert_one_line(message: str, *parts: str) -> None:
  assert '\n' not in message
  for part in parts:
    assert part in message, (part, message)


# ----------------------------------------------------------------------------
# Files that do not fit.


def test_wrong_arch_lists_missing_and_mismatched(r18):
  path, _ = r18
  with pytest.raises(convert.WeightsMismatchError) as info:
    convert.from_torchvision(path, 'resnet50')
  e = info.value
  assert 'layer1.0.conv3.weight' in e.missing
  assert ('layer1.0.conv1.weight 64x64x3x3 (as 3x3x64x64) vs model 1x1x64x64'
          in e.mismatched)
  assert 'fc.weight 10x512 (as 512x10) vs model 2048x10' in e.mismatched
  _assert_one_line(str(e), 'resnet18.pth does not fit resnet50 (torchvision) '
                   'but looks like resnet18: ',
                   f'{len(e.missing)} missing (', 'shape mismatch (',
                   'check --arch / --source')


def test_bigger_file_lists_unused(tmp_path):
  state = torch_reference.TorchResNet('resnet34', NUM_CLASSES).state_dict()
  torch.save(state, tmp_path / 'r34.pth')
  with pytest.raises(convert.WeightsMismatchError) as info:
    convert.from_torchvision(tmp_path / 'r34.pth', 'resnet18')
  e = info.value
  assert not e.missing and not e.mismatched
  assert 'layer1.2.conv1.weight' in e.unused
  assert not any('num_batches_tracked' in n for n in e.unused)
  _assert_one_line(str(e), '0 missing', f'{len(e.unused)} unused (',
                   'does not fit resnet18 (torchvision) but looks like resnet34')


def test_keras_style_has_no_resnet18(r18):
  with pytest.raises(UserError, match='resnet18 has no keras layout'):
    convert.from_keras(r18[0], 'resnet18')


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors', '.h5'])
def test_truncated_file_names_the_file(tmp_path, r18, suffix):
  _, state = r18
  full = tmp_path / f'full{suffix}'
  if suffix == '.pth':
    torch.save(state, full)
  elif suffix == '.safetensors':
    save_file({k: v.contiguous() for k, v in state.items()}, str(full))
  else:
    with h5py.File(full, 'w') as f:
      f.attrs['layer_names'] = [b'conv1_conv']
      g = f.create_group('conv1_conv')
      g.attrs['weight_names'] = [b'conv1_conv/kernel:0']
      g.create_dataset('conv1_conv/kernel:0', data=np.ones((7, 7, 3, 64)))
  data = full.read_bytes()
  cut = tmp_path / f'cut{suffix}'
  cut.write_bytes(data[:len(data) // 2])
  reader = convert.from_keras if suffix == '.h5' else convert.from_torchvision
  arch = 'resnet50' if suffix == '.h5' else 'resnet18'
  with pytest.raises(UserError) as info:
    reader(cut, arch)
  _assert_one_line(str(info.value), f'weights file {cut} is corrupt or truncated (',
                   'download it again')


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors', '.h5'])
def test_garbage_file_is_corrupt(tmp_path, suffix):
  path = tmp_path / f'garbage{suffix}'
  path.write_bytes(b'\x00' + os.urandom(4999))  # no format starts with a zero byte
  reader = convert.from_keras if suffix == '.h5' else convert.from_torchvision
  with pytest.raises(UserError) as info:
    reader(path, 'resnet50')
  _assert_one_line(str(info.value), f'weights file {path} is corrupt or not a',
                   'match no weights format', 'download it again')
  assert 'code' not in str(info.value)


@pytest.mark.parametrize('suffix', ['.pth', '.safetensors', '.h5'])
def test_empty_file_says_empty(tmp_path, suffix):
  path = tmp_path / f'empty{suffix}'
  path.write_bytes(b'')
  reader = convert.from_keras if suffix == '.h5' else convert.from_torchvision
  with pytest.raises(UserError) as info:
    reader(path, 'resnet50')
  _assert_one_line(str(info.value), f'weights file {path} is empty (0 bytes)')


def _other_format(path: Path, kind: str) -> None:
  if kind == 'torch':
    torch.save({'w': torch.ones(2)}, path)
  elif kind == 'safetensors':
    save_file({'w': torch.ones(2)}, str(path))
  elif kind == 'hdf5':
    with h5py.File(path, 'w') as f:
      f['w'] = np.ones(2)
  else:  # a plain pickle
    import pickle  # pylint: disable=g-import-not-at-top
    path.write_bytes(pickle.dumps({'w': np.ones(2)}, protocol=4))


@pytest.mark.parametrize('suffix, kind, expected', [
    ('.pth', 'safetensors', 'is a safetensors file, not a torch file; name it *.safetensors'),
    ('.pth', 'hdf5', 'is an HDF5 (Keras) file, not a torch file; read it as Keras weights'),
    ('.pth', 'pickle', 'is a plain Python pickle, not a torch file; save the weights with '
     'torch.save'),
    ('.safetensors', 'torch', 'is a torch file (torch.save), not a safetensors file; name it '
     '*.pth'),
    ('.h5', 'torch', 'is a torch file (torch.save), not an HDF5 file; read it as torchvision'),
])
def test_file_of_another_format_is_named(tmp_path, suffix, kind, expected):
  path = tmp_path / f'other{suffix}'
  _other_format(path, kind)
  reader = convert.from_keras if suffix == '.h5' else convert.from_torchvision
  with pytest.raises(UserError) as info:
    reader(path, 'resnet50')
  _assert_one_line(str(info.value), f'weights file {path} {expected}')


@pytest.mark.parametrize('value, expected', [
    ([torch.ones(2)], 'holds a list, not a state_dict'),
    ({'state': {}, 'param_groups': []}, 'is a torch file without tensors (keys: state, '
     'param_groups), not a model state_dict'),
])
def test_torch_file_of_the_wrong_kind(tmp_path, value, expected):
  torch.save(value, tmp_path / 'other.pth')
  with pytest.raises(UserError) as info:
    convert.from_torchvision(tmp_path / 'other.pth', 'resnet18')
  _assert_one_line(str(info.value), expected)
  assert 'corrupt' not in str(info.value) and 'code' not in str(info.value)


def test_pickled_model_is_refused_as_a_model(tmp_path):
  torch.save(torch.nn.Linear(2, 2), tmp_path / 'model.pth')
  with pytest.raises(UserError) as info:
    convert.from_torchvision(tmp_path / 'model.pth', 'resnet18')
  _assert_one_line(str(info.value), 'holds a whole pickled model '
                   '(torch.nn.modules.linear.Linear), which contains code and was refused',
                   'save model.state_dict()')


class _Payload:
  """Unpickling this creates a directory: the code a weights file must not
  be allowed to run."""

  def __init__(self, marker: Path):
    self.marker = marker

  def __reduce__(self):
    return (os.mkdir, (str(self.marker),))


def test_pickle_with_code_is_refused(tmp_path, r18):
  _, state = r18
  marker = tmp_path / 'payload_ran'
  evil = dict(state)
  evil['extra'] = _Payload(marker)
  torch.save(evil, tmp_path / 'evil.pth')
  assert not marker.exists()
  with pytest.raises(UserError) as info:
    convert.from_torchvision(tmp_path / 'evil.pth', 'resnet18')
  _assert_one_line(str(info.value), 'evil.pth contains code and was refused (it would load ',
                   'mkdir)')
  assert not marker.exists()


def test_num_classes_must_match_the_head(r18):
  path, _ = r18
  with pytest.raises(UserError) as info:
    convert.from_torchvision(path, 'resnet18', num_classes=5)
  _assert_one_line(str(info.value), '10-class head but num_classes=5',
                   '--include_top=false')
  # Dropping the head makes any class count irrelevant.
  variables = convert.from_torchvision(path, 'resnet18', num_classes=5,
                                       include_top=False)
  assert 'head' not in variables['params']


def test_notop_file_needs_include_top_false(tmp_path, r18):
  _, state = r18
  notop = {k: v.contiguous() for k, v in state.items()
           if not k.startswith('fc.')}
  save_file(notop, str(tmp_path / 'notop.safetensors'))
  with pytest.raises(UserError, match='has no classifier head'):
    convert.from_torchvision(tmp_path / 'notop.safetensors', 'resnet18')
  variables = convert.from_torchvision(tmp_path / 'notop.safetensors',
                                       'resnet18', include_top=False)
  np.testing.assert_array_equal(
      variables['params']['stem_conv']['kernel'],
      state['conv1.weight'].numpy().transpose(2, 3, 1, 0))
  np.testing.assert_array_equal(variables['batch_stats']['stem_bn']['var'],
                                state['bn1.running_var'].numpy())


def test_wrapped_checkpoint_is_unwrapped(tmp_path, r18):
  """Training checkpoints nest the state dict and DataParallel prefixes
  'module.'; both are common enough to read as is."""
  path, state = r18
  wrapped = {'epoch': 3, 'state_dict': {f'module.{k}': v
                                        for k, v in state.items()}}
  torch.save(wrapped, tmp_path / 'ckpt.pt')
  got = convert.from_torchvision(tmp_path / 'ckpt.pt', 'resnet18')
  jax.tree.map(np.testing.assert_array_equal, got,
               convert.from_torchvision(path, 'resnet18'))


@pytest.mark.parametrize('call, match', [
    (lambda p: convert.from_torchvision(p / 'absent.pth', 'resnet18'),
     'not found'),
    (lambda p: convert.from_torchvision(p / 'x.bin', 'resnet18'),
     'must be .pth'),
    (lambda p: convert.from_torchvision(p / 'x.pth', 'resnet99'),
     "unknown architecture 'resnet99'; choose one of: inception_v3, "),
])
def test_bad_arguments(tmp_path, call, match):
  (tmp_path / 'x.bin').write_bytes(b'x')
  (tmp_path / 'x.pth').write_bytes(b'x')
  with pytest.raises(UserError, match=match):
    call(tmp_path)


# ----------------------------------------------------------------------------
# Checksums in published file names.


def test_torchvision_name_checksum(tmp_path, r18):
  path, _ = r18
  data = path.read_bytes()
  digest = hashlib.sha256(data).hexdigest()
  good = tmp_path / f'resnet18-{digest[:8]}.pth'
  good.write_bytes(data)
  assert 'head' in convert.from_torchvision(good, 'resnet18')['params']
  bad_prefix = '0' * 8 if not digest.startswith('0' * 8) else '1' * 8
  bad = tmp_path / f'resnet18-{bad_prefix}.pth'
  bad.write_bytes(data)
  with pytest.raises(UserError) as info:
    convert.from_torchvision(bad, 'resnet18')
  _assert_one_line(str(info.value), f'{bad}', 'fails its checksum',
                   f'sha256 starts with {bad_prefix}')


def test_keras_published_name_checksum(tmp_path):
  name = 'resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5'
  with h5py.File(tmp_path / name, 'w') as f:
    f.attrs['layer_names'] = []
  with pytest.raises(UserError) as info:
    convert.from_keras(tmp_path / name, 'resnet50')
  _assert_one_line(str(info.value), 'fails its checksum', name)


def test_keras_md5_table_matches_installed_keras():
  """The table is copied from keras; keep it in step with the package."""
  from keras.src.applications import resnet as keras_resnet  # pylint: disable=g-import-not-at-top
  for arch in ('resnet50', 'resnet101', 'resnet152'):
    top, notop = keras_resnet.WEIGHTS_HASHES[arch]
    base = f'{arch}_weights_tf_dim_ordering_tf_kernels'
    assert keras_files.KERAS_MD5[f'{base}.h5'] == top
    assert keras_files.KERAS_MD5[f'{base}_notop.h5'] == notop


# ----------------------------------------------------------------------------
# Converted checkpoints.


def test_save_load_converted_roundtrip(tmp_path, r18):
  path, _ = r18
  variables = convert.from_torchvision(path, 'resnet18')
  meta = convert.convert_file('torchvision', path, tmp_path / 'out',
                              'resnet18')
  assert meta['num_classes'] == NUM_CLASSES
  assert meta['source_sha256'] == hashlib.sha256(path.read_bytes()).hexdigest()
  on_disk = json.loads((tmp_path / 'out' / 'metadata.json').read_text())
  assert {k: on_disk[k] for k in meta} == meta
  restored, meta2 = convert.load_converted(tmp_path / 'out')
  assert meta2['preprocess_style'] == 'torchvision'
  jax.tree.map(np.testing.assert_array_equal, restored, variables)

  from_dir = convert.load_weights(tmp_path / 'out', 'resnet18', 'torchvision')
  jax.tree.map(np.testing.assert_array_equal, from_dir, variables)
  from_file = convert.load_weights(path, 'resnet18', 'torchvision')
  jax.tree.map(np.testing.assert_array_equal, from_file, variables)
  notop = convert.load_weights(tmp_path / 'out', 'resnet18', 'torchvision',
                               include_top=False)
  assert 'head' not in notop['params']
  assert resnet.param_paths(notop['params']) == [
      p for p in resnet.param_paths(variables['params'])
      if not p.startswith('head/')]

  with pytest.raises(UserError, match='holds resnet18 .torchvision.'):
    convert.load_weights(tmp_path / 'out', 'resnet34', 'torchvision')
  with pytest.raises(UserError, match='10-class head'):
    convert.load_weights(tmp_path / 'out', 'resnet18', num_classes=3)
  with pytest.raises(UserError, match='not empty'):
    convert.save_converted(tmp_path / 'out', variables, meta)


def test_convert_file_rejects_unknown_source(tmp_path, r18):
  with pytest.raises(UserError, match="unknown weights source 'caffe'; "
                                      "choose one of: keras, torchvision"):
    convert.convert_file('caffe', r18[0], tmp_path / 'out', 'resnet18')
  assert not (tmp_path / 'out').exists()


def test_load_converted_needs_metadata(tmp_path):
  with pytest.raises(UserError, match='has no metadata.json'):
    convert.load_converted(tmp_path)


# ----------------------------------------------------------------------------
# python -m launch.convert


def _run_cli(*args):
  return subprocess.run([sys.executable, '-m', 'launch.convert', *args],
                        cwd=REPO_ROOT, capture_output=True, text=True,
                        timeout=300, check=False)


@pytest.mark.slow
def test_cli_converts(tmp_path, r18):
  path, _ = r18
  out = tmp_path / 'converted'
  result = _run_cli('--source=torchvision', '--arch=resnet18',
                    f'--input={path}', f'--output={out}',
                    '--include_top=false')
  assert result.returncode == 0, result.stderr
  meta = json.loads((out / 'metadata.json').read_text())
  assert meta['arch'] == 'resnet18' and meta['include_top'] is False
  assert meta['num_classes'] is None and meta['style'] == 'torchvision'
  assert str(out) in result.stdout
  variables, _ = convert.load_converted(out)
  assert 'head' not in variables['params']


@pytest.mark.parametrize('args, message', [
    (('--source=torchvision', '--arch=resnet18', '--output_dir=x'),
     "bad flag: Unknown command line flag 'output_dir'"),
    (('--source=torchvision',), '--arch is required'),
])
def test_cli_bad_flags_exit_2(tmp_path, r18, args, message):
  output = tmp_path / 'out'
  result = _run_cli(*args, f'--input={r18[0]}', f'--output={output}')
  assert result.returncode == 2
  lines = result.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), result.stderr
  assert message in lines[0]
  assert not output.exists()


def test_cli_refuses_non_empty_output(tmp_path, r18):
  path, _ = r18
  out = tmp_path / 'out'
  out.mkdir()
  (out / 'keep.txt').write_text('precious')
  result = _run_cli('--source=torchvision', '--arch=resnet18',
                    f'--input={path}', f'--output={out}')
  assert result.returncode == 2
  assert result.stderr.strip().startswith('error: output directory')
  assert len(result.stderr.strip().splitlines()) == 1
  assert (out / 'keep.txt').read_text() == 'precious'
  assert sorted(p.name for p in out.iterdir()) == ['keep.txt']
