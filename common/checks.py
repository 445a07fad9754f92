"""Range and size checks both trainers' `validate` share: absurd values (negative, zero, 1e9,
nan, inf) are refused with one line before any work, instead of a traceback, a hang or an
out-of-memory kill later.

Size checks compare a lower bound of what a setting needs (bytes that must be held at once)
with the memory of the device or machine: they refuse only what cannot fit.
"""
from __future__ import annotations

import math
import os
from typing import Any

from common.errors import UserError

# Fusing more steps into one jitted call gains nothing past a few hundred and holds their
# batches in memory at once.
MAX_STEPS_PER_CALL = 10_000
# Longer runs take weeks at any speed; step counters are 32-bit.
MAX_STEPS = 10**8
# jax.random.key keeps 32 bits of a seed: larger (or negative) seeds repeat smaller ones.
MAX_SEED = 2**32 - 1


def _get(config: Any, key: str) -> Any:
  for part in key.split('.'):
    config = config[part]
  return config


def number(config: Any, key: str, lo: float | None = None, hi: float | None = None, *,
           integer: bool = False, lo_open: bool = False, hi_open: bool = False,
           hint: str = '') -> None:
  """UserError unless `config`'s dotted `key` is a finite number (an integer if `integer`) in
  the range from `lo` to `hi` (open ends where asked)."""
  value = _get(config, key)
  kinds = (int,) if integer else (int, float)
  ok = isinstance(value, kinds) and not isinstance(value, bool) and math.isfinite(value)
  ok = ok and (lo is None or (value > lo if lo_open else value >= lo))
  ok = ok and (hi is None or (value < hi if hi_open else value <= hi))
  if ok:
    return
  kind = 'an integer' if integer else 'a number'
  if lo is not None and hi is not None:
    where = f' in {"(" if lo_open else "["}{lo:g}, {hi:g}{")" if hi_open else "]"}'
  elif lo is not None:
    where = f' {">" if lo_open else ">="} {lo:g}'
  elif hi is not None:
    where = f' {"<" if hi_open else "<="} {hi:g}'
  else:
    where = ''
  raise UserError(f'{key} must be {kind}{where}, got {value!r}' + (f'; {hint}' if hint else ''))


def numbers(config: Any, keys: tuple[str, ...], *args, **kwargs) -> None:
  """`number` for each of `keys`, with the same range."""
  for key in keys:
    number(config, key, *args, **kwargs)


def memory_bytes() -> int:
  """Memory of this process's first device (an accelerator's own, else this machine's)."""
  import jax
  stats = jax.local_devices()[0].memory_stats() or {}
  if stats.get('bytes_limit'):
    return int(stats['bytes_limit'])
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return 2**40


def check_memory(need: float, what: str, advice: str) -> None:
  """UserError when `need` bytes (a lower bound of what `what` holds at once) exceed memory."""
  have = memory_bytes()
  if need > have:
    raise UserError(f'{what} needs at least {need / 2**30:.3g} GiB at once, more than the '
                    f'{have / 2**30:.3g} GiB of memory here; {advice}')
