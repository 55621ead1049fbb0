// Boots the page: loads nabla.wasm, then the four panels. window.nablaApp
// exposes them to the browser test (tests/web/test.mjs).
import { Nabla } from './nabla.js';
import { gdPanel } from './panels/gd.js';
import { gdNetPanel } from './panels/gd_net.js';
import { chainPanel } from './panels/chain.js';
import { playgroundPanel } from './panels/playground.js';
import { fashionPanel } from './panels/fashion.js';

async function main() {
  const status = document.getElementById('status');
  try {
    const nb = await Nabla.load();
    document.getElementById('wasm-size').textContent = `nabla.wasm, ${(nb.wasmBytes / 1024).toFixed(0)} KiB`;
    const app = { nb, wasmBytes: nb.wasmBytes };
    app.gd = gdPanel(nb, document.getElementById('gd'));
    app.gdNet = await gdNetPanel(nb, document.getElementById('gd'));
    app.chain = chainPanel(nb, document.getElementById('chain'));
    app.playground = playgroundPanel(nb, document.getElementById('playground'));
    app.fashion = await fashionPanel(nb, document.getElementById('fashion'));
    window.nablaApp = app;
    status.textContent = '';
    status.hidden = true;
    document.body.dataset.ready = '1';
  } catch (e) {
    status.textContent = `nabla could not start: ${e.message}`;
    status.className = 'status bad';
    console.error(e);
  }
}
main();
