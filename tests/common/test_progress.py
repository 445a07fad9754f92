"""Progress off a terminal: plain lines with progress, rate, ETA and the latest metrics."""
import io
import re

from common.progress import Progress


def test_plain_lines_when_not_a_terminal():
  out = io.StringIO()  # not a tty
  p = Progress(100, desc='gan', unit='round', stream=out, interval=0.0)
  p.update(25, {'loss_d': 1.25, 'phase': 'head'})
  p.update(25)
  p.close()
  lines = out.getvalue().splitlines()
  assert len(lines) == 3  # one per update (interval 0) and one at the end
  assert re.fullmatch(r'gan: 25/100 rounds \(25%\), [\d.e+]+ rounds/s, ETA \S+ \| loss_d=1.25 '
                      r'phase=head', lines[0]), lines[0]
  assert lines[-1].startswith('gan: 50/100 rounds (50%)') and 'loss_d=1.25' in lines[-1]


def test_lines_are_spaced_by_the_interval_and_silent_when_disabled():
  out = io.StringIO()
  p = Progress(10, stream=out, interval=3600.0)
  for _ in range(10):
    p.update(1)
  assert out.getvalue() == ''  # within the interval
  p.close()
  assert out.getvalue().count('\n') == 1  # the closing line
  quiet = io.StringIO()
  q = Progress(10, stream=quiet, enabled=False, interval=0.0)
  q.update(5)
  q.close()
  assert quiet.getvalue() == ''


def test_resumed_progress_counts_from_the_restored_step():
  out = io.StringIO()
  p = Progress(100, initial=60, desc='fine_tune', stream=out, interval=0.0)
  p.update(10)
  assert out.getvalue().startswith('fine_tune: 70/100 steps (70%)')
