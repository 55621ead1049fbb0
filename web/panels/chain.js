// Panel 2: the chain rule, y = f4(f3(f2(f1(x)))). Forward values, the local
// partials (1 x 1 Jacobians of each link) and the products, right to left,
// all from nabla (nbw_chain: nb_forward, nb_jacobian, nb_backward), beside
// the closed form of each derivative evaluated here in JavaScript.
import { fmt } from '../draw.js';

const sigmoid = (u) => 1 / (1 + Math.exp(-u));
// The menu, in the order of chain_link in src/wasm/nb_wasm.c.
export const LINKS = [
  { f: '{u}²', d: '2{u}', df: (u) => 2 * u },
  { f: '3{u} + 1', d: '3', df: () => 3 },
  { f: 'tanh {u}', d: '1 − tanh²{u}', df: (u) => 1 - Math.tanh(u) ** 2 },
  { f: 'exp {u}', d: 'exp {u}', df: (u) => Math.exp(u) },
  { f: 'σ({u})', d: 'σ({u})(1 − σ({u}))', df: (u) => sigmoid(u) * (1 - sigmoid(u)) },
  { f: 'log(1 + exp {u})', d: 'σ({u})', df: sigmoid },
  { f: '√(1 + {u}²)', d: '{u} / √(1 + {u}²)', df: (u) => u / Math.sqrt(1 + u * u) },
  { f: 'relu {u}', d: '1 if {u} > 0 else 0', df: (u) => (u > 0 ? 1 : 0) },
];

const U = ['x', 'u₁', 'u₂', 'u₃', 'y'];

export function chainPanel(nb, root) {
  const $ = (s) => root.querySelector(s);
  const state = { fs: [0, 1, 2, 3], x: 0.4 };
  const selects = [...root.querySelectorAll('.chain-f')];
  selects.forEach((sel, i) => {
    sel.innerHTML = LINKS.map((l, k) => `<option value="${k}">${l.f.replace(/\{u\}/g, U[i])}</option>`).join('');
    sel.value = String(state.fs[i]);
    sel.addEventListener('change', () => { state.fs[i] = Number(sel.value); render(); });
  });
  $('#chain-x').addEventListener('input', (e) => { state.x = Number(e.target.value); render(); });

  function render() {
    const r = nb.chain(state.fs, state.x);
    $('#chain-x-value').textContent = fmt(state.x, 3);
    const ins = [state.x, ...r.u.slice(0, 3)]; // each link's input: x, u1, u2, u3
    // Forward, left to right.
    $('#chain-forward').innerHTML = [0, 1, 2, 3].map((i) => {
      const link = LINKS[state.fs[i]];
      return `<div class="link"><div class="fname">f${i + 1}(${U[i]}) = ${link.f.replace(/\{u\}/g, U[i])}</div>` +
        `<div class="val">${U[i + 1]} = <b data-u="${i + 1}">${fmt(r.u[i])}</b></div></div>`;
    }).join('<div class="arrow">→</div>');
    // Backward, right to left: dy/du_i = dy/du_{i+1} * du_{i+1}/du_i.
    const rows = [];
    let closed = 1;
    for (let k = 3; k >= 0; k--) {
      const link = LINKS[state.fs[k]];
      const localClosed = link.df(ins[k]);
      closed *= localClosed;
      const product = r.products[3 - k], upstream = k === 3 ? 1 : r.products[3 - k - 1];
      const lhs = `∂y/∂${U[k]}`;
      const ok = Math.abs(product - closed) <= 1e-5 * Math.max(1, Math.abs(closed));
      rows.push(`<tr><td>${lhs}</td>` +
        `<td>${k === 3 ? '' : `∂y/∂${U[k + 1]} · `}∂${U[k + 1]}/∂${U[k]}</td>` +
        `<td class="num">${k === 3 ? '' : `${fmt(upstream)} × `}${fmt(r.local[k])}</td>` +
        `<td class="num"><b data-d="${k}">${fmt(product)}</b></td>` +
        `<td class="num">${link.d.replace(/\{u\}/g, U[k])} = ${fmt(localClosed)}; product ${fmt(closed)}</td>` +
        `<td class="${ok ? 'ok' : 'bad'}">${ok ? '✓' : '✗'}</td></tr>`);
    }
    $('#chain-table tbody').innerHTML = rows.join('');
  }
  render();
  return { state, render };
}
