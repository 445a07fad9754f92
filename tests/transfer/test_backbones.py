"""Every registered backbone builds; weight files of one family given for another are named for
what they hold, in one line; InceptionV3 refuses small images; `launch.convert` takes the new
archs. Weight files here carry real tensor names; values are real only where a test converts.
"""
import inspect
import json

import h5py
import jax
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from common import torch_reference
from common.config import load_config
from common.errors import UserError
from launch import convert as convert_cli
from tests.transfer import refs  # noqa: F401  (selects keras' JAX backend)
from transfer import convert, create_model, freeze, keras_files, layouts, models, weights

DIGITS = 'transfer/configs/digits.py:fine_tune,quick'


@pytest.mark.parametrize('arch', list(models.ARCHS))
def test_every_arch_builds_and_every_parameter_has_a_part(arch):
  """Each arch in each style traces; every parameter is the head's or one part's, so the
  freezing modes cover the whole network."""
  fam = models.family(arch)
  for style in models.STYLES:
    try:
      models.check_arch(arch, style)
    except UserError:
      continue
    variables = models.abstract_variables(arch, style, 7, True)
    paths = models.param_paths(variables['params'])
    rules, _ = freeze.mode_rules('fine_tune', parts=models.part_rules(arch), layer_decay=0.5)
    labels = freeze.label_params(variables['params'], rules)
    found = set(jax.tree.leaves(labels))
    assert freeze.FROZEN not in found, (arch, style)
    assert found == {'head', *fam.parts}, (arch, style, found)
    assert variables['params']['head']['kernel'].shape[-1] == 7
    assert all(p.split('/')[0] in (*fam.parts, 'head', 'fc1', 'fc2', 'stem_conv', 'stem_bn')
               for p in paths)


def test_resnet_parts_are_the_old_rules():
  assert models.part_rules('resnet50') == freeze.RESNET_PARTS


def test_partial_counts_parts_per_family():
  for arch, n in (('resnet18', 4), ('vgg16', 5), ('inception_v3', 12)):
    parts = models.part_rules(arch)
    assert freeze.max_trainable_parts(parts) == n
    rules, _ = freeze.mode_rules('partial', trainable_stages=2, parts=parts)
    assert [label for _, label in rules] == ['head', 'backbone', 'backbone', freeze.FROZEN]
    with pytest.raises(UserError, match=f'in 1..{n} for mode partial'):
      freeze.mode_rules('partial', trainable_stages=n + 1, parts=parts)


def test_layer_decay_counts_from_the_head():
  _, mults = freeze.mode_rules('fine_tune', parts=models.part_rules('vgg16'), layer_decay=0.5,
                               backbone_lr_mult=1.0)
  assert mults['block5'] == 0.5 and mults['block1'] == 0.5 ** 5


def test_preprocessing_styles_of_the_sources():
  assert models.preprocess_style('vgg16', 'keras') == 'keras'  # caffe
  assert models.preprocess_style('inception_v3', 'keras') == 'tf'  # [-1, 1]
  assert models.preprocess_style('inception_v3', 'torchvision') == 'torchvision'


def test_inception_compiles_with_xla_kernels_resnets_and_vggs_with_plain_jit():
  """InceptionV3 declares XLA:CPU's own kernels (faster there); ResNets and VGGs keep jax.jit."""
  from common.kernels import xla_cpu  # pylint: disable=g-import-not-at-top
  assert xla_cpu.jit_for(create_model('inception_v3', 5)) is xla_cpu.jit_xla_kernels
  for arch in ('resnet18', 'vgg16'):
    assert xla_cpu.jit_for(create_model(arch, 5)) is jax.jit


@pytest.mark.slow
def test_inception_forward_with_xla_kernels_agrees_with_plain_jit():
  """The forward the runs use (features.forward_fn, XLA:CPU's own kernels) matches a plain
  jax.jit of the same model."""
  from transfer import features  # pylint: disable=g-import-not-at-top
  model = create_model('inception_v3', 5)
  variables = jax.jit(model.init)(jax.random.key(0), np.zeros((1, 75, 75, 3), np.float32))
  images = np.random.default_rng(0).integers(0, 256, (2, 80, 77, 3), np.uint8)
  logits, pooled = features.forward_fn(model, 'torchvision')(variables, images)
  ref_logits, ref_stages = jax.jit(lambda v, x: model.apply(
      v, features.preprocess(x, 'torchvision'), capture_stages=True))(variables, images)
  scale = float(np.max(np.abs(ref_logits)))
  assert scale > 0
  np.testing.assert_allclose(logits, ref_logits, atol=1e-5 * scale, rtol=0)
  np.testing.assert_allclose(pooled, ref_stages['pool'], atol=1e-5 * float(
      np.max(np.abs(ref_stages['pool']))), rtol=0)


def test_inception_refuses_small_images():
  model = create_model('inception_v3', 3)
  with pytest.raises(UserError, match='at least 75x75 px, got 74x80'):
    jax.eval_shape(model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 74, 80, 3), np.float32))
  config = load_config(DIGITS, ['model.arch=inception_v3', 'model.weights='])
  from transfer import loop  # pylint: disable=g-import-not-at-top
  with pytest.raises(UserError, match='InceptionV3 needs images of at least 75x75 px, got 16x16'):
    loop.validate(config)


def test_keras_md5_table_matches_installed_keras():
  """The hashes are copied from keras' application modules; keep them in step."""
  from keras.src.applications import inception_v3, vgg16, vgg19  # pylint: disable=g-import-not-at-top
  for module, arch in ((vgg16, 'vgg16'), (vgg19, 'vgg19'), (inception_v3, 'inception_v3')):
    source = inspect.getsource(module)
    for suffix in ('', '_notop'):
      name = f'{arch}_weights_tf_dim_ordering_tf_kernels{suffix}.h5'
      assert f'file_hash="{keras_files.KERAS_MD5[name]}"' in source, name


# ----------------------------------------------------------------------------------------------
# Family mix-ups.


def _torch_names_file(tmp_path, names, name):
  path = tmp_path / name
  torch.save({n: torch.zeros(1) for n in names}, path)
  return path


def _names(arch):
  if arch == 'inception_v3':
    return torch_reference.TorchInceptionV3(10).state_dict()
  if arch.startswith('vgg'):
    return torch_reference.TorchVGG(arch, 10, include_top=False).state_dict()
  return torch_reference.TorchResNet(arch, 10).state_dict()


@pytest.mark.parametrize('held, asked', [('vgg16', 'inception_v3'), ('inception_v3', 'vgg16'),
                                         ('resnet50', 'vgg19'), ('vgg19_bn', 'resnet18')])
def test_torchvision_family_mixup_is_named(tmp_path, held, asked):
  path = _torch_names_file(tmp_path, _names(held), f'{held}.pth')
  with pytest.raises(convert.WeightsMismatchError) as info:
    convert.from_torchvision(path, asked)
  message = str(info.value)
  assert '\n' not in message
  assert message.startswith(f'weights file {held}.pth holds {held} weights (torchvision layout), '
                            f'not {asked}: ')
  assert f'--arch={held}' in message


def test_same_family_depth_mixup_lists_the_tensors(tmp_path):
  """VGG16 given as VGG19: same family, so the missing tensors are listed."""
  path = _torch_names_file(tmp_path, _names('vgg16'), 'vgg16.pth')
  with pytest.raises(convert.WeightsMismatchError, match='does not fit vgg19 .torchvision. but '
                     'looks like vgg16: .* missing'):
    convert.from_torchvision(path, 'vgg19', include_top=False)


def test_keras_family_mixup_is_named(tmp_path):
  """A legacy Keras VGG16 file (named layers) given as InceptionV3."""
  path = tmp_path / 'vgg16.h5'
  layers = [f'block{b}_conv{i}' for b, n in enumerate((2, 2, 3, 3, 3), 1)
            for i in range(1, n + 1)]
  with h5py.File(path, 'w') as f:
    f.attrs['layer_names'] = [n.encode() for n in layers]
    for name in layers:
      group = f.create_group(name)
      group.attrs['weight_names'] = [f'{name}/kernel:0'.encode()]
      group.create_dataset(f'{name}/kernel:0', data=np.zeros(1, np.float32))
  with pytest.raises(convert.WeightsMismatchError,
                     match=r'holds vgg16 weights \(keras layout\), not inception_v3'):
    convert.from_keras(path, 'inception_v3')


def test_config_with_a_file_of_another_family_is_refused_up_front(tmp_path):
  path = _torch_names_file(tmp_path, _names('vgg16'), 'vgg16.pth')
  config = load_config(DIGITS, [f'model.weights={path}', 'model.arch=inception_v3',
                                'data.image_size=75'])
  with pytest.raises(UserError) as info:
    weights.check_weights(config)
  assert str(info.value).startswith(f'model.weights {path} holds vgg16 (torchvision) weights '
                                    '(judged by its tensor names) but the config asks for '
                                    'inception_v3 (torchvision)')


def test_inception_aux_logits_are_not_unused(tmp_path):
  """torchvision's AuxLogits tensors are skipped, not reported as unused."""
  names = [n for n in _names('inception_v3')]
  assert any(n.startswith('AuxLogits.') for n in names)
  assert all(layouts.torchvision_ignored('inception_v3', n) for n in names
             if n.startswith('AuxLogits.') or n.endswith('num_batches_tracked'))


# ----------------------------------------------------------------------------------------------
# launch.convert.


def test_launch_convert_vgg16_features(tmp_path):
  """A torchvision VGG16 file without classifier -> converted directory, metadata with the
  preprocessing; loading it back gives the same variables."""
  model = torch_reference.torch_vgg('vgg16', 10, seed=3, include_top=False)
  save_file({k: v.contiguous() for k, v in model.state_dict().items()},
            str(tmp_path / 'vgg16.safetensors'))
  out = tmp_path / 'converted'
  convert_cli.main(['convert', '--source=torchvision', '--arch=vgg16', '--include_top=false',
                    f'--input={tmp_path / "vgg16.safetensors"}', f'--output={out}'])
  meta = json.loads((out / convert.METADATA_FILE).read_text())
  assert (meta['arch'], meta['preprocess_style'], meta['include_top']) == ('vgg16', 'torchvision',
                                                                          False)
  loaded = convert.load_weights(out, 'vgg16', 'torchvision', include_top=False)
  direct = convert.from_torchvision(tmp_path / 'vgg16.safetensors', 'vgg16', include_top=False)
  jax.tree.map(np.testing.assert_array_equal, loaded, direct)
