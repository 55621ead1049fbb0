// Panel 3: the playground. A dense network on 2-D points, trained live by
// nabla in WebAssembly (nbw_net_train: forward, BCE loss, nb_backward,
// optimiser step), drawn every frame: the decision boundary and each
// neuron's output over the plane (as TensorFlow Playground does), and what
// it does not show: dJ/dw of every weight on the network's edges, the
// input-Jacobian field d y_hat / d (x1, x2) over the plane, and any layer's
// Jacobian dA[i]/dA[i-1] as a heatmap labelled out.shape + in.shape.
import { CLASSES, classColor, context2d, fmt, heatmap, heatmapLut, maxAbs, shapeStr } from '../draw.js';

const EXTENT = 6;       // the plane is [-6, 6]^2; the network sees x / 6
const GRID = 40;        // boundary and neuron heatmaps: 40 x 40 points
const SHADE = 25;       // |grad y_hat| of the input-Jacobian field: 25 x 25 points
const FIELD = 13;       // its arrows: 13 x 13
const POINTS = 1000;      // half for training by default: the 2-8-8-1 network trains on 500

function rng(seed) {    // mulberry32: small and reproducible
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
function gauss(r) {
  return Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
}

// Four data sets in [-6, 6]^2, labels 0 or 1; noise in [0, 0.5].
export function makeData(kind, noise, seed) {
  const r = rng(seed), pts = [];
  const jitter = () => noise * 3 * gauss(r);
  for (let i = 0; i < POINTS; i++) {
    let x, y, label;
    if (kind === 'circle') {
      label = i % 2;
      const radius = label ? r() * 2.5 : 3.5 + r() * 1.5, angle = r() * 2 * Math.PI;
      [x, y] = [radius * Math.cos(angle), radius * Math.sin(angle)];
    } else if (kind === 'xor') {
      [x, y] = [r() * 10 - 5, r() * 10 - 5];
      x += x > 0 ? 0.3 : -0.3;
      y += y > 0 ? 0.3 : -0.3;
      label = x * y > 0 ? 1 : 0;
    } else if (kind === 'gauss') {
      label = i % 2;
      const c = label ? 2 : -2;
      [x, y] = [c + gauss(r), c + gauss(r)];
    } else { // spiral: two arms, half a turn apart
      label = i % 2;
      const t = (i >> 1) / (POINTS / 2) * 1.75 * 2 * Math.PI, rad = (5 * (i >> 1)) / (POINTS / 2);
      [x, y] = [rad * Math.sin(t + label * Math.PI), rad * Math.cos(t + label * Math.PI)];
    }
    pts.push({ x: x + jitter(), y: y + jitter(), label });
  }
  return pts;
}

function toArrays(pts) {
  const x = new Float32Array(2 * pts.length), y = new Float32Array(pts.length);
  pts.forEach((p, i) => { x[2 * i] = p.x / EXTENT; x[2 * i + 1] = p.y / EXTENT; y[i] = p.label; });
  return { x, y };
}

function gridPoints(n) { // row 0 at the top (y = +6)
  const g = new Float32Array(2 * n * n);
  for (let i = 0; i < n; i++)
    for (let j = 0; j < n; j++) {
      g[2 * (i * n + j)] = -1 + (2 * (j + 0.5)) / n;
      g[2 * (i * n + j) + 1] = 1 - (2 * (i + 0.5)) / n;
    }
  return g;
}

export function playgroundPanel(nb, root) {
  const $ = (s) => root.querySelector(s);
  const st = {
    data: 'circle', noise: 0, trainPct: 50, hidden: [8, 8], act: 'tanh', lr: 0.03, opt: 'adam',
    batch: 10, stepsPerFrame: 5, edges: 'grad', jacLayer: 0, probe: [1.5, 1.0], playing: false,
    steps: 0, history: [], frames: 0, seed: 1,
  };
  const grid = gridPoints(GRID), shade = gridPoints(SHADE), field = gridPoints(FIELD);
  let net = null, train = null, test = null;

  function build() {
    if (net) net.dispose();
    const spec = [...st.hidden.map((n) => `dense ${n} ${st.act}`), 'dense 1 sigmoid'].join('; ');
    net = nb.net(spec, [2], 'bce', st.seed);
    net.optimizer(st.opt, st.lr);
    const pts = makeData(st.data, st.noise, 7);
    const nTrain = Math.round((pts.length * st.trainPct) / 100);
    train = toArrays(pts.slice(0, nTrain));
    test = toArrays(pts.slice(nTrain));
    train.pts = pts.slice(0, nTrain);
    test.pts = pts.slice(nTrain);
    net.setData(train.x, train.y);
    st.steps = 0;
    st.history = [];
    st.spec = spec;
    st.jacLayer = Math.min(st.jacLayer, net.layers.length - 1);
    renderLayerControls();
    draw();
  }

  function renderLayerControls() {
    $('#pg-spec').textContent = st.spec;
    $('#pg-layers').innerHTML = st.hidden.map((n, i) =>
      `<span class="layer-ctl">layer ${i + 1}: <button data-l="${i}" data-d="-1" title="remove a neuron">−</button>` +
      ` ${n} <button data-l="${i}" data-d="1" title="add a neuron">+</button></span>`).join('');
    for (const b of root.querySelectorAll('#pg-layers button'))
      b.addEventListener('click', () => {
        const i = Number(b.dataset.l);
        st.hidden[i] = Math.max(1, Math.min(8, st.hidden[i] + Number(b.dataset.d)));
        build();
      });
    const sel = $('#pg-jac-layer');
    sel.innerHTML = net.layers.map((s, i) =>
      `<option value="${i}">∂A[${i + 1}]/∂A[${i}]${i === net.layers.length - 1 ? ' (output)' : ''}</option>`).join('');
    sel.value = String(st.jacLayer);
  }

  function step() {
    const loss = net.train(st.batch, st.stepsPerFrame);
    st.steps += st.stepsPerFrame;
    return loss;
  }

  // While training, the field (two Jacobian passes) is redrawn every other
  // frame; everything else every frame.
  function draw(frameNo = 0) {
    const ms = {}, time = (name, f) => { const t = performance.now(); const r = f(); ms[name] = performance.now() - t; return r; };
    const [trainLoss, testLoss] = time('loss', () => [net.loss(train.x, train.y), test.y.length ? net.loss(test.x, test.y) : NaN]);
    st.trainLoss = trainLoss;
    st.testLoss = testLoss;
    st.history.push([trainLoss, testLoss]);
    if (st.history.length > 400) st.history.splice(0, st.history.length - 400);
    const out = time('predict', () => net.predict(grid, GRID * GRID).slice());
    time('boundary', () => drawBoundary(out));
    time('network', () => drawNetwork());
    if (frameNo % 2 === 0) time('field', () => drawField());
    time('jacobian', () => drawLayerJacobian());
    time('losscurve', () => drawLoss());
    st.ms = ms; // where a frame's time goes (the browser test prints it)
    $('#pg-steps').textContent = String(st.steps);
    $('#pg-epoch').textContent = fmt((st.steps * st.batch) / train.y.length, 3);
    $('#pg-train-loss').textContent = trainLoss.toFixed(4);
    $('#pg-test-loss').textContent = Number.isNaN(testLoss) ? '–' : testLoss.toFixed(4);
  }

  function drawBoundary(out) {
    const { ctx, w, h } = context2d($('#pg-boundary'));
    heatmapLut(ctx, out, 0, 1, GRID, GRID, CLASSES, 0, 1, 0, 0, w, h);
    const P = (p) => [((p.x + EXTENT) / (2 * EXTENT)) * w, ((EXTENT - p.y) / (2 * EXTENT)) * h];
    const showTest = $('#pg-show-test').checked;
    for (const [set, stroke] of [[train.pts, '#fff'], ...(showTest ? [[test.pts, '#000']] : [])])
      for (const p of set) {
        const [px, py] = P(p);
        ctx.fillStyle = p.label ? '#0877bd' : '#f59322';
        ctx.strokeStyle = stroke;
        ctx.lineWidth = 1;
        ctx.beginPath();
        ctx.arc(px, py, 3, 0, 2 * Math.PI);
        ctx.fill();
        ctx.stroke();
      }
    const [qx, qy] = P({ x: st.probe[0], y: st.probe[1] });
    ctx.strokeStyle = '#111';
    ctx.lineWidth = 2;
    ctx.beginPath();
    ctx.moveTo(qx - 8, qy); ctx.lineTo(qx + 8, qy); ctx.moveTo(qx, qy - 8); ctx.lineTo(qx, qy + 8);
    ctx.stroke();
  }

  // Columns: the inputs x1, x2, each hidden layer, the output; each node a
  // heatmap of its value over the plane; edges coloured by dJ/dw (or w).
  function drawNetwork() {
    const { ctx, w, h } = context2d($('#pg-net'));
    ctx.clearRect(0, 0, w, h);
    const sizes = [2, ...net.layers.map((s) => s[0])];
    const node = 30, colX = (c) => 20 + (c * (w - 40 - node)) / (sizes.length - 1);
    const rowY = (c, r) => h / 2 + (r - (sizes[c] - 1) / 2) * 36 - node / 2 + 8;
    const params = net.params();
    const kernels = params.filter((p) => p.name.endsWith('.kernel'));
    const useGrad = st.edges === 'grad';
    let scale = 1e-12;
    for (const k of kernels) scale = Math.max(scale, maxAbs((useGrad ? k.grad : k.value) || [0]));
    for (let c = 0; c + 1 < sizes.length; c++) {
      const k = kernels[c], vals = (useGrad ? k.grad : k.value) || new Float32Array(k.value.length);
      for (let i = 0; i < sizes[c]; i++)
        for (let j = 0; j < sizes[c + 1]; j++) {
          const v = vals[i * sizes[c + 1] + j], t = v / scale; // kernel (in, out), Keras layout
          const col = classColor(0.5 + 0.5 * t);
          ctx.strokeStyle = `rgb(${col[0]},${col[1]},${col[2]})`;
          ctx.lineWidth = 0.5 + 4 * Math.abs(t);
          ctx.beginPath();
          ctx.moveTo(colX(c) + node, rowY(c, i) + node / 2);
          ctx.lineTo(colX(c + 1), rowY(c + 1, j) + node / 2);
          ctx.stroke();
        }
    }
    ctx.font = '11px sans-serif';
    ctx.fillStyle = '#333';
    for (let c = 0; c < sizes.length; c++) {
      const label = c === 0 ? 'X (N, 2)' : c === sizes.length - 1 ? `ŷ (N, 1)` : `A[${c}] (N, ${sizes[c]})`;
      ctx.fillText(label, colX(c) - 4, 12);
      // Node r of column c: its value over the grid, strided out of the
      // layer's (N, units) output. One colour scale in the whole panel, as
      // TensorFlow Playground's: orange negative (or class 0), blue positive
      // (or class 1); hidden units centred on 0, the output on 0.5.
      const all = c === 0 ? grid : net.layerValue(c - 1, GRID * GRID);
      const last = c === sizes.length - 1;
      for (let r = 0; r < sizes[c]; r++) {
        let m = 1e-12;
        if (!last) for (let k = r; k < all.length; k += sizes[c]) m = Math.max(m, Math.abs(all[k]));
        heatmapLut(ctx, all, r, sizes[c], GRID, GRID, CLASSES, last ? 0 : -m, last ? 1 : m,
          colX(c), rowY(c, r), node, node);
        ctx.strokeStyle = '#666';
        ctx.lineWidth = 1;
        ctx.strokeRect(colX(c), rowY(c, r), node, node);
      }
    }
    ctx.fillText(useGrad ? `edges: ∂J/∂w, |max| = ${fmt(scale, 3)} (orange < 0 < blue)` : `edges: w, |max| = ${fmt(scale, 3)} (orange < 0 < blue)`,
      20, h - 6);
  }

  function drawField() {
    const { ctx, w, h } = context2d($('#pg-field'));
    const J = net.inputJacobian(shade, SHADE * SHADE).slice(); // (N, 1, 2)
    const mag = new Float32Array(SHADE * SHADE);
    for (let i = 0; i < mag.length; i++) mag[i] = Math.hypot(J[2 * i], J[2 * i + 1]);
    const m = maxAbs(mag);
    heatmap(ctx, mag, SHADE, SHADE, (v) => { const t = v / m; return [255 - 150 * t, 255 - 200 * t, 255 - 60 * t]; },
      0, 0, w, h, true);
    const F = net.inputJacobian(field, FIELD * FIELD);
    const cell = w / FIELD;
    ctx.strokeStyle = '#222';
    ctx.fillStyle = '#222';
    ctx.lineWidth = 1.3;
    for (let i = 0; i < FIELD * FIELD; i++) {
      const cx = ((i % FIELD) + 0.5) * cell, cy = (Math.floor(i / FIELD) + 0.5) * cell;
      const dx = F[2 * i] / m, dy = -F[2 * i + 1] / m, len = 0.9 * cell * Math.min(1, Math.hypot(dx, dy));
      if (len < 1.5) continue;
      const a = Math.atan2(dy, dx), ex = cx + len * Math.cos(a), ey = cy + len * Math.sin(a);
      ctx.beginPath();
      ctx.moveTo(cx, cy); ctx.lineTo(ex, ey);
      ctx.lineTo(ex - 4 * Math.cos(a - 0.5), ey - 4 * Math.sin(a - 0.5));
      ctx.moveTo(ex, ey);
      ctx.lineTo(ex - 4 * Math.cos(a + 0.5), ey - 4 * Math.sin(a + 0.5));
      ctx.stroke();
    }
    $('#pg-field-max').textContent = fmt(m, 3);
  }

  function drawLayerJacobian() {
    const i = st.jacLayer;
    const { shape, data } = net.layerJacobian(i, [st.probe[0] / EXTENT, st.probe[1] / EXTENT]);
    const rows = shape[1], cols = shape[3];
    const { ctx, w, h } = context2d($('#pg-jac'));
    ctx.clearRect(0, 0, w, h);
    const cell = Math.min(26, Math.floor((w - 60) / cols), Math.floor((h - 50) / rows));
    const m = maxAbs(data);
    heatmap(ctx, data, rows, cols, (v) => classColor(0.5 + 0.5 * v / m), 40, 24, cols * cell, rows * cell);
    ctx.fillStyle = '#333';
    ctx.font = '11px sans-serif';
    ctx.fillText(`in: ${i === 0 ? 'x1, x2' : `A[${i}]`} →`, 40, 16);
    ctx.save();
    ctx.translate(28, 24 + (rows * cell) / 2);
    ctx.rotate(-Math.PI / 2);
    ctx.textAlign = 'center';
    ctx.fillText(`out: A[${i + 1}]`, 0, 0);
    ctx.restore();
    ctx.fillText(`|max| = ${fmt(m, 3)} (orange < 0 < blue)`, 40, 24 + rows * cell + 16);
    const outShape = shape.slice(0, 2), inShape = shape.slice(2);
    $('#pg-jac-label').textContent = `∂A[${i + 1}]/∂A[${i}] at (x1, x2) = (${fmt(st.probe[0], 3)}, ${fmt(st.probe[1], 3)}): ` +
      `shape ${shapeStr(shape)} = out.shape ${shapeStr(outShape)} + in.shape ${shapeStr(inShape)}`;
    st.jacShape = shape;
  }

  function drawLoss() {
    const { ctx, w, h } = context2d($('#pg-loss'));
    ctx.clearRect(0, 0, w, h);
    const hist = st.history, top = Math.max(0.8, ...hist.map((r) => (Number.isNaN(r[1]) ? 0 : Math.max(r[0], r[1]))));
    for (const [k, colour] of [[0, '#333'], [1, '#aaa']]) {
      ctx.strokeStyle = colour;
      ctx.lineWidth = 1.5;
      ctx.beginPath();
      hist.forEach((r, t) => {
        const x = (t / Math.max(1, hist.length - 1)) * w, y = h - (r[k] / top) * (h - 4);
        t ? ctx.lineTo(x, y) : ctx.moveTo(x, y);
      });
      ctx.stroke();
    }
  }

  function frame(now) {
    st.frames++;
    st.frameTimes = st.frameTimes || [];
    st.frameTimes.push(now);
    if (st.frameTimes.length > 120) st.frameTimes.shift();
    if (st.frameTimes.length > 10) {
      const dt = (st.frameTimes[st.frameTimes.length - 1] - st.frameTimes[0]) / (st.frameTimes.length - 1);
      $('#pg-fps').textContent = (1000 / dt).toFixed(0);
    }
    if (st.playing) {
      step();
      draw(st.frames);
    }
    requestAnimationFrame(frame);
  }

  function bind(id, ev, fn) { $(id).addEventListener(ev, fn); }
  bind('#pg-play', 'click', () => { st.playing = !st.playing; $('#pg-play').textContent = st.playing ? '❚❚ pause' : '▶ train'; });
  bind('#pg-step', 'click', () => { step(); draw(); });
  bind('#pg-reset', 'click', () => { st.seed++; build(); });
  bind('#pg-data', 'change', (e) => { st.data = e.target.value; build(); });
  bind('#pg-noise', 'change', (e) => { st.noise = Number(e.target.value) / 100; $('#pg-noise-value').textContent = e.target.value; build(); });
  bind('#pg-split', 'change', (e) => { st.trainPct = Number(e.target.value); $('#pg-split-value').textContent = e.target.value; build(); });
  bind('#pg-act', 'change', (e) => { st.act = e.target.value; build(); });
  bind('#pg-opt', 'change', (e) => { st.opt = e.target.value; net.optimizer(st.opt, st.lr); });
  bind('#pg-lr', 'change', (e) => { st.lr = Number(e.target.value); net.optimizer(st.opt, st.lr); });
  bind('#pg-batch', 'change', (e) => { st.batch = Number(e.target.value); });
  bind('#pg-edges', 'change', (e) => { st.edges = e.target.value; draw(); });
  bind('#pg-show-test', 'change', () => draw());
  bind('#pg-jac-layer', 'change', (e) => { st.jacLayer = Number(e.target.value); draw(); });
  bind('#pg-add-layer', 'click', () => { if (st.hidden.length < 5) { st.hidden.push(4); build(); } });
  bind('#pg-remove-layer', 'click', () => { if (st.hidden.length > 0) { st.hidden.pop(); build(); } });
  $('#pg-boundary').addEventListener('click', (e) => {
    const r = e.target.getBoundingClientRect();
    st.probe = [((e.clientX - r.left) / r.width) * 2 * EXTENT - EXTENT, EXTENT - ((e.clientY - r.top) / r.height) * 2 * EXTENT];
    draw();
  });
  build();
  requestAnimationFrame(frame);
  return { st, build, draw, net: () => net, trainSize: () => train.y.length, play: (on) => { if (st.playing !== on) $('#pg-play').click(); } };
}
