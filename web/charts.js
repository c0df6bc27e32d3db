// charts.js — small line charts drawn on <canvas>, no library.
//
// lineChart(canvas, series, opts): series = [{label, color, points: [[x, y], ...],
// step?: bool, dots?: (point) => color}], x being a time in ms. The y range
// starts at 0 (or opts.yMin) and ends at opts.yMax or the largest value.

const AXIS = '#8a94a6';
const GRID = 'rgba(138, 148, 166, 0.18)';

function niceMax(v) {
  if (v <= 0) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function fmtNum(v) {
  if (Math.abs(v) >= 1e6) return (v / 1e6).toFixed(1) + 'M';
  if (Math.abs(v) >= 1e4) return (v / 1e3).toFixed(0) + 'k';
  if (Number.isInteger(v)) return String(v);
  return v.toFixed(v < 10 ? 2 : 1);
}

function fmtTime(ms, span) {
  const d = new Date(ms);
  if (span > 2 * 86400e3) return d.toISOString().slice(5, 10);
  return d.toTimeString().slice(0, span > 600e3 ? 5 : 8);
}

export function lineChart(canvas, series, opts = {}) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 400;
  const h = canvas.clientHeight || 140;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext('2d');
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.clearRect(0, 0, w, h);
  g.font = '11px system-ui, sans-serif';

  const all = series.flatMap((s) => s.points);
  const pad = { l: 40, r: 10, t: 10, b: 20 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  if (all.length === 0) {
    g.fillStyle = AXIS;
    g.fillText(opts.empty || 'no data yet', pad.l + 8, pad.t + ph / 2);
    return;
  }
  let x0 = Math.min(...all.map((p) => p[0]));
  let x1 = Math.max(...all.map((p) => p[0]));
  if (opts.xMax) x1 = Math.max(x1, opts.xMax);
  if (x1 - x0 < 60e3) x0 = x1 - 60e3; // at least a minute wide
  const yMin = opts.yMin ?? 0;
  const yMax = opts.yMax ?? niceMax(Math.max(...all.map((p) => p[1])) * 1.05);
  const X = (x) => pad.l + ((x - x0) / (x1 - x0)) * pw;
  const Y = (y) => pad.t + ph - ((y - yMin) / (yMax - yMin || 1)) * ph;

  // grid and y labels
  g.strokeStyle = GRID;
  g.fillStyle = AXIS;
  g.textAlign = 'right';
  g.textBaseline = 'middle';
  for (let i = 0; i <= 4; i++) {
    const v = yMin + ((yMax - yMin) * i) / 4;
    const y = Y(v);
    g.beginPath();
    g.moveTo(pad.l, y);
    g.lineTo(w - pad.r, y);
    g.stroke();
    g.fillText(fmtNum(v), pad.l - 4, y);
  }
  for (const band of opts.bands || []) {
    g.strokeStyle = band.color;
    g.setLineDash([4, 3]);
    g.beginPath();
    g.moveTo(pad.l, Y(band.y));
    g.lineTo(w - pad.r, Y(band.y));
    g.stroke();
    g.setLineDash([]);
  }
  // x labels
  g.textAlign = 'center';
  g.textBaseline = 'top';
  for (let i = 0; i <= 3; i++) {
    const x = x0 + ((x1 - x0) * i) / 3;
    g.fillText(fmtTime(x, x1 - x0), Math.min(Math.max(X(x), pad.l + 20), w - pad.r - 20), h - pad.b + 5);
  }
  // lines
  for (const s of series) {
    const pts = [...s.points].sort((a, b) => a[0] - b[0]);
    if (!pts.length) continue;
    g.strokeStyle = s.color;
    g.lineWidth = 1.8;
    g.beginPath();
    pts.forEach((p, i) => {
      if (i === 0) g.moveTo(X(p[0]), Y(p[1]));
      else {
        if (s.step) g.lineTo(X(p[0]), Y(pts[i - 1][1]));
        g.lineTo(X(p[0]), Y(p[1]));
      }
    });
    if (s.step && opts.xMax) g.lineTo(X(x1), Y(pts[pts.length - 1][1]));
    g.stroke();
    g.lineWidth = 1;
    if (s.dots) {
      for (const p of pts) {
        g.fillStyle = s.dots(p);
        g.beginPath();
        g.arc(X(p[0]), Y(p[1]), 3.5, 0, 2 * Math.PI);
        g.fill();
      }
    }
  }
  // legend
  if (series.length > 1 || opts.legend) {
    g.textAlign = 'left';
    g.textBaseline = 'top';
    let lx = pad.l + 6;
    for (const s of series) {
      g.fillStyle = s.color;
      g.fillRect(lx, pad.t + 2, 10, 3);
      g.fillStyle = AXIS;
      g.fillText(s.label, lx + 14, pad.t - 2);
      lx += 22 + g.measureText(s.label).width;
    }
  }
}
