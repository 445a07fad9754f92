"""GAN objectives on raw discriminator logits, and input-gradient penalties.

Every loss is a scalar to minimise, averaged over the batch; real and fake batches are
averaged separately, so they may differ in size. Log-sigmoids use the stable
`jax.nn.log_sigmoid` / softplus forms: log sigma(x) = -softplus(-x), log(1 - sigma(x)) = -softplus(x).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from common.errors import UserError, unknown_name

Array = jax.Array


class Loss(NamedTuple):
  """d(real_logits [B], fake_logits [B]) -> scalar; g(fake_logits [B]) -> scalar."""
  d: Callable[[Array, Array], Array]
  g: Callable[[Array], Array]


def _bce_d(real: Array, fake: Array) -> Array:
  # -log sigma(r) - log(1 - sigma(f))
  return jnp.mean(jax.nn.softplus(-real)) + jnp.mean(jax.nn.softplus(fake))


def _minimax_g(fake: Array) -> Array:
  # log(1 - sigma(f)), minimised: the original saturating objective of Goodfellow et al.
  return jnp.mean(jax.nn.log_sigmoid(-fake))


def _ns_g(fake: Array) -> Array:
  # -log sigma(f)
  return jnp.mean(jax.nn.softplus(-fake))


def _lsgan_d(real: Array, fake: Array) -> Array:
  # Mao et al. 2017 with targets b=1 (real), a=0 (fake) and their 1/2 factors:
  # 0.5 * E[(D(x) - 1)^2] + 0.5 * E[D(G(z))^2].
  return 0.5 * jnp.mean((real - 1.0) ** 2) + 0.5 * jnp.mean(fake ** 2)


def _lsgan_g(fake: Array) -> Array:
  # 0.5 * E[(D(G(z)) - 1)^2] (target c=1).
  return 0.5 * jnp.mean((fake - 1.0) ** 2)


def _hinge_d(real: Array, fake: Array) -> Array:
  return jnp.mean(jax.nn.relu(1.0 - real)) + jnp.mean(jax.nn.relu(1.0 + fake))


def _wgan_d(real: Array, fake: Array) -> Array:
  return jnp.mean(fake) - jnp.mean(real)


def _neg_mean_g(fake: Array) -> Array:
  return -jnp.mean(fake)


LOSSES: dict[str, Loss] = {
  'minimax': Loss(_bce_d, _minimax_g),
  'ns': Loss(_bce_d, _ns_g),
  'lsgan': Loss(_lsgan_d, _lsgan_g),
  'hinge': Loss(_hinge_d, _neg_mean_g),
  'wgan': Loss(_wgan_d, _neg_mean_g),
}


def get_loss(name: str) -> Loss:
  """The registered objective `name` (see LOSSES)."""
  if name not in LOSSES:
    raise unknown_name('loss.name', name, LOSSES)
  return LOSSES[name]


def _input_grad_sq_norms(d_fn: Callable[[Array], Array], x: Array) -> Array:
  """||d logit_i / d x_i||^2 per sample [B]. One grad of the summed logits suffices
  because D has no cross-sample operations (no BatchNorm), so d logit_j / d x_i = 0 for j != i."""
  grads = jax.grad(lambda batch: jnp.sum(d_fn(batch)))(x)
  return jnp.sum(jnp.square(grads.reshape(x.shape[0], -1)), axis=1)


def gradient_penalty(d_fn: Callable[[Array], Array], real: Array, fake: Array,
                     key: Array) -> Array:
  """WGAN-GP (Gulrajani et al. 2017): mean over B of (||grad_x D(x_hat)||_2 - 1)^2.

  real, fake [B, ...]; x_hat = eps * real + (1 - eps) * fake with eps ~ U[0, 1] drawn
  per sample from `key`; d_fn maps [B, ...] to logits [B]. The caller multiplies by its
  weight (lambda, 10 in the paper).
  """
  if real.shape != fake.shape:
    raise UserError(f'gradient penalty needs real and fake batches of one shape, got '
                    f'{real.shape} and {fake.shape}: pass equal batch sizes')
  eps = jax.random.uniform(key, (real.shape[0],) + (1,) * (real.ndim - 1), real.dtype)
  x_hat = eps * real + (1.0 - eps) * fake
  # The tiny floor keeps the sqrt's gradient finite where the input gradient is zero.
  norms = jnp.sqrt(_input_grad_sq_norms(d_fn, x_hat) + 1e-12)
  return jnp.mean((norms - 1.0) ** 2)


def r1_penalty(d_fn: Callable[[Array], Array], real: Array) -> Array:
  """R1 (Mescheder et al. 2018): mean over B of ||grad_x D(x)||_2^2 at real data [B, ...].

  Returned without the gamma / 2 factor: the caller adds 0.5 * gamma * r1_penalty(...).
  """
  return jnp.mean(_input_grad_sq_norms(d_fn, real))
