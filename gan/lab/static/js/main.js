// The lab page: one WebSocket to the server, the plane, charts and controls. Frames arrive as
// binary messages (see gan/lab/protocol.py) and the newest one is drawn at the next animation
// frame. `window.lab` exposes the page's state and counters to tests and benchmarks.

import { Chart, fmt } from './charts.js';
import { Controls } from './controls.js';
import { colour, Plane } from './plane.js';

const $ = (id) => document.getElementById(id);
const SPEEDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000];
const LAYERS = [['heatmap', 'D heatmap', '#bbb'], ['real', 'real', '#1a9641'],
  ['fake', 'generated', '#7b3294'], ['manifold', 'manifold', '#b48cc4'],
  ['arrows', 'gradients', '#3c1450']];
const SUMMARY = [['loss', 'loss.name'], ['G opt', 'optim.g_name'], ['G lr', 'optim.g_lr'],
  ['D opt', 'optim.d_name'], ['D lr', 'optim.d_lr'], ['D / G steps', null],
  ['GP', 'loss.gp_weight'], ['R1 γ', 'loss.r1_gamma'], ['layers × neurons', null],
  ['activation', 'model.activation'], ['noise', null], ['D Fourier', null],
  ['batch', 'data.batch_size'],
  ['data', 'data.name'], ['seed', 'seed']];

const lab = window.lab = {
  ws: null, state: null, data: null, hello: null, history: [], frame: null,
  stats: { framesReceived: 0, framesDrawn: 0, lastRound: 0, drawnRound: 0, messages: 0 },
  notices: [],
  send(msg) { if (lab.ws && lab.ws.readyState === 1) lab.ws.send(JSON.stringify(msg)); },
};
const plane = new Plane($('plane'));
const controls = new Controls(lab.send);
let dirty = true;
const floor = () => (lab.data ? lab.data.floor : null);
const charts = [
  new Chart($('chart-loss'), [{ key: 'loss_d', colour: '#1a9641', label: 'D loss' },
    { key: 'loss_g', colour: '#7b3294', label: 'G loss' }]),
  new Chart($('chart-div'), [{ key: 'kl', colour: '#d95f02', label: 'KL' },
    { key: 'js', colour: '#1b6fb3', label: 'JS' }],
  () => (floor() ? [{ value: floor().kl, colour: '#d95f02' }, { value: floor().js, colour: '#1b6fb3' }] : [])),
  new Chart($('chart-modes'), [{ key: 'modes', colour: '#444', label: 'modes' }]),
];

function decode(buffer) {
  const n = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, n)));
  const start = 4 + n + ((4 - ((4 + n) % 4)) % 4);
  const arrays = {};
  for (const [name, [offset, rows, cols]] of Object.entries(header.arrays)) {
    const data = new Float32Array(buffer, start + offset, rows * cols);
    let pts = null;
    arrays[name] = { data, rows, cols,
      points() { return pts || (pts = [...Array(rows).keys()].map(i => [data[i * cols], data[i * cols + 1]])); } };
  }
  return { header, arrays };
}

function connect() {
  const ws = lab.ws = new WebSocket(`ws://${location.host}/ws`);
  ws.binaryType = 'arraybuffer';
  ws.onopen = () => { $('connection').textContent = 'connected'; $('connection').className = 'pill ok'; lab.send({ type: 'list' }); };
  ws.onclose = () => {
    $('connection').textContent = 'disconnected: reload when the server runs';
    $('connection').className = 'pill bad';
  };
  ws.onmessage = (e) => {
    lab.stats.messages += 1;
    if (typeof e.data !== 'string') return onFrame(decode(e.data));
    const msg = JSON.parse(e.data);
    const handler = HANDLERS[msg.type];
    if (handler) handler(msg);
  };
}

function onFrame(frame) {
  lab.frame = frame;
  lab.stats.framesReceived += 1;
  lab.stats.lastRound = frame.header.round;
  if (frame.header.row) lab.history.push(frame.header.row);
  plane.setFrame(frame);
  dirty = true;
}

const HANDLERS = {
  hello(msg) {
    lab.hello = msg;
    lab.history = msg.history.slice();
    controls.build(msg);
    buildDistributions(msg.choices['data.name']);
  },
  session(msg) { lab.history = []; $('session-name').textContent = msg.name; dirty = true; },
  data(msg) {
    lab.data = msg;
    plane.setData(msg);
    $('modes-box').hidden = !msg.has_modes;
    for (const b of $('distributions').children) b.classList.toggle('active', b.dataset.name === msg.name);
    dirty = true;
  },
  state(msg) { lab.state = msg; showState(msg); },
  notice(msg) { notice(msg.message, msg.level); },
  saved(msg) { notice(`saved round ${msg.round} to ${msg.name}; replay: python -m launch.gan --config=${msg.config} --workdir=NEW_DIR`); lab.send({ type: 'list' }); },
  sessions(msg) {
    const sel = $('open');
    sel.replaceChildren(new Option('open…', ''));
    for (const n of msg.names) sel.add(new Option(n, n));
  },
  pong(msg) { lab.lastPong = msg; },
};

function notice(message, level = 'info') {
  lab.notices.push({ message, level });
  const el = document.createElement('div');
  el.className = `notice ${level}`;
  el.textContent = message;
  $('notices').append(el);
  setTimeout(() => el.remove(), level === 'error' ? 9000 : 5000);
}

function showState(s) {
  $('round-count').textContent = s.round;
  $('play').innerHTML = s.playing ? '&#10074;&#10074; pause' : '&#x25B6; play';
  $('play').classList.toggle('active', s.playing);
  $('speed').value = String(s.rounds_per_frame);
  $('slowmo').checked = s.slowmo;
  $('session-name').textContent = s.session;
  if (s.slowmo) setLayer('arrows', true);
  controls.update(s.settings);
  const st = s.settings;
  const dl = $('summary');
  dl.replaceChildren();
  for (const [label, key] of SUMMARY) {
    let v = key ? st[key] : '';
    if (label === 'D / G steps') v = `${st['train.n_d']} / ${st['train.n_g']}`;
    if (label === 'layers × neurons') v = `${st['model.depth']} × ${st['model.hidden']}`;
    if (label === 'noise') v = `${st['model.noise_dim']}D ${st['model.noise']}`;
    if (label === 'D Fourier') {
      v = st['model.d_fourier'] ? `${st['model.d_fourier']} × σ ${st['model.d_fourier_scale']}` : 'off';
    }
    const dt = document.createElement('dt'); dt.textContent = label;
    const dd = document.createElement('dd'); dd.textContent = typeof v === 'number' ? fmt(v) : v;
    dd.dataset.key = key || label;
    dl.append(dt, dd);
  }
  const dt = document.createElement('dt'); dt.textContent = 'edits';
  const dd = document.createElement('dd');
  dd.textContent = `${s.edits.length} recorded` + (s.saved_round ? ` · saved at ${s.saved_round}` : '');
  dl.append(dt, dd);
}

function buildDistributions(names) {
  const box = $('distributions');
  box.replaceChildren();
  for (const name of names) {
    const b = document.createElement('button');
    b.textContent = name; b.dataset.name = name;
    b.onclick = () => lab.send({ type: 'set', key: 'data.name', value: name });
    box.append(b);
  }
}

function setLayer(name, on) {
  plane.layers[name] = on;
  $(`layer-${name}`).checked = on;
  dirty = true;
}

function legend() {
  const bar = $('legend-bar'), ctx = bar.getContext('2d');
  const [lo, hi] = plane.stretch ? plane.range : [0, 1];
  for (let x = 0; x < bar.width; x++) {
    ctx.fillStyle = `rgb(${colour(x / (bar.width - 1))})`;
    ctx.fillRect(x, 0, 1, bar.height);
  }
  // The span of D over the plane, marked on the bar (readable even when D ≈ 0.5 everywhere).
  const [a, b] = plane.range.map(v => (v - lo) / (hi - lo || 1) * (bar.width - 1));
  ctx.strokeStyle = '#000'; ctx.lineWidth = 2;
  ctx.strokeRect(Math.min(a, b - 2), 1, Math.max(2, b - a), bar.height - 2);
  $('legend-text').textContent = `σ(D(x)): ${fmt(lo)} generated … ${fmt(hi)} real · ` +
    `D on the plane: ${plane.range[0].toFixed(3)} – ${plane.range[1].toFixed(3)}`;
}

function render() {
  if (dirty) {
    dirty = false;
    plane.draw();
    legend();
    for (const c of charts) c.draw(lab.history);
    const m = lab.frame ? lab.frame.header.metrics : {};
    $('metrics').textContent = Object.entries(m).map(([k, v]) => `${k} ${fmt(v)}`).join(' · ') +
      (lab.data ? ` · floor KL ${fmt(lab.data.floor.kl)} JS ${fmt(lab.data.floor.js)}` : '');
    if (lab.frame) {
      lab.stats.framesDrawn += 1;
      lab.stats.drawnRound = lab.frame.header.round;
      $('round-count').textContent = lab.frame.header.round;
    }
  }
  requestAnimationFrame(render);
}

function wire() {
  $('play').onclick = () => lab.send({ type: lab.state && lab.state.playing ? 'pause' : 'play' });
  for (const id of ['reset', 'round', 'step_d', 'step_g', 'save']) $(id).onclick = () => lab.send({ type: id });
  for (const n of SPEEDS) $('speed').add(new Option(`${n} rounds / frame`, String(n)));
  $('speed').onchange = () => lab.send({ type: 'speed', rounds_per_frame: Number($('speed').value) });
  $('slowmo').onchange = () => lab.send({ type: 'slowmo', on: $('slowmo').checked });
  $('open').onchange = () => { if ($('open').value) lab.send({ type: 'open', name: $('open').value }); };
  $('stretch').onchange = () => { plane.stretch = $('stretch').checked; dirty = true; };
  for (const [name, label, swatch] of LAYERS) {
    const wrap = document.createElement('label');
    const box = document.createElement('input');
    box.type = 'checkbox'; box.id = `layer-${name}`;
    const dot = document.createElement('span');
    dot.className = 'swatch'; dot.style.background = swatch;
    wrap.append(box, ' ', dot, label);
    $('layers').append(wrap);
    $(`layer-${name}`).checked = plane.layers[name];
    $(`layer-${name}`).onchange = (e) => setLayer(name, e.target.checked);
  }
  $('draw').onclick = () => { lab.send({ type: 'pause' }); plane.startDrawing(); $('draw-hint').hidden = false; dirty = true; };
  $('draw-cancel').onclick = () => { plane.stopDrawing(); $('draw-hint').hidden = true; dirty = true; };
  $('draw-done').onclick = () => {
    const pts = plane.stopDrawing();
    $('draw-hint').hidden = true;
    if (pts.length >= 2) lab.send({ type: 'points', points: pts.slice(0, lab.hello.max_points) });
    else notice('draw at least a short stroke first', 'error');
    dirty = true;
  };
  $('plane').addEventListener('pointermove', () => { if (plane.drawing) dirty = true; });
  $('upload').onchange = upload;
}

async function upload() {
  const file = $('upload').files[0];
  $('upload').value = '';
  if (!file) return;
  if (file.size > lab.hello.max_upload) return notice(`${file.name} is over the ${lab.hello.max_upload >> 20} MiB limit`, 'error');
  const form = new FormData();
  form.append('file', file, file.name);
  try {
    const r = await fetch('/upload', { method: 'POST', body: form });
    const out = await r.json();
    notice(out.message, out.ok ? 'info' : 'error');
  } catch (e) { notice(`upload failed: ${e}`, 'error'); }
}

wire();
connect();
requestAnimationFrame(render);
