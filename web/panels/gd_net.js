// Panel 1, second part: the border of gradient descent for a network. The
// same rule as for f(x): along an eigenvector of the loss's Hessian with
// eigenvalue l a step multiplies the error by (1 - alpha l), so plain
// gradient descent is stable only for alpha < 2 / lambda_max. lambda_max
// comes from nabla in this page (nbw_net_lambda_max: nb_hessian_eigs on
// exact Hessian-vector products), for a small network near a minimum of its
// loss (models/border_mlp.safetensors on data/border.csv, both written by
// scripts/web_border_model.sh); `nabla curvature` gives the same value (the
// browser test compares them). Then full-batch gradient descent from those
// weights at the slider's alpha, loss per step.
import { context2d, fmt } from '../draw.js';
import { parseSafetensors } from './fashion.js';

const STEPS = 100;

// The CSV of scripts/web_border_model.sh: a header, then x1,x2,y per row.
function parseCsv(text) {
  const rows = text.trim().split('\n').slice(1).map((l) => l.split(',').map(Number));
  const x = new Float32Array(2 * rows.length), y = new Float32Array(rows.length);
  rows.forEach((r, i) => { x[2 * i] = r[0]; x[2 * i + 1] = r[1]; y[i] = r[2]; });
  return { x, y };
}

async function fetchBuf(u) {
  const r = await fetch(u);
  if (!r.ok) throw new Error(`${u}: ${r.status}`);
  return r.arrayBuffer();
}

export async function gdNetPanel(nb, root) {
  const $ = (s) => root.querySelector(s);
  const [modelBuf, csvBuf] = await Promise.all(['models/border_mlp.safetensors', 'data/border.csv'].map(fetchBuf));
  const { meta, tensors } = parseSafetensors(modelBuf);
  const { x, y } = parseCsv(new TextDecoder().decode(csvBuf));
  const net = nb.net(meta['nabla.spec'], meta['nabla.input'].split(',').map(Number), 'mse');
  const start = () => { // the file's weights, every run starts from them
    for (const p of net.params()) {
      const t = tensors[p.name];
      if (!t || t.data.length !== p.value.length) throw new Error(`border model: ${p.name} missing or of another size`);
      p.value.set(t.data);
    }
  };
  start();
  net.setData(x, y);
  const lambda = net.lambdaMax(x, y);
  const border = 2 / lambda.value;
  const state = { lr: 0.9 * border, losses: [] };
  const slider = $('#gdn-lr');
  slider.min = String(0.02 * border);
  slider.max = String(2 * border);
  slider.step = String(border / 500);
  slider.value = String(state.lr);
  $('#gdn-spec').textContent = meta['nabla.spec'];
  $('#gdn-n').textContent = String(y.length);
  $('#gdn-lambda').textContent = `λ_max = ${fmt(lambda.value, 6)} (nb_hessian_eigs: ${lambda.iterations} iterations, ` +
    `${lambda.products} Hessian-vector products), border α = 2 / λ_max = ${fmt(border, 6)}`;
  const mark = $('#gdn-border-mark');
  mark.style.left = `${((border - Number(slider.min)) / (Number(slider.max) - Number(slider.min))) * 100}%`;
  mark.dataset.label = `2/λ_max = ${fmt(border, 3)}`;

  function run() { // full-batch gradient descent, STEPS steps, from the file's weights
    start();
    net.optimizer('sgd', state.lr);
    const losses = [];
    for (let t = 0; t < STEPS; t++) {
      const l = net.train(y.length, 1); // the loss before the step
      losses.push(l);
      if (!Number.isFinite(l) || l > 1e6) break;
    }
    if (losses.length === STEPS) losses.push(net.loss(x, y));
    return losses;
  }

  function draw(losses) {
    const { ctx, w, h } = context2d($('#gdn-canvas'));
    const pad = 36, logs = losses.map((l) => Math.log10(Math.min(l, 1e6)));
    const lo = Math.min(...logs) - 0.1, hi = Math.max(...logs, lo + 1) + 0.1;
    const X = (t) => pad + (t / STEPS) * (w - pad - 12), Y = (v) => h - pad + 8 - ((v - lo) / (hi - lo)) * (h - pad - 8);
    ctx.clearRect(0, 0, w, h);
    ctx.strokeStyle = '#bbb';
    ctx.beginPath();
    ctx.moveTo(pad, 8); ctx.lineTo(pad, h - pad + 8); ctx.lineTo(w - 12, h - pad + 8);
    ctx.stroke();
    ctx.fillStyle = '#555';
    ctx.font = '12px sans-serif';
    ctx.fillText(`loss (log scale) over ${STEPS} full-batch steps at α = ${fmt(state.lr, 4)}`, pad + 6, 20);
    ctx.fillText(`${fmt(10 ** hi, 3)}`, 2, 16);
    ctx.fillText(`${fmt(10 ** lo, 3)}`, 2, h - pad + 4);
    ctx.fillText('step', w - 40, h - 8);
    ctx.strokeStyle = state.lr < border ? '#2b8a3e' : '#d9480f';
    ctx.lineWidth = 2;
    ctx.beginPath();
    logs.forEach((v, t) => (t ? ctx.lineTo(X(t), Y(v)) : ctx.moveTo(X(t), Y(v))));
    ctx.stroke();
    ctx.lineWidth = 1;
  }

  function render() {
    const losses = run();
    state.losses = losses;
    const first = losses[0], last = losses[losses.length - 1];
    const fell = Number.isFinite(last) && last <= first, blew = !Number.isFinite(last) || last > 1e6;
    let peak = 0;
    losses.forEach((l, t) => { if (l > losses[peak]) peak = t; });
    $('#gdn-lr-value').textContent = `${fmt(state.lr, 4)} = ${fmt(state.lr / border, 3)} × 2/λ_max`;
    const where = state.lr < border ? 'below' : 'above';
    // What the losses did, read from them: settled, blew up, or were thrown
    // out of the minimum (and where they went from there).
    const thrown = !fell && !blew && losses[peak] > 10 * first;
    const story = fell ? 'gradient descent converges' : blew ? 'gradient descent diverges'
      : thrown ? `gradient descent is thrown out of the minimum: the loss peaks at ${fmt(losses[peak], 3)} at step ${peak} ` +
        `and falls again where λ_max is ${fmt(net.lambdaMax(x, y).value, 4)}: a catapult`
      : 'the loss grows: gradient descent is thrown out of the minimum';
    $('#gdn-verdict').textContent = `α is ${where} the border: the loss went from ${fmt(first, 4)} to ` +
      `${Number.isFinite(last) ? fmt(last, 4) : last} in ${losses.length - 1} steps (${story})`;
    $('#gdn-verdict').className = fell ? 'ok' : 'bad';
    draw(losses);
  }

  slider.addEventListener('input', (e) => { state.lr = Number(e.target.value); render(); });
  for (const btn of root.querySelectorAll('[data-gdn]'))
    btn.addEventListener('click', () => {
      state.lr = Number(btn.dataset.gdn) * border;
      slider.value = String(state.lr);
      render();
    });
  render();
  return {
    lambdaMax: lambda.value, border, products: lambda.products, state, render,
    setRate(factor) { state.lr = factor * border; slider.value = String(state.lr); render(); return state.losses; },
  };
}
