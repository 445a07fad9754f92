"""One lab session: a 2D GAN trained by `gan.steps` in chunks of rounds, changed live, saved
as a workdir that `launch.gan` resumes and replays.

The session keeps the config it started from (`base`), every live change as a `train.edits`
entry at the round it took effect (`edits`), and the config in force (`live`). Training goes
through the same pieces as `gan.train` (`gan.edits.rebuild`, `GanSteps.train_chunk` with the
live `hyperparams`), so the exported config, run from scratch, ends bitwise equal (CPU) to the
session's state. A change of the models' shape starts a new session from round 0 instead.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from typing import Callable

import jax
import ml_collections
import numpy as np

from common import rng as rng_lib
from common import sharding
from common.checkpoint import Checkpointer
from common.config import config_to_dict
from common.errors import UserError
from common.workdir import prepare_workdir
from common.writers import MetricWriter, read_metrics
from gan import edits as edits_lib
from gan.configs.base import base_config
from gan.data import build_data
from gan.state import build_models, init_state
from gan.steps import GanSteps, chunk_means, hyperparams
from gan.train import validate

RUN_FILES = ('config.json', 'metrics.jsonl', 'summary.json', 'checkpoints', 'images',
             'tensorboard', 'lab_config.py')
CONFIG_FILE = 'lab_config.py'
SLICE_SECONDS = 0.02  # Session.train(stop=...): rounds between two looks at `stop`
_EXPORT = '''"""A lab session saved at round {step}, as a config. Replay it from scratch with

  python -m launch.gan --config={path} --workdir=NEW_DIR

(it ends bitwise equal, on CPU, to the saved checkpoint), or pass the saved directory as
--workdir to resume it.
"""
import json

import ml_collections

CONFIG = json.loads(r\'\'\'{config}\'\'\')


def get_config(arg=None):
  return ml_collections.ConfigDict(CONFIG)
'''


def lab_config(config: ml_collections.ConfigDict) -> tuple[ml_collections.ConfigDict, list[str]]:
  """`config` as a lab session runs it, with notices of what changed: 2D data only; a constant
  learning rate (a decaying schedule needs the run's length, which a session does not have)."""
  if config.model.name != 'mlp' or config.model.get('num_classes', 0):
    raise UserError(f'the lab trains 2D distributions (model.name=mlp); this config trains '
                    f'{config.data.name} with {config.model.name}')
  new = ml_collections.ConfigDict(config.to_dict())
  defaults = base_config().model
  for key in ('d_fourier', 'd_fourier_scale'):
    if key not in new.model:  # a session saved before D's Fourier features: without them
      new.model[key] = defaults[key]
  notices = []
  if new.optim.schedule != 'constant':
    notices.append(f'the lab trains at a constant learning rate (the config asked for a '
                   f'{new.optim.schedule} schedule)')
    new.optim.schedule = 'constant'
  new.train.edits = []
  validate(new)
  return new, notices


class Session:
  """A lab session's config, edit log, train state and metric history (not thread-safe: one
  thread drives it)."""

  def __init__(self, base: ml_collections.ConfigDict, workdir: str):
    self.base = base
    self.workdir = workdir
    self.edits: list[edits_lib.Edit] = []
    self.live = base
    self.history: list[dict] = []
    self._compiled: dict = {}  # edits_lib.rebuild's cache: D-only rounds and back compile once
    self.mesh = sharding.data_mesh()
    self.gdata = build_data(base)
    generator, discriminator = build_models(base, self.gdata.shape)
    self.steps = GanSteps(generator, discriminator, base, self.gdata.real_fn, self.mesh)
    key = rng_lib.stream(rng_lib.root_key(base.seed), 'init')
    self.state = init_state(self.steps, base, key, self.gdata.shape, self.mesh)

  def warm_up(self) -> bool:
    """Compile the current steps' chunk (on a copy of the state) unless done before; True if
    it compiled now. Lets a page see the compile wait as such, not as a stalled round."""
    if getattr(self.steps, 'lab_warm', False):
      return False
    copy = jax.tree.map(lambda a: a.copy(), self.state)
    hp, per_call = hyperparams(self.live), int(self.base.train.rounds_per_call)
    copy, _ = self.steps.train_chunk(copy, None, 1, hp)
    # The slices of train(stop=...): a power of two of rounds that takes about SLICE_SECONDS,
    # in a scan of their own length (timed on a few rounds, then compiled). A round's time is
    # the difference between a call of n rounds and a call of one, so the call's own cost
    # (the skipped slots of the long scan, the dispatch) is not counted n times: counted, it
    # made small models' slices half as long (8 rounds, not 16) and their calls' overhead a quarter.
    n = min(per_call, 8)
    timed = []
    for rounds in (1, n, 1, n):
      t0 = time.perf_counter()
      copy, _ = self.steps.train_chunk(copy, None, rounds, hp)
      timed.append(time.perf_counter() - t0)
    per_round = (min(timed[1], timed[3]) - min(timed[0], timed[2])) / max(n - 1, 1)
    fit = SLICE_SECONDS / max(per_round, 1e-6)
    k = 1
    while 2 * k <= min(fit, per_call):
      k *= 2
    if k < per_call:
      self.steps.train_chunk(copy, None, k, hp, length=k)
    self.steps.lab_slice = k
    self.steps.lab_warm = True
    return True

  @property
  def round(self) -> int:
    return int(self.state['step'])

  # ---- training ---------------------------------------------------------------------
  def train(self, rounds: int, stop: Callable[[], bool] | None = None) -> dict[str, float]:
    """`rounds` more rounds (in chunks of at most `train.rounds_per_call`); their mean metrics.

    With `stop`, the rounds run in slices of about SLICE_SECONDS each (sized by `warm_up`), and
    `stop()` is asked after every slice: once it is true, no more slices run (at least one
    does). Where the chunks end does not change the state a round leaves.
    """
    per_call = int(self.base.train.rounds_per_call)
    length = getattr(self.steps, 'lab_slice', per_call) if stop is not None else per_call
    chunks = []
    while rounds > 0:
      k = min(rounds, length)
      self.state, metrics = self.steps.train_chunk(self.state, None, k, hyperparams(self.live),
                                                   length)
      chunks.append(metrics)
      rounds -= k
      if stop is not None and stop():
        break
    merged = {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]} if chunks else {}
    for k, v in merged.items():
      if not np.all(np.isfinite(v)):
        raise UserError(f'{k} became NaN/inf before round {self.round}: lower the learning '
                        'rates or add a gradient penalty, then reset')
    return chunk_means(merged)

  def edit(self, changes: list[tuple[str, object]]) -> list[str]:
    """Apply (key, value) changes from the current round on, recording each as an edit;
    returns notices (an optimiser state restarted)."""
    step = self.round
    new = edits_lib.apply(self.live, changes)
    validate(new)
    if new.data.to_dict() != self.live.data.to_dict():
      build_data(new)  # a bad points file fails here, before anything changes
    for key, value in changes:
      self._record(step, key, edits_lib.coerce(key, value))
    self.gdata, self.steps = edits_lib.rebuild(self.live, new, self.gdata, self.steps, self.mesh,
                                                   self._compiled)
    self.live = new
    self.state, restarted = edits_lib.carry_state(self.state, self.steps)
    names = {'g': 'generator', 'd': 'discriminator'}
    return [f'the {names[p]}\'s optimiser state restarted (its layout changed)' for p in restarted]

  def _record(self, step: int, key: str, value) -> None:
    """One edit at `step`, replacing an earlier one of `key` at that round; none when the
    value is what was in force before the round."""
    self.edits = [e for e in self.edits if not (e[0] == step and e[1] == key)]
    before = edits_lib.at(self.base, self.edits, step)
    group, _, name = key.partition('.')
    if before[group][name] != value:
      self.edits.append((step, key, value))

  def train_player(self, player: str) -> dict[str, float]:
    """One round of only `player`'s steps ('d': one D step; 'g': one G step), recorded as
    edits of train.n_d / n_g around it, so a replay runs it too."""
    n_d, n_g = self.live.train.n_d, self.live.train.n_g
    self.edit([('train.n_d', int(player == 'd')), ('train.n_g', int(player == 'g'))])
    metrics = self.train(1)
    self.edit([('train.n_d', n_d), ('train.n_g', n_g)])
    return metrics

  # ---- saving -----------------------------------------------------------------------
  def export_config(self) -> ml_collections.ConfigDict:
    """The config that replays this session up to now: its edits and steps = the round."""
    if self.round < 1:
      raise UserError('nothing to save yet: train at least one round first')
    out = ml_collections.ConfigDict(self.base.to_dict())
    out.train.steps = self.round
    out.train.edits = [[r, k, v] for r, k, v in self.edits]
    return out

  def save(self) -> str:
    """Write the session into its workdir (replacing an earlier save there): config.json,
    the checkpoint, metrics.jsonl, summary.json and `lab_config.py`; returns the workdir."""
    config = self.export_config()
    os.makedirs(self.workdir, exist_ok=True)
    for name in RUN_FILES:
      path = os.path.join(self.workdir, name)
      if os.path.isdir(path):
        shutil.rmtree(path)
      elif os.path.exists(path):
        os.remove(path)
    prepare_workdir(self.workdir, config)
    ckpt = Checkpointer(self.workdir, keep=1)
    ckpt.save(self.round, self.state, {})
    ckpt.close()
    writer = MetricWriter(self.workdir)
    for row in self.history:
      writer.write(row['step'], {k: v for k, v in row.items() if k != 'step'})
    last = {k: v for k, v in (self.history[-1] if self.history else {}).items() if k != 'step'}
    writer.write_summary({'step': self.round, **last})
    writer.close()
    path = os.path.join(self.workdir, CONFIG_FILE)
    text = json.dumps(config_to_dict(config), indent=1, sort_keys=True)
    with open(path, 'w') as f:
      f.write(_EXPORT.format(step=self.round, path=path, config=text))
    return self.workdir

  @classmethod
  def open(cls, workdir: str) -> 'Session':
    """A saved session, restored at its checkpoint, to go on with."""
    path = os.path.join(workdir, 'config.json')
    try:
      with open(path) as f:
        config = ml_collections.ConfigDict(json.load(f)['config'])
    except (OSError, ValueError, KeyError, TypeError):
      raise UserError(f'{os.path.basename(workdir)!r} is not a saved lab session (no readable '
                      'config.json)') from None
    saved = edits_lib.parse(config)
    base, _ = lab_config(config)
    session = cls(base, workdir)
    ckpt = Checkpointer(workdir, keep=1)
    step = ckpt.latest_step()
    if step is None:
      ckpt.close()
      raise UserError(f'{os.path.basename(workdir)!r} has no checkpoint to open')
    # The config in force at the checkpoint, the edits recorded; one round's edits together (a
    # drawn distribution changes data.name and data.path at once).
    rounds = sorted({r for r, _, _ in saved if r < step})
    for r in rounds:
      session._replace_live([(k, v) for rr, k, v in saved if rr == r], r)
    session.state, _, _ = ckpt.restore(session.state)
    ckpt.close()
    rest = [(k, v) for r, k, v in saved if r >= step]
    if rest:
      session.edit(rest)
    rows = read_metrics(workdir) if os.path.exists(os.path.join(workdir, 'metrics.jsonl')) else []
    session.history = [m for m in rows if 'loss_d' in m or 'loss_g' in m]
    return session

  def _replace_live(self, changes: list[tuple[str, object]], step: int) -> None:
    """Record edits made at an earlier `step` (reopening a session) and rebuild for them."""
    for key, value in changes:
      self._record(step, key, edits_lib.coerce(key, value))
    new = edits_lib.apply(self.live, changes)
    self.gdata, self.steps = edits_lib.rebuild(self.live, new, self.gdata, self.steps, self.mesh,
                                                   self._compiled)
    self.live = new
    self.state, _ = edits_lib.carry_state(self.state, self.steps)


def to_host_tree(tree):
  """A pytree's arrays as numpy (for comparisons and saving)."""
  return jax.tree.map(np.asarray, tree)
