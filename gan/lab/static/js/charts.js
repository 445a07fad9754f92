// Line charts over rounds on a canvas: several series, optional dashed reference lines.

export class Chart {
  // series: [{key, colour, label}], refs: () => [{value, colour, label}]
  constructor(canvas, series, refs = () => []) {
    this.canvas = canvas;
    this.ctx = canvas.getContext('2d');
    this.series = series;
    this.refs = refs;
  }

  draw(history) {
    const { ctx, canvas } = this;
    const w = canvas.width, h = canvas.height, left = 38, bottom = 16, top = 14;
    ctx.clearRect(0, 0, w, h);
    ctx.font = '10px system-ui, sans-serif';
    const rows = history.filter(r => this.series.some(s => Number.isFinite(r[s.key])));
    const refs = this.refs();
    let lo = Infinity, hi = -Infinity;
    for (const r of rows) for (const s of this.series) {
      const v = r[s.key];
      if (Number.isFinite(v)) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    }
    for (const ref of refs) { lo = Math.min(lo, ref.value); hi = Math.max(hi, ref.value); }
    if (!Number.isFinite(lo)) { ctx.fillStyle = '#999'; ctx.fillText('no data yet', left, h / 2); return; }
    if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
    const x0 = rows.length ? rows[0].step : 0, x1 = rows.length ? rows[rows.length - 1].step : 1;
    const X = s => left + (x1 > x0 ? (s - x0) / (x1 - x0) : 1) * (w - left - 6);
    const Y = v => top + (1 - (v - lo) / (hi - lo)) * (h - top - bottom);
    ctx.strokeStyle = '#ccd'; ctx.fillStyle = '#667';
    ctx.beginPath(); ctx.moveTo(left, top); ctx.lineTo(left, h - bottom);
    ctx.lineTo(w - 6, h - bottom); ctx.stroke();
    ctx.fillText(fmt(hi), 2, top + 4); ctx.fillText(fmt(lo), 2, h - bottom);
    ctx.fillText(String(x0), left, h - 3);
    const last = String(x1);
    ctx.fillText(last, w - 6 - ctx.measureText(last).width, h - 3);
    for (const ref of refs) {
      ctx.setLineDash([4, 3]); ctx.strokeStyle = ref.colour;
      ctx.beginPath(); ctx.moveTo(left, Y(ref.value)); ctx.lineTo(w - 6, Y(ref.value)); ctx.stroke();
      ctx.setLineDash([]);
    }
    let lx = left + 4;
    for (const s of this.series) {
      ctx.strokeStyle = s.colour; ctx.lineWidth = 1.3;
      ctx.beginPath();
      let started = false;
      for (const r of rows) {
        const v = r[s.key];
        if (!Number.isFinite(v)) continue;
        if (started) ctx.lineTo(X(r.step), Y(v)); else { ctx.moveTo(X(r.step), Y(v)); started = true; }
      }
      ctx.stroke();
      ctx.lineWidth = 1;
      ctx.fillStyle = s.colour;
      ctx.fillText(s.label, lx, 10);
      lx += ctx.measureText(s.label).width + 10;
    }
  }
}

export function fmt(v) {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e4) ? v.toExponential(2) : String(+v.toPrecision(3));
}
