// Drawing helpers shared by the panels: colour maps (the same ones as
// src/viz: blue-white-red diverging, centred on 0), heatmaps drawn from a
// small offscreen image scaled up, number formatting.

// Diverging map: t in [0, 1], 0 blue, 0.5 white, 1 red (nb_colormap's).
export function diverging(t) {
  t = Math.min(1, Math.max(0, Number.isNaN(t) ? 0.5 : t));
  const blue = [33, 102, 172], white = [247, 247, 247], red = [178, 24, 43];
  const [a, b, u] = t < 0.5 ? [blue, white, t / 0.5] : [white, red, (t - 0.5) / 0.5];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * u));
}

// The playground's two classes: orange (0) and blue (1), as TensorFlow
// Playground's; p is the probability of class 1.
export function classColor(p) {
  const orange = [245, 147, 34], white = [232, 234, 235], blue = [8, 119, 189];
  p = Math.min(1, Math.max(0, p));
  const [a, b, u] = p < 0.5 ? [orange, white, p / 0.5] : [white, blue, (p - 0.5) / 0.5];
  return [0, 1, 2].map((k) => Math.round(a[k] + (b[k] - a[k]) * u));
}

// rows x cols values drawn into the rectangle (x, y, w, h) of ctx through
// colour(v) -> [r, g, b]; smooth scales the image up with interpolation.
// One offscreen canvas and image per size, reused (the playground draws about
// twenty heatmaps a frame).
const offscreen = new Map();
function offscreenFor(rows, cols) {
  const key = `${rows}x${cols}`;
  if (!offscreen.has(key)) {
    const c = document.createElement('canvas');
    c.width = cols;
    c.height = rows;
    const cx = c.getContext('2d', { willReadFrequently: false });
    offscreen.set(key, { c, cx, img: cx.createImageData(cols, rows) });
  }
  return offscreen.get(key);
}
export function heatmap(ctx, values, rows, cols, colour, x, y, w, h, smooth = false) {
  const { c: off, cx: octx, img } = offscreenFor(rows, cols);
  const px = img.data;
  for (let i = 0; i < rows * cols; i++) {
    const c = colour(values[i]);
    px[4 * i] = c[0];
    px[4 * i + 1] = c[1];
    px[4 * i + 2] = c[2];
    px[4 * i + 3] = 255;
  }
  octx.putImageData(img, 0, 0);
  ctx.save();
  ctx.imageSmoothingEnabled = smooth;
  ctx.drawImage(off, x, y, w, h);
  ctx.restore();
}

// A colour map as a table of 256 RGB entries (for heatmapLut).
export function lut(colour) {
  const t = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) t.set(colour(i / 255), 3 * i);
  return t;
}
export const DIVERGING = lut(diverging), CLASSES = lut(classColor);

// The fast heatmap: value k of the picture is values[offset + k * stride],
// mapped linearly from [lo, hi] onto the table (the playground draws about
// twenty 40 x 40 heatmaps a frame; no array per pixel).
export function heatmapLut(ctx, values, offset, stride, rows, cols, table, lo, hi, x, y, w, h, smooth = true) {
  const { c: off, cx: octx, img } = offscreenFor(rows, cols);
  const px = img.data, scale = 255 / (hi - lo || 1);
  for (let k = 0; k < rows * cols; k++) {
    const v = values[offset + k * stride];
    const i = 3 * Math.max(0, Math.min(255, Math.round(((Number.isNaN(v) ? (lo + hi) / 2 : v) - lo) * scale)));
    px[4 * k] = table[i];
    px[4 * k + 1] = table[i + 1];
    px[4 * k + 2] = table[i + 2];
    px[4 * k + 3] = 255;
  }
  octx.putImageData(img, 0, 0);
  ctx.save();
  ctx.imageSmoothingEnabled = smooth;
  ctx.drawImage(off, x, y, w, h);
  ctx.restore();
}

// max |v| (at least tiny), for a diverging scale centred on 0.
export function maxAbs(values) {
  let m = 1e-12;
  for (const v of values) if (Math.abs(v) > m) m = Math.abs(v);
  return m;
}

// A number as the lecture writes it: 6 significant digits, no trailing zeros.
export function fmt(v, digits = 6) {
  if (!Number.isFinite(v)) return String(v);
  if (v !== 0 && (Math.abs(v) >= 1e6 || Math.abs(v) < 1e-4)) return v.toExponential(3);
  return String(Number(v.toPrecision(digits)));
}

// A canvas's 2-D context with a backing store at the device's pixel ratio,
// so text is sharp; drawing coordinates stay in CSS pixels.
export function context2d(canvas) {
  const ratio = window.devicePixelRatio || 1;
  const w = Number(canvas.getAttribute('width')), h = Number(canvas.getAttribute('height'));
  if (canvas.dataset.ratio !== String(ratio)) {
    canvas.style.width = `${w}px`;
    canvas.style.height = `${h}px`;
    canvas.width = w * ratio;
    canvas.height = h * ratio;
    canvas.setAttribute('width', String(w * ratio));
    canvas.dataset.w = w;
    canvas.dataset.h = h;
    canvas.dataset.ratio = String(ratio);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  return { ctx, w: Number(canvas.dataset.w), h: Number(canvas.dataset.h) };
}

export function shapeStr(shape) {
  return `(${shape.join(', ')})`;
}
