"""Every script in benchmarks/ runs to the end at a small setting and prints its figures as
positive, finite numbers: a script no test runs breaks unseen (resnet_speed's third section
once stopped with an AttributeError, scan_fusion once printed 0.00x for --rounds below
--fused). The figures themselves are not checked: wall-clock time is the machine's."""
import importlib.util
import math
import os
import re
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CHROMIUM = '/usr/bin/chromium'
NUM = r'([-+0-9.eEinfa]+)'

# script, its arguments, and (pattern, least number of matches) pairs for its figures.
CASES = {
    'backbone_speed': (
        ['--archs=vgg16,inception_v3', '--image_size=75', '--batch_size=2',
         '--train_batch_size=2', '--steps_per_call=2', '--iters=1', '--warmup=0', '--threads=2'],
        [(rf'flax/torch(?: speed)? {NUM}x', 6), (rf'flax {NUM} GFLOP/s, torch {NUM} GFLOP/s', 6),
         (rf'jax {NUM} GFLOP/s, torch {NUM} GFLOP/s', 1),
         (rf'timed calls, [^:]+: flax {NUM}-{NUM}, torch {NUM}-{NUM}', 6)]),
    'resnet_speed': (
        ['--arch=resnet18', '--image_size=32', '--batch_size=4', '--train_batch_size=4',
         '--steps_per_call=2', '--iters=1', '--warmup=0', '--head_images=32',
         '--head_image_size=32', '--head_epochs=1', '--skip_rss', '--threads=2'],
        [(rf'flax/torch {NUM}x', 1), (rf'flax/torch speed {NUM}x', 2),
         (rf'cached speed-up {NUM}x', 1)]),
    'lab_ceiling': ([], [(rf'ceiling: {NUM} rounds/s', 1),
                         (rf'training loop alone: {NUM} rounds/s', 1)]),
    'dcgan_speed': (['--rounds=1', '--warmup=0', '--threads=2'],
                    [(rf'jax upsample=\S+\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}\s+{NUM}', 3)]),
    'inception_speed': (['--num=8', '--batch_size=4', '--threads=2'],
                        [(rf'flax / torch = {NUM}', 1)]),
    'sngan_speed': (['--rounds=1', '--warmup=0', '--threads=2'],
                    [(rf'ratio torch/jax: wall median {NUM}, wall min {NUM}, cpu {NUM}', 1)]),
    'multidevice_throughput': (['--toy-rounds=20', '--digits-rounds=4', '--repeats=1'],
                               [(rf'\s{NUM}x$', 4)]),
    'scan_fusion': (['--rounds=200'], [(rf'ratio fused / per-round:\s+{NUM}x', 2)]),
    'lab_speed': (['--seconds=2'], [(rf'{NUM} rounds/s', 2), (rf'{NUM} frames/s', 2),
                                    (rf'{NUM} ms from click to effect', 4)]),
}


def _run(script, args):
  return subprocess.run([sys.executable, os.path.join(REPO, 'benchmarks', f'{script}.py'), *args],
                        capture_output=True, text=True, cwd=REPO, timeout=900)


@pytest.mark.slow
@pytest.mark.parametrize('script', sorted(CASES))
def test_runs_and_prints_positive_finite_figures(script):
  if script == 'lab_speed' and not (os.path.exists(CHROMIUM)
                                    and importlib.util.find_spec('playwright')):
    pytest.skip('needs Debian\'s chromium at /usr/bin/chromium and playwright')
  args, patterns = CASES[script]
  out = _run(script, args)
  assert out.returncode == 0, out.stderr[-2000:]
  for pattern, least in patterns:
    found = re.findall(pattern, out.stdout, re.MULTILINE)
    assert len(found) >= least, f'{pattern!r}: {len(found)} of {least} in\n{out.stdout}'
    for match in found:
      for text in (match if isinstance(match, tuple) else (match,)):
        value = float(text)
        assert math.isfinite(value) and value > 0, f'{pattern!r} gave {text} in\n{out.stdout}'


def test_scan_fusion_refuses_fewer_rounds_than_one_fused_call():
  out = _run('scan_fusion', ['--rounds=20', '--fused=100'])
  assert out.returncode == 2
  assert '--rounds (20) must be at least --fused (100)' in out.stderr
  assert 'Traceback' not in out.stderr


def test_memory_line_reads_free_memory_and_page_cache(tmp_path):
  from benchmarks import peer
  meminfo = tmp_path / 'meminfo'
  meminfo.write_text('MemTotal:       24641536 kB\nMemFree:         2097152 kB\n'
                     'MemAvailable:   23068672 kB\nBuffers:           1048576 kB\n'
                     'Cached:         19922944 kB\nSwapCached:            0 kB\n')
  assert peer.memory_state(str(meminfo)) == (
      'host memory: 2.0 GiB free, 20.0 GiB page cache, of 23.5 GiB')
  meminfo.write_text('MemTotal: 1 kB\n')  # fields missing: no line rather than an error
  assert peer.memory_state(str(meminfo)) == ''
  assert peer.memory_state(str(tmp_path / 'absent')) == ''
