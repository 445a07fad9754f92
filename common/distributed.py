"""Multi-process (multi-host) runs through JAX's own distributed runtime.

A process joins a multi-process run when launched with JAX's standard
settings, `JAX_COORDINATOR_ADDRESS=host:port JAX_NUM_PROCESSES=N
JAX_PROCESS_ID=i`, or on a cluster JAX detects by itself (SLURM, Open MPI,
Cloud TPU) when `ADVCNN_DISTRIBUTED=auto`. Process 0 alone writes metrics,
images and tables; orbax writes checkpoints cooperatively.

Joining is bounded by `ADVCNN_INIT_TIMEOUT` seconds (default 60): JAX itself
waits 5 minutes and then aborts, e.g. when process 0 was told of more processes
than were started. After joining, every process publishes its
`JAX_NUM_PROCESSES` through the runtime's key-value store and all compare,
because JAX accepts a process that was told of more processes than process 0
was (and reports process 0's count) without complaint.

A process that dies or stops answering mid-run (its heartbeats, published every second in the
runtime's key-value store, stop for `ADVCNN_PEER_TIMEOUT` seconds, default 60) stops every other
process with one line naming it and exit code 75 (`common.preemption.EXIT_PREEMPTED`): the last
good checkpoint is kept, and rerunning all processes resumes from it. JAX alone would abort them
with a C++ stack trace after 100 s, or leave them waiting in a collective. One case stays JAX's:
when process 0, which hosts the runtime, is killed, JAX ends the others at once with its own
message ('another task died').
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
import time

import jax
import numpy as np

from common.errors import AgreedUserError, UserError

_ENV = ('JAX_COORDINATOR_ADDRESS', 'JAX_NUM_PROCESSES', 'JAX_PROCESS_ID')
_TIMEOUT_ENV = 'ADVCNN_INIT_TIMEOUT'
_PEER_TIMEOUT_ENV = 'ADVCNN_PEER_TIMEOUT'
_NPROC_ENV = 'NPROC'  # read by XLA:CPU for its thread pools' size (default: the core count)
_DEFAULT_TIMEOUT_S = 60
# JAX's own deadline comes this much later than ours, so ours (a one-line error,
# exit code 2) fires first instead of JAX's abort with a C++ stack trace.
_JAX_TIMEOUT_MARGIN_S = 30


def initialize() -> None:
  """Call once, before any other JAX work; a no-op for single-process runs."""
  widen_cpu_thread_pool()
  given = {k: os.environ.get(k) for k in _ENV if os.environ.get(k)}
  if os.environ.get('ADVCNN_DISTRIBUTED') == 'auto':
    timeout = init_timeout()
    with _deadline(timeout, "the cluster's processes did not all join the distributed runtime "
                   f'within {timeout}s; check that every process was started, or raise '
                   f'{_TIMEOUT_ENV}'):
      _join(initialization_timeout=timeout + _JAX_TIMEOUT_MARGIN_S)
    if jax.process_count() > 1:
      _watch_peers(peer_timeout())
    return
  if not given:
    return
  if len(given) != len(_ENV):
    missing = ', '.join(k for k in _ENV if k not in given)
    raise UserError(f'multi-process launch is missing {missing}; set all of {", ".join(_ENV)}')
  try:
    n, pid = int(given['JAX_NUM_PROCESSES']), int(given['JAX_PROCESS_ID'])
  except ValueError:
    raise UserError('JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers') from None
  if n < 1 or not 0 <= pid < n:
    raise UserError(f'JAX_PROCESS_ID={pid} is not in [0, JAX_NUM_PROCESSES={n})')
  if jax.config.jax_platforms in (None, '', 'cpu') or os.environ.get('JAX_PLATFORMS') == 'cpu':
    # CPU collectives across processes need gloo (GPU/TPU bring their own).
    jax.config.update('jax_cpu_collectives_implementation', 'gloo')
  address, timeout = given['JAX_COORDINATOR_ADDRESS'], init_timeout()
  with _deadline(timeout, f'process {pid} waited {timeout}s for the other processes at {address} '
                 f'(it was told JAX_NUM_PROCESSES={n}); start every process with the same '
                 'JAX_NUM_PROCESSES and a distinct JAX_PROCESS_ID, or raise '
                 f'{_TIMEOUT_ENV} if they start far apart'):
    _join(address, n, pid, initialization_timeout=timeout + _JAX_TIMEOUT_MARGIN_S)
  check_process_count(n, timeout)
  if n > 1:
    _watch_peers(peer_timeout())


def _join(*args, **kwargs) -> None:
  """`jax.distributed.initialize` for our own watch of the processes (`_watch_peers`): JAX's,
  which aborts the others with a C++ stack trace once a process misses its heartbeats, comes
  only a margin after ours; and JAX's own SIGTERM handler (its preemption service) is left out:
  `common.preemption` handles the signal, and all processes agree on the stop in
  `common.loop.Run.checkpoint`."""
  jax.config.update('jax_enable_preemption_service', False)
  jax.distributed.initialize(
      *args, heartbeat_timeout_seconds=peer_timeout() + _JAX_TIMEOUT_MARGIN_S, **kwargs)


_HEARTBEAT_S = 1.0
_ALIVE = 'advcnn/alive/'
_DONE = 'done'
_lost = threading.Event()  # set once a lost process has been reported
_done = threading.Event()  # set once this process has finished its part


def _watch_peers(timeout: int) -> None:
  """Start two daemon threads. One publishes this process's heartbeat (a counter in the
  runtime's key-value store) every second and reads everyone else's; the other stops this
  process (`_stop_for_lost`) when a peer's counter has not moved for `timeout` seconds, or when
  this process has not reached the store for that long (process 0, which hosts it, is gone).
  They are threads of their own because the main thread may be blocked in a collective."""
  from jax._src import distributed as jax_distributed  # the runtime's client, as orbax uses it
  client = jax_distributed.global_state.client
  me, n = jax.process_index(), jax.process_count()
  now = time.monotonic()
  seen = {pid: (None, now) for pid in range(n) if pid != me}  # last value, when it changed
  reached = [now]

  def beat():
    count = 0
    while not _done.is_set():
      count += 1
      try:
        client.key_value_set(f'{_ALIVE}{me}', str(count), allow_overwrite=True)
        values = {k.rsplit('/', 1)[-1]: v for k, v in client.key_value_dir_get(_ALIVE)}
      except Exception:  # the runtime's own error type: the store is unreachable for now
        time.sleep(_HEARTBEAT_S)
        continue
      t = time.monotonic()
      reached[0] = t
      for pid, (value, _) in list(seen.items()):
        new = values.get(str(pid))
        if new == _DONE:
          seen.pop(pid)
        elif new != value:
          seen[pid] = (new, t)
      time.sleep(_HEARTBEAT_S)

  def judge():
    last = time.monotonic()
    while not _done.is_set():
      time.sleep(_HEARTBEAT_S)
      t = time.monotonic()
      if t - last > 5 * _HEARTBEAT_S:  # this process itself was held up: judge afresh
        reached[0] = t
        for pid, (value, _) in list(seen.items()):
          seen[pid] = (value, t)
      last = t
      stale = sorted(pid for pid, (_, since) in list(seen.items()) if t - since > timeout)
      if stale:
        _stop_for_lost(('process ' if len(stale) == 1 else 'processes ')
                       + ', '.join(map(str, stale)), timeout)
      elif t - reached[0] > timeout:
        _stop_for_lost('process 0 (which hosts the distributed runtime)', timeout)

  for target in (beat, judge):
    threading.Thread(target=target, daemon=True, name=f'peer-{target.__name__}').start()


def _stop_for_lost(who: str, timeout: int) -> None:
  """One line naming the lost process(es), then exit code 75 at once (the others are gone or
  stuck: waiting for them, as a normal exit does, would hang)."""
  from common import preemption
  from common.workdir import resume_note
  _lost.set()
  me, n = jax.process_index(), jax.process_count()
  sys.stdout.flush()
  sys.stderr.write(f'error: {who} of this {n}-process run died or stopped answering (no '
                   f'heartbeat for {timeout}s, {_PEER_TIMEOUT_ENV}); process {me} stops too; '
                   f'{resume_note(all_processes=True)}\n')
  sys.stderr.flush()
  os._exit(preemption.EXIT_PREEMPTED)


def finished() -> None:
  """This process has finished its part of the run (or stops with the others): its peers stop
  watching it, since its heartbeats end when it exits."""
  if jax.distributed.is_initialized() and not _done.is_set():
    _done.set()
    from jax._src import distributed as jax_distributed
    with contextlib.suppress(Exception):
      jax_distributed.global_state.client.key_value_set(
          f'{_ALIVE}{jax.process_index()}', _DONE, allow_overwrite=True)


def await_lost_process() -> None:
  """In a multi-process run, give the watch (`_watch_peers`) time to report a lost process
  (which ends this one) before an error from a collective is shown: a dead peer breaks the
  collective at once, but counts as lost only when its heartbeats have stopped for long. Once
  it is reported this never returns."""
  if jax.distributed.is_initialized() and not _done.is_set():
    if _lost.wait(peer_timeout() + 5 * _HEARTBEAT_S):
      # The watch is writing its one line and ends the process: a traceback from this thread
      # in the meantime would come before that line.
      threading.Event().wait()


def simulated_cpu_devices() -> int:
  """How many CPU devices this process will simulate (1 unless XLA_FLAGS or JAX asks for more)."""
  found = re.findall(r'--xla_force_host_platform_device_count=(\d+)', os.environ.get('XLA_FLAGS', ''))
  counts = [int(found[-1])] if found else []
  env = os.environ.get('JAX_NUM_CPU_DEVICES', '')
  if env.isdigit():
    counts.append(int(env))
  return max(counts, default=1)


def widen_cpu_thread_pool() -> None:
  """Give XLA:CPU's thread pools room for several collectives per simulated device.

  XLA:CPU sizes its pools at max(cores, devices) threads. Each collective holds a thread until
  every device has arrived, and a device may have two or more independent collectives in
  flight (fsdp's all-gathers): on a 2-core machine, 8 simulated devices then sometimes take all
  8 threads while one device waits for a thread, and XLA aborts the process after 40 s. Setting
  `NPROC` (which XLA reads before the core count) to 4 threads per device avoids that. A value
  the user set is kept; real accelerators and single-device runs are untouched.
  """
  devices = simulated_cpu_devices()
  if devices > 1 and not os.environ.get(_NPROC_ENV):
    os.environ[_NPROC_ENV] = str(max(os.cpu_count() or 1, 4 * devices))


def init_timeout() -> int:
  """Seconds to wait for all processes to join: `ADVCNN_INIT_TIMEOUT`, default 60."""
  return _seconds(_TIMEOUT_ENV)


def peer_timeout() -> int:
  """Seconds without a heartbeat after which a process counts as lost: `ADVCNN_PEER_TIMEOUT`,
  default 60."""
  return _seconds(_PEER_TIMEOUT_ENV)


def _seconds(name: str) -> int:
  value = os.environ.get(name, '')
  if not value:
    return _DEFAULT_TIMEOUT_S
  try:
    timeout = int(value)
  except ValueError:
    timeout = 0
  if not 1 <= timeout <= 10**6:
    raise UserError(f'{name}={value} is not a positive whole number of seconds; e.g. {name}=300')
  return timeout


@contextlib.contextmanager
def _deadline(seconds: float, message: str):
  """Exit with code 2 and `message` on stderr unless the block ends within `seconds`.

  A watchdog thread, since JAX's connect blocks in C++ (releasing the GIL) and
  ends a timed-out wait by aborting the whole process.
  """
  done = threading.Event()

  def watch():
    if not done.wait(seconds):
      sys.stderr.write(f'error: {message}\n')
      sys.stderr.flush()
      os._exit(2)

  threading.Thread(target=watch, daemon=True, name='distributed-init-deadline').start()
  try:
    yield
  finally:
    done.set()


def check_process_count(declared: int, timeout: int) -> None:
  """Every process of the run must have been started with the same JAX_NUM_PROCESSES.

  Each publishes its count in the distributed key-value store and reads everyone
  else's, so all processes (not only the odd one out) stop with the same error.
  """
  from jax._src import distributed as jax_distributed  # the runtime's client, as orbax uses it
  client = jax_distributed.global_state.client
  pid, joined = jax.process_index(), jax.process_count()
  client.key_value_set(f'advcnn/num_processes/{pid}', str(declared))
  counts = {}
  try:
    for i in range(joined):
      counts[i] = int(client.blocking_key_value_get(f'advcnn/num_processes/{i}', timeout * 1000))
  except Exception as e:  # the runtime raises its own error type on a deadline
    raise UserError(f'process {pid} could not read the other processes\' JAX_NUM_PROCESSES '
                    f'within {timeout}s ({type(e).__name__}); restart all processes') from None
  if joined == declared and set(counts.values()) == {declared}:
    return
  told = ', '.join(f'process {i}: {c}' for i, c in counts.items())
  raise AgreedUserError(f'processes disagree on JAX_NUM_PROCESSES ({told}; {joined} joined the run); '
                  'start every process with the same JAX_NUM_PROCESSES, equal to the number '
                  'of processes launched')


def is_main() -> bool:
  return jax.process_index() == 0


def any_process(flag: bool) -> bool:
  """Whether `flag` is True on any process: in a multi-process run a collective that every
  process must call at the same point of the program; free in a single-process run."""
  if jax.process_count() == 1:
    return flag
  from jax.experimental import multihost_utils
  return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def barrier(name: str) -> None:
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


def to_host(x: jax.Array) -> np.ndarray:
  """A global array as numpy on every process (a collective when it is sharded over processes:
  every process must call it)."""
  if getattr(x, 'is_fully_addressable', True):
    return np.asarray(x)
  if x.sharding.is_fully_replicated:
    return np.asarray(x.addressable_data(0))
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))
