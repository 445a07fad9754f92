"""Pure GAN train steps: a D step, a G step, a round of `n_d` D then `n_g` G steps,
and `lax.scan` over many rounds per jit call.

The train state is a dict pytree so orbax checkpoints it whole:
  g, d     generator / discriminator variables ({'params', maybe 'batch_stats'})
  ema      EMA of the generator's variables (used for evaluation and samples)
  g_opt, d_opt  optimiser states
  step     rounds completed (int32)
  rng      raw key data (uint32 [2]); round `s` uses fold_in(rng, s)
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common.distributed import to_host
from common.sharding import constrain_batch
from gan import losses as losses_lib
from gan.models import sample_noise

State = dict[str, Any]


def apply_model(model: nn.Module, variables: dict, x: jax.Array, train: bool):
  """`model.apply` that threads mutable 'batch_stats' (BatchNorm, spectral norm) in train mode."""
  # Outputs leave in float32 whatever the computation dtype, so losses stay exact.
  if train and 'batch_stats' in variables:
    out, updates = model.apply(variables, x, train=True, mutable=['batch_stats'])
    return out.astype(jnp.float32), {**variables, **updates}
  return model.apply(variables, x, train=train).astype(jnp.float32), variables


def make_optimizer(lr: float, cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
  if cfg.optimizer == 'adam':
    return optax.adam(lr, b1=cfg.b1, b2=cfg.b2)
  if cfg.optimizer == 'sgd':
    return optax.sgd(lr)
  raise ValueError(cfg.optimizer)  # validated in gan.train


class GanSteps:
  """The jit-compiled pieces of GAN training for one (G, D, loss, schedule) choice.

  `real_fn(key, batch_or_none) -> [B, ...]` supplies real data: 2D sources
  sample on device from the key; image datasets pass the batch through.
  """

  def __init__(self, generator: nn.Module, discriminator: nn.Module,
               config: ml_collections.ConfigDict, real_fn: Callable, mesh=None):
    self.G, self.D = generator, discriminator
    self.mesh = mesh
    self.cfg = config
    self.loss = losses_lib.get_loss(config.loss.name)
    self.real_fn = real_fn
    self.g_tx = make_optimizer(config.train.g_lr, config.train)
    self.d_tx = make_optimizer(config.train.d_lr, config.train)
    self.batch = config.data.batch_size
    self.train_chunk = jax.jit(self._train_chunk, static_argnums=2, donate_argnums=0)
    self.sample = jax.jit(self._sample, static_argnums=2)

  # ---- state ----------------------------------------------------------------
  def init(self, key: jax.Array, data_shape: tuple[int, ...]) -> State:
    kg, kd, kr = jax.random.split(key, 3)
    z = self.noise(kg, 2)
    g = self.G.init(kg, z, train=False)
    d = self.D.init(kd, jnp.zeros((2, *data_shape), jnp.float32), train=False)
    g, d = dict(g), dict(d)
    return {'g': g, 'd': d, 'ema': jax.tree.map(jnp.copy, g),
            'g_opt': self.g_tx.init(g['params']), 'd_opt': self.d_tx.init(d['params']),
            'step': jnp.zeros((), jnp.int32), 'rng': jax.random.key_data(kr)}

  def noise(self, key: jax.Array, n: int) -> jax.Array:
    m = self.cfg.model
    return sample_noise(key, n, m.noise_dim, m.noise)

  def train_noise(self, key: jax.Array, n: int) -> jax.Array:
    """Noise for a training batch, laid out along the mesh's `data` axis."""
    return constrain_batch(self.noise(key, n), self.mesh)

  # ---- steps ----------------------------------------------------------------
  def d_logits_fn(self, d_vars: dict) -> Callable[[jax.Array], jax.Array]:
    """x -> logits with D frozen in inference mode (for penalties, plots, G steps)."""
    return lambda x: self.D.apply(d_vars, x, train=False).astype(jnp.float32)

  def d_step(self, state: State, real: jax.Array, key: jax.Array) -> tuple[State, dict]:
    kz, kp = jax.random.split(key)
    fake, _ = apply_model(self.G, state['g'], self.train_noise(kz, real.shape[0]), train=True)
    fake = jax.lax.stop_gradient(fake)
    lcfg = self.cfg.loss

    def loss_fn(params):
      d_vars = {**state['d'], 'params': params}
      logits, new_d = apply_model(self.D, d_vars, jnp.concatenate([real, fake]), train=True)
      real_logits, fake_logits = jnp.split(logits, 2)
      loss = self.loss.d(real_logits, fake_logits)
      metrics = {'loss_d': loss, 'd_real': real_logits.mean(), 'd_fake': fake_logits.mean()}
      d_fn = self.d_logits_fn(d_vars)
      if lcfg.gp_weight > 0:
        gp = losses_lib.gradient_penalty(d_fn, real, fake, kp)
        loss += lcfg.gp_weight * gp
        metrics['gp'] = gp
      if lcfg.r1_gamma > 0:
        r1 = losses_lib.r1_penalty(d_fn, real)
        loss += 0.5 * lcfg.r1_gamma * r1
        metrics['r1'] = r1
      return loss, (new_d, metrics)

    grads, (new_d, metrics) = jax.grad(loss_fn, has_aux=True)(state['d']['params'])
    updates, d_opt = self.d_tx.update(grads, state['d_opt'], state['d']['params'])
    new_d = {**new_d, 'params': optax.apply_updates(state['d']['params'], updates)}
    return {**state, 'd': new_d, 'd_opt': d_opt}, metrics

  def g_step(self, state: State, key: jax.Array) -> tuple[State, dict]:
    z = self.train_noise(key, self.batch)
    d_fn = self.d_logits_fn(state['d'])

    def loss_fn(params):
      fake, new_g = apply_model(self.G, {**state['g'], 'params': params}, z, train=True)
      return self.loss.g(d_fn(fake)), new_g

    (loss, new_g), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['g']['params'])
    updates, g_opt = self.g_tx.update(grads, state['g_opt'], state['g']['params'])
    params = optax.apply_updates(state['g']['params'], updates)
    new_g = {**new_g, 'params': params}
    # Warm-up so short runs are not dominated by the initial weights (as in common EMA practice).
    step = state['step'].astype(jnp.float32)
    decay = jnp.minimum(self.cfg.train.ema_decay, (1.0 + step) / (10.0 + step))
    ema = {**new_g, 'params': jax.tree.map(lambda e, p: decay * e + (1 - decay) * p,
                                           state['ema']['params'], params)}
    return {**state, 'g': new_g, 'g_opt': g_opt, 'ema': ema}, {'loss_g': loss}

  def round(self, state: State, batches: Any) -> tuple[State, dict]:
    """`n_d` D steps (each on its own real batch), then `n_g` G steps."""
    n_d, n_g = self.cfg.train.n_d, self.cfg.train.n_g
    key = jax.random.fold_in(jax.random.wrap_key_data(state['rng']), state['step'])
    d_keys, real_keys, g_keys = jnp.split(jax.random.split(key, 2 * n_d + n_g), [n_d, 2 * n_d])
    metrics = {}
    for i in range(n_d):
      batch = None if batches is None else jax.tree.map(lambda b: b[i], batches)
      real = constrain_batch(self.real_fn(real_keys[i], batch), self.mesh)
      state, metrics_d = self.d_step(state, real, d_keys[i])
      metrics.update(metrics_d)
    for j in range(n_g):
      state, metrics_g = self.g_step(state, g_keys[j])
      metrics.update(metrics_g)
    return {**state, 'step': state['step'] + 1}, metrics

  def _train_chunk(self, state: State, batches: Any, num_rounds: int) -> tuple[State, dict]:
    """`num_rounds` rounds fused with lax.scan; metrics are per-round [num_rounds]."""
    return jax.lax.scan(self.round, state, batches, length=num_rounds)

  def _sample(self, g_vars: dict, key: jax.Array, n: int) -> jax.Array:
    return self.G.apply(g_vars, self.noise(key, n), train=False)


def chunk_means(metrics: dict) -> dict[str, float]:
  """Per-round metric arrays -> their means over the chunk (host floats)."""
  return {k: float(np.mean(to_host(v))) for k, v in metrics.items()}


def all_finite(metrics: dict) -> bool:
  return all(bool(np.isfinite(to_host(v)).all()) for v in metrics.values())
