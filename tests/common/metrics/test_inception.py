"""FID InceptionV3: parity with an independent torch network, converter and input checks."""
import hashlib

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.errors import UserError
from common.metrics import inception
from common.torch_reference import random_fid_inception


@pytest.fixture(scope='module')
def torch_net():
  return random_fid_inception(seed=0)


@pytest.fixture(scope='module')
def weights_file(torch_net, tmp_path_factory):
  """The random network saved under a torch-hub style name carrying its real sha256 prefix."""
  tmp = tmp_path_factory.mktemp('weights') / 'unnamed.pth'
  torch.save(torch_net.state_dict(), tmp)
  digest = hashlib.sha256(tmp.read_bytes()).hexdigest()[:8]
  path = tmp.with_name(f'pt_inception-2015-12-05-{digest}.pth')
  tmp.rename(path)
  return path


@pytest.mark.parametrize('size', [32, 64, 400])
def test_resize_matches_torch_bilinear(size):
  x = np.random.default_rng(size).random((2, size, size + 3, 3), dtype=np.float32)  # not square
  got = np.asarray(inception.resize_bilinear(jnp.asarray(x), 299))
  want = F.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=(299, 299),
                       mode='bilinear', align_corners=False).permute(0, 2, 3, 1).numpy()
  # Both compute the source coordinate (i + 0.5) * scale - 0.5 in float32; one ulp of it (at
  # most size * 2**-23) moves a bilinear weight by as much, and compilers round it differently
  # (on an H100: 3.7e-6 at 64 and 400 px, against under 2e-6 on the CPU). A wrong convention
  # (align_corners=True; antialiasing, which matters when shrinking 400 px) is off by over 0.2.
  np.testing.assert_allclose(got, want, atol=size * 2.0**-23)


@pytest.mark.slow
def test_features_and_logits_match_torch(torch_net, weights_file):
  variables = inception.convert_pytorch_fid(str(weights_file))
  x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
  feats, logits = inception.fid_features(variables, x, return_logits=True)
  with torch.no_grad():
    want_pool, _ = torch_net(torch.from_numpy(x).permute(0, 3, 1, 2))
  want_pool = want_pool.numpy()
  # Inception Score logits leave out the fc bias.
  want_logits = want_pool @ torch_net.fc.weight.detach().numpy().T
  assert feats.shape == (2, inception.POOL_DIM) and logits.shape == (2, inception.NUM_CLASSES)
  assert np.abs(want_pool).max() > 1.0  # activations survived the depth: the check means something
  assert np.abs(feats - want_pool).max() / np.abs(want_pool).max() <= 1e-4
  assert np.abs(logits - want_logits).max() / np.abs(want_logits).max() <= 1e-4


def test_hash_in_file_name_is_checked(weights_file, tmp_path):
  wrong = tmp_path / 'pt_inception-2015-12-05-deadbeef.pth'
  wrong.symlink_to(weights_file)
  with pytest.raises(UserError, match='sha256'):
    inception.convert_pytorch_fid(str(wrong))


def test_weights_of_another_network_refused(torch_net, tmp_path):
  state = dict(torch_net.state_dict())
  del state['Mixed_7c.branch_pool.conv.weight']
  state['fc.weight'] = torch.zeros(1000, 2048)  # torchvision's 1000 ImageNet classes
  state['AuxLogits.fc.weight'] = torch.zeros(1000, 768)
  path = tmp_path / 'inception_v3_google.pth'
  torch.save(state, path)
  with pytest.raises(UserError) as info:
    inception.convert_pytorch_fid(str(path))
  msg = str(info.value)
  assert '\n' not in msg
  assert 'missing keys 1 (Mixed_7c.branch_pool.conv.weight)' in msg
  assert 'unused keys 1 (AuxLogits.fc.weight)' in msg
  assert 'fc.weight file [1000, 2048] vs [1008, 2048]' in msg


def test_missing_weights_file_refused(tmp_path):
  with pytest.raises(UserError, match='does not exist'):
    inception.convert_pytorch_fid(str(tmp_path / 'nope.pth'))


def test_corrupt_weights_file_refused_as_corrupt(tmp_path):
  path = tmp_path / 'pt_inception.pth'
  path.write_bytes(b'\x00' + bytes(range(256)) * 20)  # bytes of no weights format
  with pytest.raises(UserError) as info:
    inception.convert_pytorch_fid(str(path))
  msg = str(info.value)
  assert '\n' not in msg and 'code' not in msg
  assert f'weights file {path} is corrupt or not a torch file' in msg


def test_check_images_accepts_nhwc_floats_and_tiles_gray():
  out = inception.check_images(np.full((2, 8, 8, 1), 0.5, np.float64))
  assert out.shape == (2, 8, 8, 3) and out.dtype == np.float32
  np.testing.assert_array_equal(out, 0.5)


@pytest.mark.parametrize('images, found', [
    (np.zeros((2, 3, 32, 32), np.float32), 'NCHW'),
    (np.zeros((2, 32, 32, 3), np.uint8), 'uint8'),
    (np.full((2, 32, 32, 3), -0.5, np.float32), r'\[-1, 1\]'),
    (np.full((2, 32, 32, 3), 200.0, np.float32), r'\[0, 255\]'),
    (np.zeros((32, 32, 3), np.float32), 'batch axis'),
])
def test_check_images_names_the_problem(images, found):
  with pytest.raises(UserError, match=found):
    inception.check_images(images)
