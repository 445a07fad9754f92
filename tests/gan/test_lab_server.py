"""The lab server's reliability and security: loopback only, hostile messages refused with an
error on the page and a log line, size-limited uploads kept in the session's folder, two tabs
on one session, a resumable workdir when the last tab closes or on Ctrl-C."""
import json
import os
import signal
import socket
import subprocess
import sys

import asyncio

import aiohttp
import pytest

from common.config import REPO_ROOT, load_config
from gan.lab import protocol
from tests.gan.lab_helpers import TINY, LabServer

pytestmark = pytest.mark.slow  # each starts a lab, which compiles its training steps


@pytest.fixture(scope='module')
def server(tmp_path_factory):
  root = tmp_path_factory.mktemp('lab')
  srv = LabServer(str(root / 'runs'))
  yield srv
  srv.stop()


def run(coro):
  return asyncio.run(asyncio.wait_for(coro, 60))


async def _messages(ws, until, limit=200):
  """JSON messages from `ws` until one satisfies `until` (returned)."""
  for _ in range(limit):
    msg = await ws.receive()
    if msg.type == aiohttp.WSMsgType.TEXT:
      data = json.loads(msg.data)
      if until(data):
        return data
  raise AssertionError('expected message never came')


def test_listens_on_loopback_only_and_refuses_other_hosts_and_origins(server):
  port = int(server.url.rsplit(':', 1)[1].strip('/'))
  with pytest.raises(OSError):  # nothing listens on the machine's other addresses
    addresses = {a[4][0] for a in socket.getaddrinfo(socket.gethostname(), port, socket.AF_INET)}
    addresses.discard('127.0.0.1')
    if not addresses:
      raise OSError('no non-loopback address on this machine')
    for a in addresses:
      socket.create_connection((a, port), timeout=2).close()

  async def probe():
    async with aiohttp.ClientSession() as s:
      async with s.get(server.url) as r:
        assert r.status == 200 and 'Content-Security-Policy' in r.headers
      async with s.get(server.url, headers={'Host': 'attacker.example'}) as r:
        assert r.status == 403  # DNS rebinding: a page elsewhere naming this address
      with pytest.raises(aiohttp.WSServerHandshakeError):
        await s.ws_connect(server.url + 'ws', headers={'Origin': 'http://attacker.example'})
      async with s.get(server.url + 'static/../session.py') as r:
        assert r.status in (403, 404)
  run(probe())


HOSTILE = [
    ('{not json', 'not JSON'),
    ('[1, 2]', 'JSON object'),
    (json.dumps({'type': 'launch_missiles'}), 'unknown message type'),
    (json.dumps({'type': 'set', 'key': 'model.hidden', 'value': 10**9}), 'out of range'),
    (json.dumps({'type': 'set', 'key': 'data.path', 'value': '/etc/passwd'}), 'unknown setting'),
    (json.dumps({'type': 'set', 'key': 'optim.d_lr', 'value': 'NaN'}), 'takes a number'),
    (json.dumps({'type': 'points', 'points': [[0, 1]] * (protocol.MAX_POINTS + 1)}), '2 to'),
    (json.dumps({'type': 'open', 'name': '../../etc'}), 'no saved session'),
    (json.dumps({'type': 'speed', 'rounds_per_frame': -3}), 'rounds_per_frame'),
]


def test_hostile_messages_get_an_error_and_the_server_keeps_serving(server, caplog):
  async def probe():
    async with aiohttp.ClientSession() as s:
      ws = await s.ws_connect(server.url + 'ws')
      for text, expected in HOSTILE:
        await ws.send_str(text)
        msg = await _messages(ws, lambda m: m['type'] == 'notice' and m['level'] == 'error')
        assert expected in msg['message'], (text[:80], msg)
      await ws.send_str(json.dumps({'type': 'ping', 't': 1}))
      assert (await _messages(ws, lambda m: m['type'] == 'pong'))['t'] == 1
      await ws.send_str('x' * (protocol.MAX_MESSAGE + 10))  # over the size limit: closed
      for _ in range(200):
        closed = await ws.receive()
        if closed.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
          break
      assert closed.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                             aiohttp.WSMsgType.ERROR)
      ws2 = await s.ws_connect(server.url + 'ws')  # and the server still serves
      assert (await _messages(ws2, lambda m: m['type'] == 'hello'))['type'] == 'hello'
      await ws2.close()
  with caplog.at_level('WARNING', logger='advcnn.lab'):
    run(probe())
  assert sum('refused' in r.message or 'no saved session' in r.message
             for r in caplog.records) >= len(HOSTILE) - 1


def test_uploads_are_size_limited_and_never_written_outside_the_session(server, tmp_path):
  root = server.lab.root
  before = sorted(os.walk(os.path.dirname(root)))

  async def post(name, data):
    # A hand-made body: client libraries may tidy a file name, a hostile page would not.
    body = (b'--B\r\nContent-Disposition: form-data; name="file"; filename="'
            + name.encode() + b'"\r\nContent-Type: text/csv\r\n\r\n' + data + b'\r\n--B--\r\n')
    async with aiohttp.ClientSession() as s:
      async with s.post(server.url + 'upload', data=body,
                        headers={'Content-Type': 'multipart/form-data; boundary=B'}) as r:
        return r.status, await r.json()

  status, out = run(post('big.csv', b'0,0\n' * (1 << 20)))  # 4 MiB
  assert status == 413 and 'limit' in out['message']
  for name in ('../escape.csv', 'a/../../escape.csv', '/tmp/escape.csv'):
    status, out = run(post(name, b'0,0\n1,1\n'))
    assert status == 400 and 'path' in out['message'], name
  status, _ = run(post('points.exe', b'0,0\n1,1\n'))
  assert status == 400
  assert sorted(os.walk(os.path.dirname(root))) == before  # nothing written anywhere
  rows = ''.join(f'{0.01 * i},{0.5 + 0.004 * i}\n' for i in range(60))  # more than a batch
  status, out = run(post('mine.csv', ('x,y\n' + rows).encode()))
  assert status == 200 and out['ok']
  server.wait(lambda: server.lab.session.live.data.name == 'points', what='the upload')
  path = server.lab.session.live.data.path
  assert os.path.commonpath([path, server.lab.session.workdir]) == server.lab.session.workdir
  assert os.path.basename(path).startswith('upload-')
  server.lab.submit({'type': 'set', 'key': 'data.name', 'value': 'ring'})
  server.wait(lambda: server.lab.session.live.data.name == 'ring', what='data back to ring')


def test_two_tabs_share_one_session_and_the_last_to_close_saves_it(server):
  async def probe():
    async with aiohttp.ClientSession() as s:
      a = await s.ws_connect(server.url + 'ws')
      b = await s.ws_connect(server.url + 'ws')
      await a.send_str(json.dumps({'type': 'round'}))
      await a.send_str(json.dumps({'type': 'set', 'key': 'optim.g_lr', 'value': 0.002}))
      seen = []
      for ws in (a, b):  # both tabs see the change, on the same session and round
        seen.append(await _messages(
            ws, lambda m: m['type'] == 'state' and m['settings']['optim.g_lr'] == 0.002))
      assert seen[0]['session'] == seen[1]['session'] and seen[0]['round'] == seen[1]['round']
      assert seen[0]['edits'] == seen[1]['edits'] and seen[0]['round'] >= 1
      await a.close()
      await b.close()
  run(probe())
  workdir = server.lab.session.workdir
  server.wait(lambda: os.path.exists(os.path.join(workdir, 'lab_config.py')), what='autosave')
  assert os.path.isdir(os.path.join(workdir, 'checkpoints'))


def test_ctrl_c_leaves_a_workdir_that_launch_gan_resumes(tmp_path):
  root = tmp_path / 'runs'
  env = {**os.environ, 'PYTHONPATH': REPO_ROOT}
  cmd = [sys.executable, '-m', 'launch.lab', '--port=0', f'--workdir={root}',
         '--config=gan/configs/toy2d.py:ring', *[f'--config.{o}' for o in TINY]]
  proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True)
  try:
    url = None
    for line in proc.stdout:
      if line.startswith('GAN Lab at '):
        url = line.split()[-1]
        break
    assert url, 'the lab did not print its URL'

    async def rounds():
      async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(url + 'ws')
        for _ in range(3):
          await ws.send_str(json.dumps({'type': 'round'}))
        await _messages(ws, lambda m: m['type'] == 'state' and m['round'] == 3)
    run(rounds())
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=120)[0]
  finally:
    proc.kill()
  assert proc.returncode == 0, out
  # Saved on Ctrl-C, or already when the page's socket closed (the last tab's autosave).
  assert 'saved the session to' in out or 'the session is saved in' in out, out
  workdir = root / 'session-001'
  from gan.train import train_and_evaluate
  config = load_config(str(workdir / 'lab_config.py'))
  assert config.train.steps == 3
  assert train_and_evaluate(config, str(workdir))['step'] == 3  # resumes as finished
