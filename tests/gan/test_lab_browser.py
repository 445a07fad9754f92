"""The lab page in headless Chromium (Playwright): play, D-only and G-only steps, a learning
rate and a loss changed mid-run, a drawn distribution and a save, each checked on the page and
in the server's state; the saved session replays bitwise. Screenshots go to the test's tmp
folder."""
import os

import jax
import numpy as np
import pytest

from tests.gan.lab_helpers import LabServer

CHROMIUM = '/usr/bin/chromium'
ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync']
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not os.path.exists(CHROMIUM),
                       reason='needs Debian\'s chromium at /usr/bin/chromium '
                              '(apt-get install chromium)'),
]


def host(tree):
  return jax.tree.map(np.asarray, tree)


def changed(a, b):
  return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture
def page(tmp_path):
  playwright = pytest.importorskip('playwright.sync_api')
  server = LabServer(str(tmp_path / 'runs'))
  try:
    with playwright.sync_playwright() as p:
      browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
      # The page's CSP forbids eval; Playwright's wait_for_function('expression') needs it.
      tab = browser.new_page(viewport={'width': 1300, 'height': 860}, bypass_csp=True)
      errors = []
      tab.on('pageerror', lambda e: errors.append(str(e)))
      tab.goto(server.url)
      tab.wait_for_function('window.lab && window.lab.frame && window.lab.data && '
                            'window.lab.state')
      yield tab, server, tmp_path
      browser.close()
      assert not errors, errors
  finally:
    server.stop()


def lab_value(tab, expr):
  return tab.evaluate(f'window.lab.{expr}')


def wait_paused(tab, server):
  tab.wait_for_function('window.lab.state && !window.lab.state.playing')
  server.wait(lambda: not server.lab.playing, what='pause')


def test_play_steps_edits_drawing_and_save_in_the_browser(page):
  tab, server, tmp = page
  first = np.array(lab_value(tab, 'frame.arrays.fake.points()'))
  tab.screenshot(path=str(tmp / '1_loaded.png'))

  tab.click('#play')  # play: rounds go up and the generated samples move
  tab.wait_for_function('window.lab.stats.drawnRound >= 60')
  tab.click('#play')
  wait_paused(tab, server)
  moved = np.array(lab_value(tab, 'frame.arrays.fake.points()'))
  assert np.abs(moved - first).max() > 1e-4
  tab.screenshot(path=str(tmp / '2_played.png'))

  n_d = lab_value(tab, 'state.settings["train.n_d"]')
  for button, moves, stays in (('#step_d', 'd', 'g'), ('#step_g', 'g', 'd')):
    before, r = host(server.lab.session.state), server.lab.session.round
    tab.click(button)
    tab.wait_for_function(f'window.lab.stats.drawnRound === {r + 1}', timeout=120000)
    after = host(server.lab.session.state)
    assert changed(before[moves]['params'], after[moves]['params']), button
    assert not changed(before[stays], after[stays]), button  # bitwise untouched
    assert not changed(before[f'{stays}_opt'], after[f'{stays}_opt']), button
  assert lab_value(tab, 'state.settings["train.n_d"]') == n_d  # back to the round's settings

  tab.fill('#set-optim-d_lr', '0.0025')  # a learning rate mid-run
  tab.press('#set-optim-d_lr', 'Enter')
  tab.wait_for_function('window.lab.state.settings["optim.d_lr"] === 0.0025')
  assert server.lab.session.live.optim.d_lr == 0.0025
  tab.select_option('#set-loss-name', 'lsgan')  # and the loss
  tab.wait_for_function('window.lab.state.settings["loss.name"] === "lsgan"')
  r = server.lab.session.round
  assert (r, 'loss.name', 'lsgan') in server.lab.session.edits
  assert (r, 'optim.d_lr', 0.0025) in server.lab.session.edits
  tab.click('#round')
  tab.wait_for_function(f'window.lab.stats.drawnRound === {r + 1}', timeout=120000)
  assert lab_value(tab, 'frame.header.row.loss_d') < 1.0  # an LSGAN loss, not BCE's ~1.39

  tab.click('#draw')  # draw a distribution: a stroke across the plane
  box = tab.locator('#plane').bounding_box()
  tab.mouse.move(box['x'] + 150, box['y'] + 400)
  tab.mouse.down()
  for i in range(40):
    tab.mouse.move(box['x'] + 150 + 6 * i, box['y'] + 400 - 5 * i)
  tab.mouse.up()
  tab.screenshot(path=str(tmp / '3_drawing.png'))
  tab.click('#draw-done')
  tab.wait_for_function('window.lab.data.name === "points"')
  path = server.lab.session.live.data.path
  assert path.startswith(server.lab.session.workdir + os.sep) and os.path.exists(path)
  drawn = np.loadtxt(path, delimiter=',')
  assert len(drawn) >= 40 and drawn[:, 0].min() < drawn[:, 0].max()
  tab.click('#play')
  tab.wait_for_function(f'window.lab.stats.drawnRound >= {r + 40}')
  tab.click('#play')
  wait_paused(tab, server)
  tab.check('#layer-manifold')
  tab.check('#layer-arrows')
  tab.screenshot(path=str(tmp / '4_drawn_trained.png'))

  tab.click('#save')  # save, then replay the export from scratch
  tab.wait_for_function('window.lab.notices.some(n => n.message.startsWith("saved round"))')
  tab.screenshot(path=str(tmp / '5_saved.png'))
  workdir = server.lab.session.workdir
  for name in ('config.json', 'metrics.jsonl', 'summary.json', 'checkpoints',
               'images/final.png', 'lab_config.py'):
    assert os.path.exists(os.path.join(workdir, name)), name
  from common.config import load_config
  from gan.train import train_and_evaluate
  config = load_config(os.path.join(workdir, 'lab_config.py'))
  assert config.train.steps == server.lab.session.round
  _, replayed = train_and_evaluate(config, str(tmp / 'replay'), return_state=True)
  saved = host(server.lab.session.state)
  for a, b in zip(jax.tree.leaves(host(replayed)), jax.tree.leaves(saved)):
    assert a.dtype == b.dtype and np.array_equal(a, b)
