"""Pure GAN train steps: a D step, a G step, a round of `n_d` D then `n_g` G steps,
and `lax.scan` over many rounds per jit call.

The train state is a dict pytree so orbax checkpoints it whole:
  g, d     generator / discriminator variables ({'params', maybe 'batch_stats'})
  ema      EMA of the generator's variables (used for evaluation and samples)
  g_opt, d_opt  optimiser states
  step     rounds completed (int32)
  rng      raw key data (uint32 [2]); round `s` uses fold_in(rng, s)

With `model.num_classes > 0` training is class-conditional: real batches bring labels, fake
labels are drawn uniformly from the round key's 'labels' stream, G and D take (input, labels),
and ACGAN discriminators add `loss.aux_weight` times their class cross-entropy to both losses.
Unconditional training runs exactly the computation it ran before conditioning existed.

With `augment.name` set (gan.augment), every image D sees is augmented with keys from the round
key's 'augment' stream; ADA keeps its probability in the state as `augment_p` (float32 []) and
moves it once per round. Runs without augmentation are untouched by it.
"""
from __future__ import annotations

from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from common import optim as optim_lib
from common import rng as rng_lib
from common.distributed import to_host
from common.kernels.xla_cpu import jit_for
from common.sharding import constrain_batch, constrain_state
from gan import augment as augment_lib
from gan import conditional
from gan import losses as losses_lib
from gan.models import sample_noise

State = dict[str, Any]


def player_optimizer(optim: ml_collections.ConfigDict, player: str) -> str:
  """The optimiser of `player` ('g' or 'd'): `optim.<player>_name`, else `optim.name`."""
  return optim.get(f'{player}_name', '') or optim.name


def hyperparams(config: ml_collections.ConfigDict) -> dict[str, np.ndarray]:
  """The values a compiled chunk of rounds takes as arguments, not constants, so that changing
  them mid-run (a live edit) needs no recompilation: float32 scalars, rounded exactly as the
  constants they stand for would be."""
  o, l = config.optim, config.loss
  every = int(l.get('r1_every', 1))
  return {'g_lr': np.float32(o.g_lr), 'd_lr': np.float32(o.d_lr),
          'gp_weight': np.float32(l.gp_weight),
          'r1_coef': np.float32(0.5 * l.r1_gamma * every)}


def _float32(out):
  return jax.tree.map(lambda a: a.astype(jnp.float32), out)


def apply_model(model: nn.Module, variables: dict, x: jax.Array, train: bool,
                labels: jax.Array | None = None):
  """`model.apply` that threads mutable 'batch_stats' (BatchNorm, spectral norm) in train mode.

  Conditional models are called as model(x, labels [B]); their outputs may be tuples.
  """
  inputs = (x,) if labels is None else (x, labels)
  # Outputs leave in float32 whatever the computation dtype, so losses stay exact.
  if train and 'batch_stats' in variables:
    out, updates = model.apply(variables, *inputs, train=True, mutable=['batch_stats'])
    return _float32(out), {**variables, **updates}
  return _float32(model.apply(variables, *inputs, train=train)), variables


def class_loss(class_logits: jax.Array, labels: jax.Array) -> jax.Array:
  """Mean softmax cross-entropy of class_logits [B, K] against labels [B] (ACGAN's L_C)."""
  return optax.softmax_cross_entropy_with_integer_labels(class_logits, labels).mean()


def make_optimizer(lr: float | jax.Array, optim: ml_collections.ConfigDict,
                   num_updates: int, name: str = '') -> optax.GradientTransformation:
  """`name` (default `optim.name`) at `lr` along `optim.schedule` over the run's `num_updates`
  (common.optim). `lr` may be a traced scalar: the optimiser's state does not depend on it."""
  tx = optim_lib.direction(name or optim.name, b1=optim.b1, b2=optim.b2,
                           momentum=optim.momentum, weight_decay=optim.weight_decay)
  lr = optim_lib.schedule(lr, optim.schedule, num_updates, optim.warmup_steps)
  return optax.chain(tx, optax.scale_by_learning_rate(lr))


class GanSteps:
  """The jit-compiled pieces of GAN training for one (G, D, loss, schedule) choice.

  `real_fn(key, batch_or_none) -> [B, ...]` supplies real data: 2D sources
  sample on device from the key; image datasets pass the batch through.
  Conditional runs (`model.num_classes > 0`) read real labels from `batch['label']` [B].
  """

  def __init__(self, generator: nn.Module, discriminator: nn.Module,
               config: ml_collections.ConfigDict, real_fn: Callable, mesh=None):
    self.G, self.D = generator, discriminator
    self.mesh = mesh
    self.cfg = config
    self.loss = losses_lib.get_loss(config.loss.name)
    self.real_fn = real_fn
    o = config.optim
    self.g_tx = self.optimizer('g', o.g_lr)
    self.d_tx = self.optimizer('d', o.d_lr)
    self.batch = config.data.batch_size
    self.num_classes = int(config.model.get('num_classes', 0))
    self.aux_weight = float(config.loss.get('aux_weight', 1.0))
    self.state_layout = (config.sharding.params, config.sharding.min_size)
    self.augment = augment_lib.build(config.augment)
    # The models declare whether their rounds compile better on XLA:CPU's own kernels.
    jit = jit_for(self.G, self.D)
    self._rounds = jit(self._train_rounds, static_argnums=4, donate_argnums=0)
    self.sample = jax.jit(self._sample, static_argnums=2)

  def optimizer(self, player: str, lr: float | jax.Array) -> optax.GradientTransformation:
    """`player`'s ('g' or 'd') optimiser at `lr` (a float, or a traced scalar inside a chunk)."""
    t, o = self.cfg.train, self.cfg.optim
    updates = t.steps * (t.n_g if player == 'g' else t.n_d)
    return make_optimizer(lr, o, updates, player_optimizer(o, player))

  def _tx(self, player: str, hp: dict | None) -> optax.GradientTransformation:
    if hp is None:
      return self.g_tx if player == 'g' else self.d_tx
    return self.optimizer(player, hp[f'{player}_lr'])

  # ---- state ----------------------------------------------------------------
  @property
  def conditional(self) -> bool:
    return self.num_classes > 0

  def init(self, key: jax.Array, data_shape: tuple[int, ...]) -> State:
    kg, kd, kr = jax.random.split(key, 3)
    z = self.noise(kg, 2)
    y = (jnp.zeros((2,), jnp.int32),) if self.conditional else ()
    g = self.G.init(kg, z, *y, train=False)
    d = self.D.init(kd, jnp.zeros((2, *data_shape), jnp.float32), *y, train=False)
    g, d = dict(g), dict(d)
    state = {'g': g, 'd': d, 'ema': jax.tree.map(jnp.copy, g),
             'g_opt': self.g_tx.init(g['params']), 'd_opt': self.d_tx.init(d['params']),
             'step': jnp.zeros((), jnp.int32), 'rng': jax.random.key_data(kr)}
    if self.augment is not None and self.augment.name == 'ada':
      state['augment_p'] = jnp.asarray(self.augment.p0, jnp.float32)
    return state

  def _augment(self, state: State, key: jax.Array, x: jax.Array) -> jax.Array:
    """x [B, ...] as D should see it: augmented with `key`."""
    return self.augment.apply(key, x, state.get('augment_p'))

  def noise(self, key: jax.Array, n: int) -> jax.Array:
    m = self.cfg.model
    return sample_noise(key, n, m.noise_dim, m.noise)

  # ---- steps ----------------------------------------------------------------
  def d_logits_fn(self, d_vars: dict, labels: jax.Array | None = None
                  ) -> Callable[[jax.Array], jax.Array]:
    """x -> logits with D frozen in inference mode (for penalties, plots, G steps); a conditional
    D scores every x against `labels` [B]."""
    if labels is None:
      return lambda x: self.D.apply(d_vars, x, train=False).astype(jnp.float32)
    return lambda x: self.D.apply(d_vars, x, labels, train=False)[0].astype(jnp.float32)

  def d_step(self, state: State, real: jax.Array, key: jax.Array,
             real_labels: jax.Array | None = None,
             fake_labels: jax.Array | None = None,
             noise: jax.Array | None = None, hp: dict | None = None,
             aug_key: jax.Array | None = None) -> tuple[State, dict]:
    """`noise`, when given, is the G input this step would draw from `key` (see `round_draws`);
    `hp`, when given, is `hyperparams(config)` as traced values; `aug_key` augments real and
    fake alike (independent draws per image)."""
    kz, kp = jax.random.split(key)
    if noise is None:
      noise = self.noise(kz, real.shape[0])
    fake, _ = apply_model(self.G, state['g'], constrain_batch(noise, self.mesh), train=True,
                          labels=fake_labels)
    fake = jax.lax.stop_gradient(fake)
    if aug_key is not None:
      real, fake = jnp.split(self._augment(state, aug_key, jnp.concatenate([real, fake])), 2)
    lcfg = self.cfg.loss
    labels = None if real_labels is None else jnp.concatenate([real_labels, fake_labels])

    def loss_fn(params):
      d_vars = {**state['d'], 'params': params}
      out, new_d = apply_model(self.D, d_vars, jnp.concatenate([real, fake]), train=True,
                               labels=labels)
      logits, class_logits = (out, None) if labels is None else out
      real_logits, fake_logits = jnp.split(logits, 2)
      loss = self.loss.d(real_logits, fake_logits)
      metrics = {'loss_d': loss, 'd_real': real_logits.mean(), 'd_fake': fake_logits.mean()}
      if 'augment_p' in state:  # ADA's overfitting heuristic r_t, averaged over the round
        metrics['ada_rt'] = jnp.mean(jnp.sign(real_logits))
      if class_logits is not None:  # ACGAN: D classifies real and generated images (L_C)
        aux = class_loss(class_logits, labels)
        loss += self.aux_weight * aux
        metrics['aux_d'] = aux
      d_fn = self.d_logits_fn(d_vars, real_labels)
      if lcfg.gp_weight > 0:
        gp = losses_lib.gradient_penalty(d_fn, real, fake, kp)
        loss += (lcfg.gp_weight if hp is None else hp['gp_weight']) * gp
        metrics['gp'] = gp
      if lcfg.r1_gamma > 0:
        every = int(lcfg.get('r1_every', 1))
        if every == 1:
          r1 = losses_lib.r1_penalty(d_fn, real)
        else:  # lazy R1: every `every`-th round, weighted `every` times (StyleGAN2)
          r1 = jax.lax.cond(state['step'] % every == 0,
                            lambda: losses_lib.r1_penalty(d_fn, real), lambda: jnp.zeros(()))
        loss += (0.5 * lcfg.r1_gamma * every if hp is None else hp['r1_coef']) * r1
        metrics['r1'] = r1
      return loss, (new_d, metrics)

    grads, (new_d, metrics) = jax.grad(loss_fn, has_aux=True)(state['d']['params'])
    updates, d_opt = self._tx('d', hp).update(grads, state['d_opt'], state['d']['params'])
    new_d = {**new_d, 'params': optax.apply_updates(state['d']['params'], updates)}
    return {**state, 'd': new_d, 'd_opt': d_opt}, metrics

  def g_step(self, state: State, key: jax.Array,
             labels: jax.Array | None = None,
             noise: jax.Array | None = None, hp: dict | None = None,
             aug_key: jax.Array | None = None) -> tuple[State, dict]:
    """`noise` and `hp` as in `d_step`; `aug_key` augments the fakes before D scores them."""
    z = constrain_batch(self.noise(key, self.batch) if noise is None else noise, self.mesh)
    d_fn = self.d_logits_fn(state['d'])

    def loss_fn(params):
      fake, new_g = apply_model(self.G, {**state['g'], 'params': params}, z, train=True,
                                labels=labels)
      if aug_key is not None:
        fake = self._augment(state, aug_key, fake)
      if labels is None:
        return self.loss.g(d_fn(fake)), (new_g, {})
      logits, class_logits = _float32(self.D.apply(state['d'], fake, labels, train=False))
      loss = self.loss.g(logits)
      if class_logits is None:
        return loss, (new_g, {})
      aux = class_loss(class_logits, labels)
      return loss + self.aux_weight * aux, (new_g, {'aux_g': aux})

    (loss, (new_g, aux_metrics)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
        state['g']['params'])
    updates, g_opt = self._tx('g', hp).update(grads, state['g_opt'], state['g']['params'])
    params = optax.apply_updates(state['g']['params'], updates)
    new_g = {**new_g, 'params': params}
    # Warm-up so short runs are not dominated by the initial weights (as in common EMA practice).
    step = state['step'].astype(jnp.float32)
    decay = jnp.minimum(self.cfg.train.ema_decay, (1.0 + step) / (10.0 + step))
    ema = {**new_g, 'params': jax.tree.map(lambda e, p: decay * e + (1 - decay) * p,
                                           state['ema']['params'], params)}
    return {**state, 'g': new_g, 'g_opt': g_opt, 'ema': ema}, {'loss_g': loss, **aux_metrics}

  def _round_keys(self, rng: jax.Array, step: jax.Array):
    """The round's key and its (D step, real data, G step) keys."""
    n_d, n_g = self.cfg.train.n_d, self.cfg.train.n_g
    key = jax.random.fold_in(jax.random.wrap_key_data(rng), step)
    return key, *jnp.split(jax.random.split(key, 2 * n_d + n_g), [n_d, 2 * n_d])

  def round_draws(self, rng: jax.Array, step: jax.Array, sample_real: bool) -> dict:
    """The noise (and, for sampled 2D data, the real batches) that round `step` draws: exactly
    the values `round` would draw itself, computed ahead for a whole chunk.

    XLA:CPU runs each threefry draw as a small loop with a fixed cost per iteration; one draw
    for all of a chunk's rounds (vmapped over them) pays it once per chunk, not once per round
    (docs/performance.md); results are bitwise the same.
    """
    _, d_keys, real_keys, g_keys = self._round_keys(rng, step)
    draws = {'d_noise': jax.vmap(lambda k: self.noise(jax.random.split(k)[0], self.batch))(d_keys),
             'g_noise': jax.vmap(lambda k: self.noise(k, self.batch))(g_keys)}
    if sample_real:
      draws['real'] = jax.vmap(lambda k: self.real_fn(k, None))(real_keys)
    return draws

  def round(self, state: State, batches: Any, draws: dict | None = None,
            hp: dict | None = None) -> tuple[State, dict]:
    """`n_d` D steps (each on its own real batch), then `n_g` G steps. `draws`, when given,
    is `round_draws` for this round; `hp` as in `d_step`."""
    n_d, n_g = self.cfg.train.n_d, self.cfg.train.n_g
    key, d_keys, real_keys, g_keys = self._round_keys(state['rng'], state['step'])
    draws = draws or {}
    if self.conditional:
      # A stream of its own, so the keys above are the unconditional ones.
      label_keys = jax.random.split(rng_lib.stream(key, 'labels'), n_d + n_g)
    aug_keys = [None] * (n_d + n_g)
    if self.augment is not None:
      aug_keys = list(jax.random.split(rng_lib.stream(key, 'augment'), n_d + n_g))
    metrics, r_t = {}, []
    for i in range(n_d):
      batch = None if batches is None else jax.tree.map(lambda b: b[i], batches)
      real = draws['real'][i] if 'real' in draws else self.real_fn(real_keys[i], batch)
      real = constrain_batch(real, self.mesh)
      noise = draws['d_noise'][i] if draws else None
      if self.conditional:
        real_labels = constrain_batch(batch['label'], self.mesh)
        fake_labels = self.train_labels(label_keys[i], real.shape[0])
        state, metrics_d = self.d_step(state, real, d_keys[i], real_labels, fake_labels, noise,
                                       hp, aug_key=aug_keys[i])
      else:
        state, metrics_d = self.d_step(state, real, d_keys[i], noise=noise, hp=hp,
                                       aug_key=aug_keys[i])
      if 'ada_rt' in metrics_d:
        r_t.append(metrics_d.pop('ada_rt'))
      metrics.update(metrics_d)
    if r_t:
      state, metrics['ada_rt'] = self._adapt(state, jnp.stack(r_t)), jnp.mean(jnp.stack(r_t))
      metrics['ada_p'] = state['augment_p']
    for j in range(n_g):
      labels = self.train_labels(label_keys[n_d + j], self.batch) if self.conditional else None
      noise = draws['g_noise'][j] if draws else None
      state, metrics_g = self.g_step(state, g_keys[j], labels, noise, hp,
                                     aug_key=aug_keys[n_d + j])
      metrics.update(metrics_g)
    state = {**state, 'step': state['step'] + 1}
    # fsdp: the carry stays in its shards from round to round (a no-op when replicated).
    return constrain_state(state, self.mesh, *self.state_layout), metrics

  def _adapt(self, state: State, r_t: jax.Array) -> State:
    """ADA: the round's signs of D on reals [n_d] move `augment_p` (unless it is fixed)."""
    if not self.augment.adaptive:
      return state
    a, t = self.cfg.augment, self.cfg.train
    p = augment_lib.adjust_p(state['augment_p'], r_t, a.ada_target, t.n_d * self.batch,
                             a.ada_kimg)
    return {**state, 'augment_p': p}

  def train_chunk(self, state: State, batches: Any, num_rounds: int,
                  hp: dict | None = None, length: int | None = None) -> tuple[State, dict]:
    """`num_rounds` rounds in one jit call; metrics come back per round as host arrays
    [num_rounds].

    The round count is a run-time value, so chunks of any length up to
    `train.rounds_per_call` share one compilation (a log or eval interval that does not divide
    by it costs no recompiles). `batches`, when given, may be longer than `num_rounds`
    ([L, n_d, B, ...], padded by `GanData.next_chunk`); the extra rounds are not run.
    `hp` (default: `hyperparams` of this config) are the learning rates and penalty weights,
    passed as arguments: a chunk with other values reuses the compilation. `length` (without
    `batches`) sets the round slots of the scan instead of `train.rounds_per_call`: each length
    compiles once, and a short one spares short chunks the slots they skip.
    """
    if batches is not None:
      length = jax.tree.leaves(batches)[0].shape[0]
    else:
      length = max(num_rounds, length or int(self.cfg.train.rounds_per_call))
    if not 1 <= num_rounds <= length:
      raise ValueError(f'num_rounds={num_rounds} must be in [1, {length}]')
    hp = hyperparams(self.cfg) if hp is None else hp
    state, metrics = self._rounds(state, batches, jnp.int32(num_rounds), hp, length)
    return state, {k: to_host(v)[:num_rounds] for k, v in metrics.items()}

  def _train_rounds(self, state: State, batches: Any, num_rounds: jax.Array, hp: dict,
                    length: int) -> tuple[State, dict]:
    """`lax.scan` over `length` round slots; slot i runs a round when i < num_rounds and passes
    the state through untouched otherwise (a `lax.cond`: the skipped branch costs nothing)."""
    slots = jnp.arange(length)
    # On one device the chunk's noise is drawn ahead (round_draws). On several, each round draws
    # its own, laid out along `data`: the ahead-drawn arrays, laid out as XLA picks, put
    # collectives in the loop that can run concurrently, and XLA:CPU's simulated devices
    # deadlock on those (its rendezvous times out and aborts the process).
    draws = None
    if self.mesh is None or self.mesh.devices.size == 1:
      draws = jax.vmap(lambda i: self.round_draws(state['rng'], state['step'] + i, batches is None)
                       )(slots)
    first = None if batches is None else jax.tree.map(lambda b: b[0], batches)
    metric_shapes = jax.eval_shape(self.round, state, first,
                                   jax.tree.map(lambda d: d[0], draws), hp)[1]

    def skip(state, batch, draws, hp):
      return state, {k: jnp.zeros(m.shape, m.dtype) for k, m in metric_shapes.items()}

    def slot(state, xs):
      i, batch, draws = xs
      return jax.lax.cond(i < num_rounds, self.round, skip, state, batch, draws, hp)

    state, metrics = jax.lax.scan(slot, state, (slots, batches, draws), length=length)
    # fsdp: hand the state back in the layout it came in (a no-op when replicated), so the next
    # call reuses this compilation; XLA may otherwise pick other shardings for the loop's result.
    return constrain_state(state, self.mesh, *self.state_layout), metrics

  def train_labels(self, key: jax.Array, n: int) -> jax.Array:
    """Uniform fake labels [n] for a training batch, laid out like the noise."""
    return constrain_batch(conditional.sample_labels(key, n, self.num_classes), self.mesh)

  def _sample(self, g_vars: dict, key: jax.Array, n: int,
              labels: jax.Array | None = None) -> jax.Array:
    """n samples from G (in inference mode); a conditional G draws them for `labels` [n]."""
    y = () if labels is None else (labels,)
    return self.G.apply(g_vars, self.noise(key, n), *y, train=False)


def chunk_means(metrics: dict) -> dict[str, float]:
  """Per-round metric arrays -> their means over the chunk (host floats)."""
  return {k: float(np.mean(to_host(v))) for k, v in metrics.items()}

