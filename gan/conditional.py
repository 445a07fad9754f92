"""Class-conditional GANs: G(z, y) and D(x, y) for labelled image datasets.

- Generator: a learned label embedding [B, E] concatenated to z, feeding the unconditional DCGAN
  generator (Mirza & Osindero 2014 style input conditioning).
- Discriminators (`model.conditioning`, registry `CONDITIONINGS`):
  - `projection` (Miyato & Koyama 2018): logit = psi(phi(x)) + <embed(y), phi(x)>, where phi is
    the DCGAN discriminator's trunk and embed a learned class matrix [K, F] (spectrally
    normalised with the rest of D when `model.spectral_norm`).
  - `acgan` (Odena et al. 2017): D ignores y for its real/fake logit and predicts the class from
    phi(x) with an auxiliary head; the train step adds the class cross-entropy to both losses.

Every conditional D returns (logits [B], class_logits [B, K] or None), float32.
"""
from __future__ import annotations

from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp

from common.errors import UserError, unknown_name
from gan import images, models
from gan.models import DCGAN_INIT, DownConv, Linear, spectral_normalize

Array = jax.Array
Dtype = Any

class ConditionalGenerator(nn.Module):
  """z [B, Z], labels [B] (int) -> images [B, S, S, C]: `base` applied to [z, embed(labels)]."""
  base: nn.Module
  num_classes: int
  embed_dim: int = 32

  @nn.compact
  def __call__(self, z: Array, labels: Array, train: bool = False) -> Array:
    e = nn.Embed(self.num_classes, self.embed_dim, name='label_embed')(labels)
    return self.base(jnp.concatenate([z, e.astype(z.dtype)], axis=-1), train=train)


class DCGANTrunk(nn.Module):
  """images [B, S, S, C] -> phi [B, F]: the DCGAN discriminator without its last linear layer."""
  image_size: int
  channels: int = 1
  features: int = 64
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, train: bool = False) -> Array:
    models._check_images(x, self.image_size, self.channels)
    _, n_down = models._dcgan_plan(self.image_size)
    h = x.astype(self.dtype)
    for i in range(n_down):
      h = DownConv(self.features * 2 ** i, self.spectral_norm, dtype=self.dtype)(h, train)
      h = nn.leaky_relu(h, negative_slope=0.2)
    return h.reshape(h.shape[0], -1)


class ProjectionDiscriminator(nn.Module):
  """(images [B, S, S, C], labels [B]) -> (logits [B], None), with the projection term."""
  image_size: int
  channels: int = 1
  features: int = 64
  num_classes: int = 10
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, labels: Array, train: bool = False) -> tuple[Array, None]:
    phi = DCGANTrunk(self.image_size, self.channels, self.features, self.spectral_norm,
                     self.dtype, name='trunk')(x, train)
    logits = Linear(1, self.spectral_norm, kernel_init=DCGAN_INIT, dtype=self.dtype)(phi, train)
    embed = self.param('class_embed', nn.initializers.xavier_uniform(),
                       (self.num_classes, phi.shape[-1]), jnp.float32)
    if self.spectral_norm:
      embed = spectral_normalize(self, embed, train)
    proj = jnp.sum(embed[labels].astype(self.dtype) * phi, axis=-1)
    return (logits[:, 0] + proj).astype(jnp.float32), None


class ACGANDiscriminator(nn.Module):
  """(images [B, S, S, C], labels [B], unused) -> (logits [B], class_logits [B, K])."""
  image_size: int
  channels: int = 1
  features: int = 64
  num_classes: int = 10
  spectral_norm: bool = False
  dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, labels: Array, train: bool = False) -> tuple[Array, Array]:
    del labels  # ACGAN's D infers the class; the label enters only through the auxiliary loss
    phi = DCGANTrunk(self.image_size, self.channels, self.features, self.spectral_norm,
                     self.dtype, name='trunk')(x, train)
    logits = Linear(1, self.spectral_norm, kernel_init=DCGAN_INIT, dtype=self.dtype)(phi, train)
    class_logits = Linear(self.num_classes, self.spectral_norm, kernel_init=DCGAN_INIT,
                          dtype=self.dtype, name='aux_head')(phi, train)
    return logits[:, 0].astype(jnp.float32), class_logits.astype(jnp.float32)


CONDITIONINGS: dict[str, type[nn.Module]] = {
  'projection': ProjectionDiscriminator,
  'acgan': ACGANDiscriminator,
}


def check_config(model_cfg: Mapping[str, Any], data_cfg: Any) -> None:
  """UserError unless `model_cfg` describes a conditional model that the data (a config's
  `data` section) can train."""
  k = model_cfg.get('num_classes', 0)
  if model_cfg.get('conditioning') not in CONDITIONINGS:
    raise unknown_name('model.conditioning', model_cfg.get('conditioning'), CONDITIONINGS)
  known = images.num_classes(data_cfg.name) if data_cfg.name in images.IMAGE_DATASETS else 0
  if not known and data_cfg.name != 'folder':  # a folder's classes are counted when it is read
    labelled = [n for n in images.IMAGE_DATASETS if images.num_classes(n) != 0]
    raise UserError(f'model.num_classes={k} needs a labelled image dataset, not '
                    f'{data_cfg.name!r}: use one of {", ".join(labelled)} or set '
                    'model.num_classes=0')
  if known and k != known:
    raise UserError(f'model.num_classes={k} but {data_cfg.name} has {known} classes; '
                    f'set model.num_classes={known}')
  if model_cfg.get('name') not in models.IMAGE_MODELS:
    raise UserError(f"conditional GANs are built on model.name='dcgan' or 'sngan', not "
                    f"{model_cfg.get('name')!r}; set model.name=dcgan or sngan")
  if model_cfg.get('embed_dim', 32) < 1:
    raise UserError(f"model.embed_dim must be at least 1, got {model_cfg.get('embed_dim')}")


def create_models(model_cfg: Mapping[str, Any], data_shape: tuple[int, ...]
                  ) -> tuple[nn.Module, nn.Module]:
  """(G(z, y), D(x, y)) for `model_cfg.conditioning`, sized like `models.create_models`."""
  if model_cfg.get('conditioning') not in CONDITIONINGS:
    raise unknown_name('model.conditioning', model_cfg.get('conditioning'), CONDITIONINGS)
  k = int(model_cfg.get('num_classes', 0))
  if k < 1:
    raise UserError(f'a conditional model needs model.num_classes >= 1, got {k}')
  if model_cfg.get('name') == 'sngan':  # conditional BatchNorm and projection built in
    return models.create_models(model_cfg, data_shape)
  g_base, d_base = models.create_models(model_cfg, data_shape)
  if not isinstance(d_base, models.DCGANDiscriminator):
    raise UserError("conditional GANs are built on model.name='dcgan'; set model.name=dcgan")
  d_cls = CONDITIONINGS[model_cfg['conditioning']]
  return (ConditionalGenerator(g_base, k, int(model_cfg.get('embed_dim', 32))),
          d_cls(d_base.image_size, d_base.channels, d_base.features, k,
                d_base.spectral_norm, d_base.dtype))


def sample_labels(key: Array, n: int, num_classes: int) -> Array:
  """Class labels [n] (int32), uniform over the classes."""
  return jax.random.randint(key, (n,), 0, num_classes, jnp.int32)


def balanced_labels(n: int, num_classes: int) -> Array:
  """[n] labels 0, 1, ..., K-1, 0, 1, ...: every class equally often (up to one)."""
  return jnp.arange(n, dtype=jnp.int32) % num_classes
