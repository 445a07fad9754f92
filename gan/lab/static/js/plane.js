// The 2D plane: D's heatmap, real and generated samples, the generator manifold, gradient
// arrows, and drawing a distribution by dragging. Coordinates come in data units over
// `bounds` = [xmin, xmax, ymin, ymax]; y grows upwards.

const REAL = [26, 150, 65];
const FAKE = [123, 50, 148];
const MID = [247, 247, 247];

// Colour of D(x) = p: purple (0, "generated") through white (0.5) to green (1, "real").
export function colour(p) {
  const t = Math.max(0, Math.min(1, p));
  const [a, b, u] = t < 0.5 ? [FAKE, MID, t * 2] : [MID, REAL, (t - 0.5) * 2];
  return a.map((v, i) => Math.round(v + (b[i] - v) * u));
}

export class Plane {
  constructor(canvas) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.bounds = [0, 1, 0, 1];
    this.real = [];
    this.frame = null;
    this.layers = { heatmap: true, real: true, fake: true, manifold: false, arrows: false };
    this.stretch = false;
    this.range = [0, 1];
    this.drawing = null;
    this.heat = document.createElement('canvas');
    this._bindDrawing();
  }

  setData(msg) {
    this.bounds = msg.bounds;
    this.real = msg.real;
  }

  setFrame(frame) { this.frame = frame; }

  toPixel(x, y) {
    const [x0, x1, y0, y1] = this.bounds;
    const { width: w, height: h } = this.canvas;
    return [(x - x0) / (x1 - x0) * w, h - (y - y0) / (y1 - y0) * h];
  }

  toData(px, py) {
    const [x0, x1, y0, y1] = this.bounds;
    const { width: w, height: h } = this.canvas;
    return [x0 + px / w * (x1 - x0), y0 + (h - py) / h * (y1 - y0)];
  }

  // D's range over the plane and the colour mapping in force ([lo, hi] -> [0, 1]).
  scale() {
    const d = this.frame && this.frame.arrays.d_prob;
    if (!d) return [0, 1];
    let lo = Infinity, hi = -Infinity;
    for (const v of d.data) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    this.range = [lo, hi];
    return this.stretch && hi - lo > 1e-6 ? [lo, hi] : [0, 1];
  }

  draw() {
    const { ctx, canvas } = this;
    ctx.fillStyle = '#fff';
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    const f = this.frame;
    const [lo, hi] = this.scale();
    if (f && this.layers.heatmap) this._heatmap(f.arrays.d_prob, lo, hi);
    if (this.layers.real) this._points(this.real, `rgba(${REAL},0.65)`, 2.2);
    if (f && this.layers.manifold) this._manifold(f.arrays.manifold);
    if (f && this.layers.fake) this._points(f.arrays.fake.points(), `rgba(${FAKE},0.8)`, 2.2);
    if (f && this.layers.arrows) this._arrows(f.arrays.fake.points(), f.arrays.arrows.points());
    if (this.drawing) this._points(this.drawing, 'rgba(20,20,20,0.8)', 2.5);
  }

  _heatmap(d, lo, hi) {
    const n = d.rows;  // d_prob is n x n, row 0 at ymin
    if (this.heat.width !== n) { this.heat.width = n; this.heat.height = n; }
    const hctx = this.heat.getContext('2d');
    const img = hctx.createImageData(n, n);
    for (let r = 0; r < n; r++) {
      for (let c = 0; c < n; c++) {
        const [R, G, B] = colour((d.data[r * n + c] - lo) / (hi - lo));
        const o = ((n - 1 - r) * n + c) * 4;
        img.data[o] = R; img.data[o + 1] = G; img.data[o + 2] = B; img.data[o + 3] = 150;
      }
    }
    hctx.putImageData(img, 0, 0);
    this.ctx.imageSmoothingEnabled = true;
    // Cell centres sit on the grid points, so the image spans half a cell beyond the bounds.
    const { width: w, height: h } = this.canvas;
    const cw = w / (n - 1), ch = h / (n - 1);
    this.ctx.drawImage(this.heat, -cw / 2, -ch / 2, w + cw, h + ch);
  }

  _points(points, style, radius) {
    const ctx = this.ctx;
    ctx.fillStyle = style;
    for (const [x, y] of points) {
      const [px, py] = this.toPixel(x, y);
      ctx.beginPath();
      ctx.arc(px, py, radius, 0, 2 * Math.PI);
      ctx.fill();
    }
  }

  _manifold(m) {
    // m: side*side points of a noise grid (2D noise) or side points of a line (1D noise).
    const ctx = this.ctx;
    const pts = m.points();
    const side = Math.round(Math.sqrt(pts.length));
    const grid = side * side === pts.length && side > 1;
    ctx.strokeStyle = `rgba(${FAKE},0.45)`;
    ctx.lineWidth = 1;
    const line = (idx) => {
      ctx.beginPath();
      idx.forEach((k, i) => {
        const [px, py] = this.toPixel(...pts[k]);
        if (i) ctx.lineTo(px, py); else ctx.moveTo(px, py);
      });
      ctx.stroke();
    };
    if (!grid) { line(pts.map((_, i) => i)); return; }
    for (let i = 0; i < side; i++) {
      line([...Array(side).keys()].map(j => i * side + j));
      line([...Array(side).keys()].map(j => j * side + i));
    }
  }

  _arrows(points, grads) {
    const ctx = this.ctx;
    let max = 1e-12;
    for (const [gx, gy] of grads) max = Math.max(max, Math.hypot(gx, gy));
    const len = 0.06 * this.canvas.width;  // the longest arrow, in pixels
    ctx.strokeStyle = 'rgba(60,20,80,0.75)';
    ctx.lineWidth = 1;
    points.forEach(([x, y], i) => {
      const [px, py] = this.toPixel(x, y);
      const dx = grads[i][0] / max * len, dy = -grads[i][1] / max * len;
      ctx.beginPath();
      ctx.moveTo(px, py);
      ctx.lineTo(px + dx, py + dy);
      const a = Math.atan2(dy, dx);
      ctx.lineTo(px + dx - 4 * Math.cos(a - 0.4), py + dy - 4 * Math.sin(a - 0.4));
      ctx.moveTo(px + dx, py + dy);
      ctx.lineTo(px + dx - 4 * Math.cos(a + 0.4), py + dy - 4 * Math.sin(a + 0.4));
      ctx.stroke();
    });
  }

  startDrawing() { this.drawing = []; this.canvas.classList.add('drawing'); }

  stopDrawing() {
    const pts = this.drawing || [];
    this.drawing = null;
    this.canvas.classList.remove('drawing');
    return pts;
  }

  _bindDrawing() {
    let down = false;
    const add = (e) => {
      const r = this.canvas.getBoundingClientRect();
      const px = (e.clientX - r.left) * this.canvas.width / r.width;
      const py = (e.clientY - r.top) * this.canvas.height / r.height;
      // A little spray around the pointer, so a stroke becomes a band of points.
      for (let k = 0; k < 3; k++) {
        const jitter = () => (Math.random() - 0.5) * 10;
        this.drawing.push(this.toData(px + jitter(), py + jitter()));
      }
    };
    this.canvas.addEventListener('pointerdown', (e) => {
      if (!this.drawing) return;
      down = true; this.canvas.setPointerCapture(e.pointerId); add(e);
    });
    this.canvas.addEventListener('pointermove', (e) => { if (down && this.drawing) add(e); });
    this.canvas.addEventListener('pointerup', () => { down = false; });
  }
}
