"""A progress bar with rate and ETA for long runs (quiet when stderr is not a terminal)."""
from __future__ import annotations

import sys

from tqdm.auto import tqdm


def progress(total: int, initial: int = 0, desc: str = '', unit: str = 'step'):
  return tqdm(total=total, initial=initial, desc=desc, unit=unit, dynamic_ncols=True,
              disable=not sys.stderr.isatty(), mininterval=1.0, smoothing=0.1)
