"""Live speed of the lab, measured by driving the real page in headless Chromium.

  python benchmarks/lab_speed.py [--seconds=15] [--rounds_per_frame=50,100] [--screenshot=PNG]
      [--config=gan/configs/toy2d.py:ring] [--config.model.depth=1 ...]

Starts `python -m launch.lab` on a free port, loads the page, presses play at each speed and
reads from the page how many rounds it drew and how many frames it rendered per second; then
times controls from the click to their effect on the page: play (the first new frame drawn),
pause (the page shows it paused), a learning-rate change (the server's confirmed value shown),
and a D step (its round drawn; the second press, after the D-only round has compiled). Prints
each figure and its ratio to the targets (1,000 rounds/s, 20 frames/s, 100 ms).
"""
import argparse
import os
import subprocess
import sys
import time

from playwright.sync_api import sync_playwright

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHROMIUM = '/usr/bin/chromium'
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync']
TARGETS = {'rounds_per_sec': 1000.0, 'frames_per_sec': 20.0, 'latency_ms': 100.0}

# Click `sel`, then wait (per animation frame) until the page shows the effect; ms elapsed.
TIME_CONTROL = '''async ([sel, kind, arg]) => {
  const lab = window.lab;
  // The last frame received, drawn or not: the frame of a play's last rounds can arrive just
  // before the page shows the pause and be drawn after it; counting from the last one drawn,
  // a D step would then look for a round number that never comes.
  const round = lab.stats.lastRound, drawn = lab.stats.framesDrawn;
  const done = {
    play: () => lab.stats.framesDrawn > drawn && lab.stats.drawnRound > round,
    pause: () => lab.state && !lab.state.playing &&
      document.getElementById('play').textContent.includes('play'),
    lr: () => lab.state.settings['optim.d_lr'] === arg &&
      [...document.querySelectorAll('#summary dd')].some(d => d.textContent === String(arg)),
    step: () => lab.stats.drawnRound === round + 1,
  }[kind];
  const t0 = performance.now();
  if (kind === 'lr') {
    const el = document.querySelector(sel);
    el.value = String(arg);
    el.dispatchEvent(new Event('change'));
  } else {
    document.querySelector(sel).click();
  }
  await new Promise(res => { const f = () => (done() ? res() : requestAnimationFrame(f)); f(); });
  return performance.now() - t0;
}'''


def start_lab(extra: list[str]) -> tuple[subprocess.Popen, str]:
  workdir = os.path.join('/tmp' if os.path.isdir('/tmp') else '.', f'lab_speed_{os.getpid()}')
  cmd = [sys.executable, '-m', 'launch.lab', '--port=0', f'--workdir={workdir}', *extra]
  proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, env={**os.environ, 'PYTHONPATH': ROOT})
  for line in proc.stdout:
    if line.startswith('GAN Lab at '):
      return proc, line.split()[-1]
  raise RuntimeError('the lab did not start: ' + (proc.stdout.read() or ''))


def measure_play(tab, rounds_per_frame: int, seconds: float) -> dict:
  tab.select_option('#speed', str(rounds_per_frame))
  tab.wait_for_function(f'window.lab.state.rounds_per_frame === {rounds_per_frame}')
  tab.click('#play')
  tab.wait_for_function('window.lab.state.playing')
  time.sleep(2.0)  # past the first frames
  a = tab.evaluate('[performance.now(), window.lab.stats.drawnRound, window.lab.stats.framesDrawn]')
  time.sleep(seconds)
  b = tab.evaluate('[performance.now(), window.lab.stats.drawnRound, window.lab.stats.framesDrawn]')
  tab.click('#play')
  tab.wait_for_function('!window.lab.state.playing')
  dt = (b[0] - a[0]) / 1000
  return {'rounds_per_frame': rounds_per_frame, 'rounds_per_sec': (b[1] - a[1]) / dt,
          'frames_per_sec': (b[2] - a[2]) / dt}


def measure_controls(tab, repeats: int = 5) -> dict:
  out = {}
  tab.evaluate(TIME_CONTROL, ['#step_d', 'step', None])  # compiles the D-only round once
  for kind, sel in (('play', '#play'), ('pause', '#play'), ('lr', '#set-optim-d_lr'),
                    ('step', '#step_d')):
    times = []
    for i in range(repeats):
      if kind == 'pause':
        tab.click('#play')
        tab.wait_for_function('window.lab.state.playing')
        time.sleep(0.3)
      arg = round(1e-3 * (1 + 0.25 * (i + 1)), 6) if kind == 'lr' else None
      times.append(tab.evaluate(TIME_CONTROL, [sel, kind, arg]))
      if kind == 'play':
        tab.click('#play')
        tab.wait_for_function('!window.lab.state.playing')
      time.sleep(0.2)
    out[kind] = sorted(times)[len(times) // 2]
  return out


def main() -> None:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--seconds', type=float, default=15.0)
  ap.add_argument('--rounds_per_frame', default='50,100')
  ap.add_argument('--screenshot', default='', help='PNG of the page after the play runs')
  args, lab_flags = ap.parse_known_args()
  proc, url = start_lab(lab_flags)
  try:
    with sync_playwright() as p:
      browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
      # The page's CSP forbids eval; Playwright's wait_for_function('expression') needs it.
      tab = browser.new_page(viewport={'width': 1300, 'height': 860}, bypass_csp=True)
      tab.goto(url)
      tab.wait_for_function('window.lab && window.lab.frame && window.lab.state')
      print(f'lab flags: {" ".join(lab_flags) or "(defaults)"}; {os.cpu_count()} CPU cores')
      for n in (int(v) for v in args.rounds_per_frame.split(',')):
        r = measure_play(tab, n, args.seconds)
        print(f'{n:4d} rounds/frame: {r["rounds_per_sec"]:7.1f} rounds/s '
              f'(x{r["rounds_per_sec"] / TARGETS["rounds_per_sec"]:.2f} of 1000), '
              f'{r["frames_per_sec"]:5.1f} frames/s (x{r["frames_per_sec"] / 20:.2f} of 20)')
      if args.screenshot:
        tab.screenshot(path=args.screenshot)
      for kind, ms in measure_controls(tab).items():
        print(f'control {kind:5s}: {ms:7.1f} ms from click to effect on the page '
              f'(median of 5; x{ms / TARGETS["latency_ms"]:.2f} of 100 ms)')
      browser.close()
  finally:
    proc.terminate()
    proc.wait(60)


if __name__ == '__main__':
  main()
