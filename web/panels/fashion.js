// Panel 4: a CNN trained by nabla on Fashion-MNIST (models/fashion_cnn.safetensors,
// its training command in README.md) classifies test images and a drawing,
// with the saliency map beside it: row c of the input-Jacobian of the logits,
// d logit_c / d x for the predicted class c, by one VJP (nbw_net_saliency).
import { context2d, diverging, fmt, heatmap, maxAbs } from '../draw.js';

export const CLASSES = ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag',
  'Ankle boot'];

// safetensors: 8-byte little-endian header length, a JSON header, the data.
export function parseSafetensors(buf) {
  const dv = new DataView(buf);
  const len = Number(dv.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buf, 8, len)));
  const meta = header.__metadata__ || {};
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F32') throw new Error(`${name}: dtype ${t.dtype}, the page reads F32 model files`);
    const [a, b] = t.data_offsets;
    tensors[name] = { shape: t.shape, data: new Float32Array(buf.slice(8 + len + a, 8 + len + b)) };
  }
  return { meta, tensors };
}

// IDX (MNIST's format), uncompressed unsigned bytes: magic 0 0 8 rank, dims.
export function parseIdx(buf) {
  const dv = new DataView(buf), rank = dv.getUint8(3);
  if (dv.getUint16(0) !== 0 || dv.getUint8(2) !== 8) throw new Error('IDX: expected unsigned bytes');
  const shape = Array.from({ length: rank }, (_, i) => dv.getUint32(4 + 4 * i));
  return { shape, data: new Uint8Array(buf, 4 + 4 * rank) };
}

export async function fashionPanel(nb, root) {
  const $ = (s) => root.querySelector(s);
  const [modelBuf, imagesBuf, labelsBuf] = await Promise.all(
    ['models/fashion_cnn.safetensors', 'data/fashion-test-images.idx', 'data/fashion-test-labels.idx'].map(
      async (u) => { const r = await fetch(u); if (!r.ok) throw new Error(`${u}: ${r.status}`); return r.arrayBuffer(); }));
  const { meta, tensors } = parseSafetensors(modelBuf);
  const inputShape = meta['nabla.input'].split(',').map(Number);
  const net = nb.net(meta['nabla.spec'], inputShape, 'cce');
  for (const p of net.params()) { // the file's tensors into the model's parameters
    const t = tensors[p.name];
    if (!t || t.data.length !== p.value.length) throw new Error(`model file: ${p.name} missing or of another size`);
    p.value.set(t.data);
  }
  const images = parseIdx(imagesBuf), labels = parseIdx(labelsBuf).data;
  const count = images.shape[0];
  const image = (i) => Float32Array.from(images.data.subarray(784 * i, 784 * (i + 1)), (v) => v / 255);
  $('#fm-spec').textContent = meta['nabla.spec'];

  // The gallery of test images.
  const gallery = $('#fm-gallery');
  for (let i = 0; i < count; i++) {
    const c = document.createElement('canvas');
    c.width = 28; c.height = 28;
    c.title = `test image ${i}: ${CLASSES[labels[i]]}`;
    c.dataset.index = String(i);
    heatmap(c.getContext('2d'), image(i), 28, 28, (v) => [255 * v, 255 * v, 255 * v], 0, 0, 28, 28);
    c.addEventListener('click', () => show(image(i), i));
    gallery.appendChild(c);
  }

  // The drawing pad: 28 x 28 values in [0, 1], a soft round brush.
  const pad = new Float32Array(784);
  const padCanvas = $('#fm-pad');
  let drawing = false;
  function paint(e) {
    const r = padCanvas.getBoundingClientRect();
    const px = ((e.clientX - r.left) / r.width) * 28, py = ((e.clientY - r.top) / r.height) * 28;
    for (let y = 0; y < 28; y++)
      for (let x = 0; x < 28; x++) {
        const d2 = (x + 0.5 - px) ** 2 + (y + 0.5 - py) ** 2;
        pad[y * 28 + x] = Math.min(1, pad[y * 28 + x] + Math.exp(-d2 / 1.2) * 0.6);
      }
    show(pad, -1);
  }
  padCanvas.addEventListener('pointerdown', (e) => {
    drawing = true;
    padCanvas.setPointerCapture(e.pointerId); // the stroke goes on outside the pad
    e.preventDefault();
    paint(e);
  });
  padCanvas.addEventListener('pointermove', (e) => { if (drawing) paint(e); });
  window.addEventListener('pointerup', () => { drawing = false; });
  $('#fm-clear').addEventListener('click', () => { pad.fill(0); show(pad, -1); });

  // The model ends in logits ('dense 10'): probabilities by a softmax here,
  // as nabla predict prints them.
  const endsInSoftmax = /softmax\s*$/.test(meta['nabla.spec']);
  function classify(x) {
    let p = Array.from(net.predict(x, 1));
    if (!endsInSoftmax) {
      const m = Math.max(...p), e = p.map((v) => Math.exp(v - m)), z = e.reduce((a, b) => a + b, 0);
      p = e.map((v) => v / z);
    }
    let c = 0;
    for (let k = 1; k < p.length; k++) if (p[k] > p[c]) c = k;
    return { p, c };
  }

  function show(x, index) {
    const { p, c } = classify(x);
    const sal = net.saliency(x, c).slice(); // (1, 28, 28, 1): d logit_c / d x
    const a = context2d($('#fm-input'));
    heatmap(a.ctx, x, 28, 28, (v) => [255 * v, 255 * v, 255 * v], 0, 0, a.w, a.h);
    if (index < 0) { // the pad shows what is drawn
      const b = context2d(padCanvas);
      heatmap(b.ctx, pad, 28, 28, (v) => [255 * v, 255 * v, 255 * v], 0, 0, b.w, b.h);
    }
    const s = context2d($('#fm-saliency'));
    const m = maxAbs(sal);
    heatmap(s.ctx, sal, 28, 28, (v) => diverging(0.5 + 0.5 * v / m), 0, 0, s.w, s.h);
    $('#fm-saliency-max').textContent = fmt(m, 3);
    // The image in gray, tinted by the saliency where it is large.
    const o = context2d($('#fm-overlay'));
    heatmap(o.ctx, Array.from(x, (v, i) => [v, sal[i] / m]), 28, 28, ([v, t]) => {
      const g = 40 + 140 * v, c = diverging(0.5 + 0.5 * t), a = Math.min(1, 1.6 * Math.abs(t));
      return [0, 1, 2].map((k) => g * (1 - a) + c[k] * a);
    }, 0, 0, o.w, o.h, true);
    $('#fm-title').textContent = index >= 0
      ? `test image ${index}: ${CLASSES[labels[index]]}` : 'your drawing';
    $('#fm-pred').textContent = `${CLASSES[c]} (${(100 * p[c]).toFixed(1)}%)`;
    $('#fm-pred').dataset.cls = String(c);
    $('#fm-saliency-label').textContent = `∂ logit[${CLASSES[c]}] / ∂x, shape (1, 28, 28, 1): row ${c} of the ` +
      `input-Jacobian of shape (1, 10, 1, 28, 28, 1)`;
    $('#fm-bars').innerHTML = p.map((v, k) =>
      `<div class="bar${k === c ? ' top' : ''}"><span class="name">${CLASSES[k]}</span>` +
      `<span class="fill" style="width:${(100 * v).toFixed(1)}%"></span><span class="pct">${(100 * v).toFixed(1)}%</span></div>`).join('');
  }
  show(image(0), 0);
  return { count, classify: (i) => classify(image(i)).c, show: (i) => show(image(i), i),
    inkedPixels: () => pad.filter((v) => v > 0.3).length };
}
