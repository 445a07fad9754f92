"""A lab server on a free loopback port, in a thread of the test process, for the lab tests."""
import asyncio
import threading
import time

from common.config import load_config
from gan.lab.controller import Lab
from gan.lab.server import serve

TINY = ['model.depth=1', 'model.hidden=16', 'data.batch_size=32', 'train.rounds_per_call=20']


class LabServer:
  """`url`, `lab` (the controller, whose session the tests inspect) and `stop()`."""

  def __init__(self, root: str, spec: str = 'gan/configs/toy2d.py:ring', overrides=TINY):
    self.lab = Lab(load_config(spec, list(overrides)), root, publish=lambda msg: None)
    self.url = None
    self._ready = threading.Event()
    self._loop = asyncio.new_event_loop()
    self._thread = threading.Thread(target=self._run, daemon=True)
    self._thread.start()
    if not self._ready.wait(60):
      raise RuntimeError('the lab server did not start')

  def _run(self):
    asyncio.set_event_loop(self._loop)
    self._task = self._loop.create_task(serve(self.lab, 0, ready=self._started))
    try:
      self._loop.run_until_complete(self._task)
    except asyncio.CancelledError:
      pass

  def _started(self, url):
    self.url = url
    self._ready.set()

  def wait(self, predicate, timeout=60.0, what='condition'):
    """Poll `predicate()` until true (the lab's thread acts on messages asynchronously)."""
    end = time.time() + timeout
    while time.time() < end:
      if predicate():
        return
      time.sleep(0.02)
    raise AssertionError(f'timed out waiting for {what}')

  def stop(self, save=False):
    self._loop.call_soon_threadsafe(self._task.cancel)
    self._thread.join(30)
    return self.lab.stop(save=save)
