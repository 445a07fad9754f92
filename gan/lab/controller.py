"""The lab's training thread: one shared session that every open tab watches and steers.

Page messages (already checked by `protocol.parse`) queue up and are handled between chunks of
rounds, which is where a live edit takes effect; frames, state and notices go out through
`publish(message)` (a dict for JSON text, bytes for a binary frame) to every tab, so all tabs
show the same session. A refused action becomes an error notice and a log line; the thread
keeps serving.
"""
from __future__ import annotations

import logging
import os
import queue
import re
import shutil
import threading
import time
from typing import Callable

import ml_collections
import numpy as np

from common import rng as rng_lib
from common.errors import UserError
from gan import edits as edits_lib
from gan import plots
from gan.lab import protocol
from gan.lab import views as views_lib
from gan.lab.session import Session, lab_config
from gan.lab.views import Views
from gan.steps import player_optimizer

log = logging.getLogger('advcnn.lab')
SLOWMO_SECONDS = 0.6  # pause between the single rounds of slow motion
MAX_HISTORY = 4000  # chart rows kept; beyond, every other row is dropped
SESSION_NAME = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$')


def new_session_dir(root: str) -> str:
  """root/session-NNN, the first such name not yet taken (created later, when written to)."""
  n = 1
  while os.path.exists(os.path.join(root, f'session-{n:03d}')):
    n += 1
  return os.path.join(root, f'session-{n:03d}')


class Lab:
  """Drives a `Session` from a queue of page messages on its own thread."""

  def __init__(self, config: ml_collections.ConfigDict, root: str,
               publish: Callable[[dict | bytes], None]):
    self.root = os.path.abspath(root)
    self.publish = publish
    self.commands: queue.Queue = queue.Queue()
    # 50 rounds a frame: the default toy model's 1,000 rounds/s come at 20 frames/s.
    self.playing, self.slowmo, self.rounds_per_frame = False, False, 50
    self._first_frame = False  # play was just pressed: draw after the first slice of rounds
    self.saved_round: int | None = None
    self.lock = threading.Lock()  # guards `snapshot`, read by the server for new tabs
    self.snapshot: dict = {}
    base, notices = lab_config(config)
    self._start(Session(base, new_session_dir(self.root)), notices)
    self.session.warm_up()
    self._stop = threading.Event()
    self.thread = threading.Thread(target=self._loop, name='lab-training', daemon=True)

  # ---- thread -----------------------------------------------------------------------
  def start(self) -> None:
    self.thread.start()

  def stop(self, save: bool = True) -> str | None:
    """Stop the thread; with `save`, save the session when it has unsaved rounds (so closing
    the server leaves a resumable workdir). Returns the saved workdir, if any."""
    self._stop.set()
    if self.thread.is_alive():
      self.thread.join(timeout=60)
    if save and self.session.round > 0 and self.saved_round != self.session.round:
      return self._save()
    return None

  def submit(self, msg: dict) -> None:
    self.commands.put(msg)

  def _loop(self) -> None:
    while not self._stop.is_set():
      try:
        msg = self.commands.get(timeout=0.0 if self.playing else 0.05)
      except queue.Empty:
        msg = None
      if msg is not None:
        self._safely(self._handle, msg)
        continue  # handle every queued message before the next chunk
      if self.playing:
        # The first frame after play comes after one slice of rounds, so the page sees play
        # at once; later frames come every rounds_per_frame rounds, or sooner when a message
        # waits (a pause or an edit takes effect within a slice, not a whole frame's rounds).
        first, self._first_frame = self._first_frame, False
        self._safely(self._advance, 1 if self.slowmo else self.rounds_per_frame,
                     lambda: first or not self.commands.empty())
        if self.slowmo:
          self._stop.wait(SLOWMO_SECONDS)

  def _safely(self, fn, *args) -> None:
    try:
      fn(*args)
    except UserError as e:
      self.playing = False
      self._notice(str(e), 'error')
      self._publish_state()
    except Exception as e:  # noqa: BLE001 -- the lab keeps serving; the log has the trace
      log.exception('lab action failed')
      self.playing = False
      self._notice(f'internal error: {type(e).__name__}: {e}', 'error')
      self._publish_state()

  # ---- actions ----------------------------------------------------------------------
  def _handle(self, msg: dict) -> None:
    kind = msg['type']
    if kind in ('play', 'pause'):
      self._first_frame = kind == 'play' and not self.playing
      self.playing = kind == 'play'
    elif kind == 'round':
      self.playing = False
      self._advance(1)
    elif kind in ('step_d', 'step_g'):
      self.playing = False
      self._warm_up()  # before the D-only (G-only) round compiles, which says so itself
      self._record_row(self.session.train_player(kind[-1]))
      self._frame()
    elif kind == 'reset':
      self._reset(self.session.live)
    elif kind == 'speed':
      self.rounds_per_frame = msg['rounds_per_frame']
    elif kind == 'slowmo':
      self.slowmo = msg['on']
    elif kind == 'set':
      self._set(msg['key'], msg['value'])
    elif kind == 'points':
      self._points(msg['points'])
    elif kind == 'save':
      path = self._save()
      self.publish({'type': 'saved', 'name': os.path.basename(path),
                    'round': self.session.round, 'config': os.path.join(path, 'lab_config.py')})
    elif kind == 'open':
      self._open(msg['name'])
    elif kind == 'upload':
      self.add_points_file(msg['data'], msg['ext'])
    elif kind == 'autosave':  # the last tab closed
      if self.session.round > 0 and self.saved_round != self.session.round:
        self._notice(f'saved to {os.path.basename(self._save())}')
    elif kind == 'list':
      self.publish({'type': 'sessions', 'names': self.saved_sessions()})
    elif kind == 'ping':
      self.publish({'type': 'pong', 't': msg['t'], 'round': self.session.round})
    self._publish_state()

  def _advance(self, rounds: int, stop: Callable[[], bool] | None = None) -> None:
    """Up to `rounds` rounds (fewer once `stop()` is true, as `Session.train`), then a frame."""
    self._warm_up()
    self._record_row(self.session.train(rounds, stop))
    self._frame()

  def _warm_up(self) -> None:
    if not getattr(self.session.steps, 'lab_warm', False):
      self._notice('compiling these settings (once per combination; a few seconds)')
      self.session.warm_up()

  def _set(self, key: str, value) -> None:
    if key in protocol.RESET_KEYS:
      group, _, name = key.partition('.')
      config = ml_collections.ConfigDict(self.session.live.to_dict())
      if name:
        config[group][name] = value
      else:
        config[group] = value
      self._reset(config, f'{key} changes the models\' shape: a new session starts at round 0')
      return
    for notice in self.session.edit([(key, value)]):
      self._notice(notice)
    if key.startswith('data.'):
      self._new_views()
    elif self.views.steps is not self.session.steps:
      self._new_views(data=False)
    self._frame()

  def _points(self, points: np.ndarray) -> None:
    """A drawn distribution: written to the session's points/ folder, then trained on."""
    path = self._new_file('drawn', '.csv')
    np.savetxt(path, points, fmt='%.9g', delimiter=',')
    self.session.edit([('data.name', 'points'), ('data.path', path)])
    self._new_views()
    self._frame()

  def add_points_file(self, data: bytes, ext: str) -> None:
    """An uploaded points file (size and name checked by the server), written to the session's
    points/ folder; a file that does not read as points is removed again."""
    path = self._new_file('upload', ext)
    with open(path, 'wb') as f:
      f.write(data)
    try:
      self.session.edit([('data.name', 'points'), ('data.path', path)])
    except UserError:
      os.remove(path)
      raise
    self._new_views()
    self._frame()

  def _new_file(self, stem: str, ext: str) -> str:
    folder = os.path.join(self.session.workdir, 'points')
    os.makedirs(folder, exist_ok=True)
    n = len(os.listdir(folder)) + 1
    while os.path.exists(os.path.join(folder, f'{stem}-{n:03d}{ext}')):
      n += 1
    return os.path.join(folder, f'{stem}-{n:03d}{ext}')

  def _reset(self, config: ml_collections.ConfigDict, notice: str = '') -> None:
    """A new session at round 0 from `config`, in a new session folder (a points file the data
    uses is copied along, so each folder replays on its own)."""
    self.playing = False
    base, _ = lab_config(config)
    workdir = new_session_dir(self.root)
    if base.data.name == 'points':
      os.makedirs(os.path.join(workdir, 'points'), exist_ok=True)
      path = os.path.join(workdir, 'points', os.path.basename(base.data.path))
      shutil.copyfile(base.data.path, path)
      base.data.path = path
    self._start(Session(base, workdir), [notice] if notice else [])

  def _open(self, name: str) -> None:
    if name not in self.saved_sessions():
      raise UserError(f'no saved session {name!r:.70} in the lab folder')
    self.playing = False
    self._start(Session.open(os.path.join(self.root, name)), [f'opened {name}'])
    self.saved_round = self.session.round

  def _save(self) -> str:
    path = self.session.save()
    arrays, metrics = self.views.frame(self.session.state)
    src = self.views.source
    title = f'{src.name}, round {self.session.round}: ' + ', '.join(
        f'{k} {v:.3g}' for k, v in metrics.items())
    plots.plot_2d(os.path.join(path, 'images', 'final.png'), real=self.views.real[:1000],
                  fake=arrays['fake'], d_prob=arrays['d_prob'].T, bounds=src.bounds,
                  manifold=arrays['manifold'].reshape(-1, views_lib.MANIFOLD, 2),
                  arrows=arrays['arrows'], history=self.session.history,
                  step=self.session.round, title=title)
    self.saved_round = self.session.round
    log.info('saved round %d to %s', self.session.round, path)
    return path

  def saved_sessions(self) -> list[str]:
    """Names of the lab folder's saved sessions (folders with a config.json)."""
    if not os.path.isdir(self.root):
      return []
    return sorted(n for n in os.listdir(self.root) if SESSION_NAME.match(n)
                  and os.path.isfile(os.path.join(self.root, n, 'config.json')))

  # ---- what the pages see -----------------------------------------------------------
  def _start(self, session: Session, notices: list[str]) -> None:
    self.session = session
    self.saved_round = None
    self._views: dict[int, Views] = {}
    with self.lock:
      self.snapshot = {'history': list(session.history)}
    self._new_views()
    self.publish({'type': 'session', 'name': os.path.basename(session.workdir)})
    for n in notices:
      self._notice(n)
    self._frame()
    self._publish_state()

  def _new_views(self, data: bool = True) -> None:
    """Views for the session's current steps (kept per steps: a D step's compiled views are
    there the next time); with `data`, the real samples go to the pages too."""
    steps = self.session.steps
    if id(steps) not in self._views:
      key = rng_lib.stream(rng_lib.root_key(0), 'lab')
      self._views[id(steps)] = Views(steps, self.session.gdata.source2d, key)
    self.views = self._views[id(steps)]
    if data:
      src = self.views.source
      msg = {'type': 'data', 'name': src.name, 'bounds': list(src.bounds),
             'real': np.round(self.views.real[:400], 5).tolist(), 'floor': self.views.floor,
             'has_modes': src.modes is not None}
      with self.lock:
        self.snapshot['data'] = msg
      self.publish(msg)

  def _record_row(self, losses: dict[str, float]) -> None:
    self._row = {'step': self.session.round, **losses}

  def _frame(self) -> None:
    arrays, metrics = self.views.frame(self.session.state)
    row = getattr(self, '_row', None)
    if row is not None and row['step'] == self.session.round:
      row.update(metrics)
      self._append(row)
      self._row = None
    else:
      row = None
    header = {'type': 'frame', 'round': self.session.round, 'metrics': metrics, 'row': row,
              'time': time.time()}
    frame = protocol.pack_frame(header, arrays)
    with self.lock:
      self.snapshot['frame'] = frame
    self.publish(frame)

  def _append(self, row: dict) -> None:
    history = self.session.history
    history.append(row)
    if len(history) > MAX_HISTORY:
      history[:] = history[::2]
    with self.lock:
      self.snapshot['history'] = list(history)

  def settings(self) -> dict:
    live = self.session.live
    out = {key: live[key.split('.')[0]][key.split('.')[1]] if '.' in key else live[key]
           for key in protocol.SETTINGS}
    out['optim.g_name'] = player_optimizer(live.optim, 'g')
    out['optim.d_name'] = player_optimizer(live.optim, 'd')
    return out

  def _publish_state(self) -> None:
    s = self.session
    msg = {'type': 'state', 'round': s.round, 'playing': self.playing, 'slowmo': self.slowmo,
           'rounds_per_frame': self.rounds_per_frame, 'settings': self.settings(),
           'edits': [list(e) for e in s.edits], 'session': os.path.basename(s.workdir),
           'saved_round': self.saved_round, 'editable': list(edits_lib.EDITABLE)}
    with self.lock:
      self.snapshot['state'] = msg
    self.publish(msg)

  def _notice(self, message: str, level: str = 'info') -> None:
    (log.warning if level == 'error' else log.info)('%s', message)
    self.publish({'type': 'notice', 'level': level, 'message': message})
