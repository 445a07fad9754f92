"""The lab's web server (aiohttp): the page, its static files, a WebSocket per tab and uploads.

It listens on 127.0.0.1 only, and answers only requests addressed to the loopback host (a page
elsewhere cannot reach it through DNS rebinding) whose WebSocket origin is the lab itself.
Every tab shares the one session of `controller.Lab`; each tab gets the newest frame when it
is ready for one (a slow tab skips frames rather than queueing them).
"""
from __future__ import annotations

import asyncio
import json
import logging
import os

from aiohttp import WSMsgType, web

from common.errors import UserError
from gan.lab import protocol
from gan.lab.controller import Lab

log = logging.getLogger('advcnn.lab')
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
HOST = '127.0.0.1'
MAX_UPLOAD = 2 << 20  # bytes of a points file (200,000 x, y rows of text fit)
UPLOAD_TYPES = ('.csv', '.npy', '.txt')
LOOPBACK_NAMES = ('127.0.0.1', 'localhost')
# No script, style or connection from anywhere but the lab itself.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class Tab:
  """One WebSocket: JSON messages in order, and only the newest binary frame."""

  def __init__(self, ws: web.WebSocketResponse):
    self.ws = ws
    self.messages: list[str] = []
    self.frame: bytes | None = None
    self.wake = asyncio.Event()

  def put(self, msg: dict | bytes) -> None:
    if isinstance(msg, bytes):
      self.frame = msg
    else:
      self.messages.append(json.dumps(msg))
    self.wake.set()

  async def pump(self) -> None:
    while not self.ws.closed:
      await self.wake.wait()
      self.wake.clear()
      messages, self.messages = self.messages, []
      frame, self.frame = self.frame, None
      for text in messages:
        await self.ws.send_str(text)
      if frame is not None:
        await self.ws.send_bytes(frame)


class Hub:
  """The open tabs; `publish` may be called from any thread."""

  def __init__(self):
    self.tabs: set[Tab] = set()
    self.loop: asyncio.AbstractEventLoop | None = None

  def publish(self, msg: dict | bytes) -> None:
    if self.loop is not None and not self.loop.is_closed():
      self.loop.call_soon_threadsafe(self._deliver, msg)

  def _deliver(self, msg: dict | bytes) -> None:
    for tab in list(self.tabs):
      tab.put(msg)


def _host_ok(request: web.Request) -> bool:
  host = (request.host or '').rsplit(':', 1)[0].strip('[]')
  return host in LOOPBACK_NAMES


@web.middleware
async def guard(request: web.Request, handler):
  """Loopback Host only; security headers on every answer."""
  if not _host_ok(request):
    log.warning('refused a request for host %r', request.host)
    return web.Response(status=403, text='the lab answers requests to 127.0.0.1 only')
  response = await handler(request)
  response.headers.setdefault('Content-Security-Policy', CSP)
  response.headers.setdefault('X-Content-Type-Options', 'nosniff')
  response.headers.setdefault('Cache-Control', 'no-store')
  return response


LAB_KEY = web.AppKey('lab', Lab)
HUB_KEY = web.AppKey('hub', Hub)


def make_app(lab: Lab, hub: Hub) -> web.Application:
  app = web.Application(middlewares=[guard], client_max_size=MAX_UPLOAD)
  app[LAB_KEY], app[HUB_KEY] = lab, hub

  async def index(request):
    return web.FileResponse(os.path.join(STATIC, 'index.html'))

  async def favicon(request):
    return web.Response(status=204)

  app.router.add_get('/', index)
  app.router.add_get('/favicon.ico', favicon)
  app.router.add_get('/ws', websocket)
  app.router.add_post('/upload', upload)
  app.router.add_static('/static/', STATIC, show_index=False, follow_symlinks=False)
  return app


async def websocket(request: web.Request) -> web.StreamResponse:
  origin = request.headers.get('Origin')
  if origin is not None and origin.split('://', 1)[-1] != request.host:
    log.warning('refused a WebSocket from origin %r', origin)
    return web.Response(status=403, text='WebSockets only from the lab\'s own page')
  lab, hub = request.app[LAB_KEY], request.app[HUB_KEY]
  ws = web.WebSocketResponse(max_msg_size=protocol.MAX_MESSAGE, heartbeat=30)
  await ws.prepare(request)
  tab = Tab(ws)
  with lab.lock:
    snapshot = dict(lab.snapshot)
  tab.put(hello(lab, snapshot))
  for key in ('data', 'state'):
    if key in snapshot:
      tab.put(snapshot[key])
  if 'frame' in snapshot:
    tab.put(snapshot['frame'])
  hub.tabs.add(tab)
  pump = asyncio.create_task(tab.pump())
  try:
    async for msg in ws:
      if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
        continue
      try:
        lab.submit(protocol.parse(msg.data))
      except protocol.ProtocolError as e:
        log.warning('refused a message: %s', e)
        tab.put({'type': 'notice', 'level': 'error', 'message': f'refused: {e}'})
  finally:
    hub.tabs.discard(tab)
    pump.cancel()
    if not hub.tabs:  # the last tab closed: keep a resumable workdir, stop training
      lab.submit({'type': 'pause'})
      lab.submit({'type': 'autosave'})
  return ws


def hello(lab: Lab, snapshot: dict) -> dict:
  """What a new tab needs besides the state: the choices and ranges, and the history."""
  return {'type': 'hello', 'choices': {k: list(v) for k, v in protocol.CHOICES.items()},
          'ranges': {k: list(v) for k, v in protocol.RANGES.items()},
          'reset_keys': list(protocol.RESET_KEYS), 'history': snapshot.get('history', []),
          'max_points': protocol.MAX_POINTS, 'max_upload': MAX_UPLOAD,
          'session': os.path.basename(lab.session.workdir)}


async def upload(request: web.Request) -> web.Response:
  """A points file (.csv, .npy, .txt) as multipart field 'file': its name only gives the type;
  it is stored in the session's points/ folder under a name the lab picks."""
  lab = request.app[LAB_KEY]

  def refuse(message: str, status: int = 400) -> web.Response:
    log.warning('refused an upload: %s', message)
    return web.json_response({'ok': False, 'message': message}, status=status)

  if (request.content_length or 0) > MAX_UPLOAD + 4096:  # before reading any of it
    return refuse(f'the file is over the {MAX_UPLOAD >> 20} MiB limit', 413)
  try:
    reader = await request.multipart()
    part = await reader.next()
    if part is None or part.name != 'file':
      return refuse('send the points file as the form field "file"')
    name = part.filename or ''
    if any(c in name for c in '/\\\0') or name in ('.', '..') or len(name) > 255:
      return refuse('the file name must be a plain name, without a folder or path')
    ext = os.path.splitext(name)[1].lower()
    if ext not in UPLOAD_TYPES:
      return refuse(f'points files end in {", ".join(UPLOAD_TYPES)}; got {name!r:.60}')
    data = bytearray()
    while chunk := await part.read_chunk(1 << 16):
      data += chunk
      if len(data) > MAX_UPLOAD:
        return refuse(f'the file is over the {MAX_UPLOAD >> 20} MiB limit', 413)
  except (ValueError, AssertionError, web.HTTPException):
    return refuse('expected a multipart form upload with the field "file"')
  lab.submit({'type': 'upload', 'data': bytes(data), 'ext': ext})
  return web.json_response({'ok': True, 'message': f'{name} sent to the lab'})


async def serve(lab: Lab, port: int, ready=None) -> None:
  """Serve until cancelled (Ctrl-C); `ready(url)` is called once listening."""
  hub = Hub()
  hub.loop = asyncio.get_running_loop()
  lab.publish = hub.publish
  runner = web.AppRunner(make_app(lab, hub), access_log=None)
  await runner.setup()
  site = web.TCPSite(runner, HOST, port)
  try:
    await site.start()
  except OSError as e:
    await runner.cleanup()
    raise UserError(f'cannot listen on {HOST}:{port} ({e.strerror}); pass another --port') from None
  port = site._server.sockets[0].getsockname()[1]
  lab.start()
  if ready is not None:
    ready(f'http://{HOST}:{port}/')
  try:
    await asyncio.Event().wait()
  finally:
    await runner.cleanup()
