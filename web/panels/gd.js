// Panel 1: gradient descent, x := x - alpha f'(x), with f' from nabla's
// reverse mode (nbw_gd: a graph x -> f(x), nb_forward, nb_backward, nb_grad).
import { context2d, fmt } from '../draw.js';

// Closed forms for the labels and the border alpha = 2 / f''(x*) (the
// quadratic model of f around its minimum: beyond it each step overshoots
// by more than it corrects, so the iterates grow).
const FUNCTIONS = [
  { name: 'f(x) = 2x²', d: "f'(x) = 4x", f2: () => 4, range: [-3.2, 3.2] },
  { name: 'f(x) = x⁴ − 3x² + x', d: "f'(x) = 4x³ − 6x + 1", f2: (x) => 12 * x * x - 6, range: [-2.2, 2.2] },
  { name: 'f(x) = log(1 + e²ˣ) − x', d: "f'(x) = tanh x", f2: (x) => 1 - Math.tanh(x) ** 2, range: [-4, 4] },
];

export function gdPanel(nb, root) {
  const $ = (s) => root.querySelector(s);
  const state = { fn: 0, lr: 0.1, x0: 1, steps: 3 };

  function border() {
    // x*: where a slow descent from x0 settles (the basin the path is in).
    const slow = nb.gd(state.fn, state.x0, 0.002, 4000).xs;
    const xStar = Math.abs(slow[slow.length - 1]) < 1e-6 ? 0 : slow[slow.length - 1];
    return { xStar, alpha: 2 / FUNCTIONS[state.fn].f2(xStar) };
  }

  function drawCurve(run, b) {
    const { ctx, w, h } = context2d($('#gd-canvas'));
    const F = FUNCTIONS[state.fn];
    const [lo, hi] = F.range;
    const xs = Array.from({ length: 241 }, (_, i) => lo + ((hi - lo) * i) / 240);
    const ys = nb.curve(state.fn, xs);
    const ymin = Math.min(...ys), ymax = Math.max(...ys), pad = 28;
    const X = (x) => pad + ((x - lo) / (hi - lo)) * (w - 2 * pad);
    const Y = (y) => h - pad - ((y - ymin) / (ymax - ymin)) * (h - 2 * pad);
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = '#bbb';
    ctx.lineWidth = 1;
    ctx.beginPath();
    ctx.moveTo(pad, Y(Math.max(ymin, Math.min(ymax, 0))));
    ctx.lineTo(w - pad, Y(Math.max(ymin, Math.min(ymax, 0))));
    ctx.moveTo(X(0), pad / 2);
    ctx.lineTo(X(0), h - pad);
    ctx.stroke();
    ctx.strokeStyle = '#1f4e79';
    ctx.lineWidth = 2.5;
    ctx.beginPath();
    xs.forEach((x, i) => (i ? ctx.lineTo(X(x), Y(ys[i])) : ctx.moveTo(X(x), Y(ys[i]))));
    ctx.stroke();
    ctx.fillStyle = '#555';
    ctx.font = '13px sans-serif';
    ctx.fillText(F.name, pad + 4, 18);
    // The path: each iterate on the curve, joined in order; those off the
    // plotted range are drawn at its edge with their value.
    const pts = run.xs.map((x, t) => ({ x, y: run.fs[t], t })).filter((p) => Number.isFinite(p.x));
    ctx.strokeStyle = '#d9480f';
    ctx.lineWidth = 1.5;
    ctx.beginPath();
    pts.forEach((p, i) => {
      const px = X(Math.max(lo, Math.min(hi, p.x))), py = Y(Math.max(ymin, Math.min(ymax, p.y)));
      i ? ctx.lineTo(px, py) : ctx.moveTo(px, py);
    });
    ctx.stroke();
    let lastLabel = null;
    pts.forEach((p) => {
      const inside = p.x >= lo && p.x <= hi;
      const px = X(Math.max(lo, Math.min(hi, p.x))), py = Y(Math.max(ymin, Math.min(ymax, p.y)));
      ctx.fillStyle = p.t === 0 ? '#333' : '#d9480f';
      ctx.beginPath();
      ctx.arc(px, py, inside ? 5 : 3, 0, 2 * Math.PI);
      ctx.fill();
      // A label where it does not cover the last one (steps bunch up near x*).
      if (!lastLabel || Math.hypot(px - lastLabel[0], py - lastLabel[1]) > 22) {
        ctx.fillStyle = '#222';
        ctx.fillText(`x${sub(p.t)}${inside ? '' : ' = ' + fmt(p.x)}`, px + 7, py - 7);
        lastLabel = [px, py];
      }
    });
    ctx.fillStyle = '#2b8a3e';
    ctx.beginPath();
    ctx.arc(X(b.xStar), Y(nb.curve(state.fn, [b.xStar])[0]), 4, 0, 2 * Math.PI);
    ctx.fill();
  }

  function render() {
    const run = nb.gd(state.fn, state.x0, state.lr, state.steps);
    const b = border();
    const F = FUNCTIONS[state.fn];
    $('#gd-lr-value').textContent = fmt(state.lr, 3);
    $('#gd-deriv').textContent = F.d;
    $('#gd-border').textContent =
      `border α = 2 / f''(x*) = 2 / ${fmt(F.f2(b.xStar), 4)} = ${fmt(b.alpha, 4)} at x* = ${fmt(b.xStar, 4)}`;
    const verdict = state.lr < b.alpha ? 'below the border: the steps shrink' : 'at or beyond the border: the steps do not shrink';
    $('#gd-verdict').textContent = `α = ${fmt(state.lr, 3)} is ${verdict}`;
    $('#gd-verdict').className = state.lr < b.alpha ? 'ok' : 'bad';
    const mark = $('#gd-border-mark');
    const slider = $('#gd-lr');
    const frac = (b.alpha - Number(slider.min)) / (Number(slider.max) - Number(slider.min));
    mark.style.left = `${Math.max(0, Math.min(1, frac)) * 100}%`;
    mark.hidden = !(frac >= 0 && frac <= 1);
    mark.dataset.label = `2/f'' = ${fmt(b.alpha, 3)}`;
    const rows = run.xs.map((x, t) => {
      const g = t < run.grads.length ? run.grads[t] : NaN;
      return `<tr><td>${t}</td><td class="num" data-x="${t}">${fmt(x)}</td><td class="num">${fmt(run.fs[t])}</td>` +
        `<td class="num">${t < run.grads.length ? fmt(g) : ''}</td>` +
        `<td class="num">${t < run.grads.length ? `${fmt(x)} − ${fmt(state.lr, 3)} · ${fmt(g)}` : ''}</td></tr>`;
    });
    $('#gd-table tbody').innerHTML = rows.join('');
    drawCurve(run, b);
  }

  $('#gd-fn').addEventListener('change', (e) => { state.fn = Number(e.target.value); state.steps = 3; render(); });
  $('#gd-lr').addEventListener('input', (e) => { state.lr = Number(e.target.value); render(); });
  $('#gd-x0').addEventListener('change', (e) => { state.x0 = Number(e.target.value) || 0; render(); });
  $('#gd-step').addEventListener('click', () => { state.steps = Math.min(state.steps + 1, 60); render(); });
  $('#gd-reset').addEventListener('click', () => { state.steps = 0; render(); });
  for (const btn of root.querySelectorAll('[data-lr]'))
    btn.addEventListener('click', () => {
      state.lr = Number(btn.dataset.lr);
      $('#gd-lr').value = String(state.lr);
      state.steps = 3;
      render();
    });
  render();
  return { state, render, values: () => nb.gd(state.fn, state.x0, state.lr, state.steps).xs };
}

function sub(t) {
  return String(t).split('').map((c) => '₀₁₂₃₄₅₆₇₈₉'[Number(c)]).join('');
}
