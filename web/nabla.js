// nabla in the page: loads nabla.wasm (the C core built for wasm32-wasi by
// scripts/web.sh) and wraps its C API (src/wasm/nb_wasm.h) in JavaScript.
// No Emscripten runtime: the module imports a few WASI functions, and the
// library never prints or touches files, so each is a stub that refuses
// (fd_write forwards to the console in case a future change prints); the
// clocks and random_get are real. Any other WASI import a future core asks
// for answers ENOSYS instead of failing to link.

const WASI_EBADF = 8, WASI_ENOSYS = 52;

function wasiStubs(getMemory) {
  const view = () => new DataView(getMemory().buffer);
  return {
    environ_sizes_get(countPtr, sizePtr) {
      view().setUint32(countPtr, 0, true);
      view().setUint32(sizePtr, 0, true);
      return 0;
    },
    environ_get() { return 0; },
    fd_close() { return WASI_EBADF; },
    fd_seek() { return WASI_EBADF; },
    fd_write(fd, iovs, iovsLen, writtenPtr) {
      const dv = view();
      let text = '', total = 0;
      for (let i = 0; i < iovsLen; i++) {
        const ptr = dv.getUint32(iovs + 8 * i, true), len = dv.getUint32(iovs + 8 * i + 4, true);
        text += new TextDecoder().decode(new Uint8Array(getMemory().buffer, ptr, len));
        total += len;
      }
      console.log(`nabla.wasm fd ${fd}: ${text}`);
      dv.setUint32(writtenPtr, total, true);
      return 0;
    },
    proc_exit(code) { throw new Error(`nabla.wasm called exit(${code})`); },
    // clock 0: realtime, others: monotonic; nanoseconds as a u64.
    clock_time_get(id, precision, timePtr) {
      const ms = id === 0 ? Date.now() : performance.now();
      view().setBigUint64(timePtr, BigInt(Math.round(ms * 1e6)), true);
      return 0;
    },
    random_get(ptr, len) {
      crypto.getRandomValues(new Uint8Array(getMemory().buffer, ptr, len));
      return 0;
    },
  };
}

function wasiImports(module, getMemory) {
  const stubs = wasiStubs(getMemory), imports = {};
  for (const { module: from, name } of WebAssembly.Module.imports(module))
    if (from === 'wasi_snapshot_preview1') imports[name] = stubs[name] || (() => WASI_ENOSYS);
  return imports;
}

export class Nabla {
  static async load(url = new URL('nabla.wasm', import.meta.url)) {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${url}: ${response.status} (build it with bash scripts/web.sh)`);
    return Nabla.instantiate(await response.arrayBuffer());
  }

  static async instantiate(bytes) {
    let memory = null;
    const module = await WebAssembly.compile(bytes);
    const instance = await WebAssembly.instantiate(module, {
      wasi_snapshot_preview1: wasiImports(module, () => memory),
    });
    memory = instance.exports.memory;
    instance.exports._initialize();
    return new Nabla(instance.exports, bytes.byteLength);
  }

  constructor(exports, wasmBytes) {
    this.x = exports;
    this.wasmBytes = wasmBytes;
  }

  // Views are made afresh on each use: memory.grow detaches old ones.
  f32(ptr, n) { return new Float32Array(this.x.memory.buffer, ptr, n); }
  i32(ptr, n) { return new Int32Array(this.x.memory.buffer, ptr, n); }
  cstring(ptr) {
    const bytes = new Uint8Array(this.x.memory.buffer, ptr);
    return new TextDecoder().decode(bytes.subarray(0, bytes.indexOf(0)));
  }
  error() { return this.cstring(this.x.nbw_error()); }
  fail(what) { throw new Error(`${what}: ${this.error()}`); }

  alloc(bytes) {
    const p = this.x.nbw_malloc(bytes);
    if (!p) this.fail('nbw_malloc');
    return p;
  }
  free(p) { this.x.nbw_free(p); }
  // A float32 copy of arr in the module's memory (free it with free()).
  putF32(arr) {
    const p = this.alloc(4 * arr.length);
    this.f32(p, arr.length).set(arr);
    return p;
  }
  putString(s) {
    const bytes = new TextEncoder().encode(s);
    const p = this.alloc(bytes.length + 1);
    const m = new Uint8Array(this.x.memory.buffer, p, bytes.length + 1);
    m.set(bytes);
    m[bytes.length] = 0;
    return p;
  }

  // Gradient descent x := x - lr f'(x), f' by nabla's reverse mode.
  gd(fn, x0, lr, steps) {
    const p = this.alloc(4 * (3 * steps + 2));
    try {
      if (this.x.nbw_gd(fn, x0, lr, steps, p, p + 4 * (steps + 1), p + 8 * (steps + 1)))
        this.fail('gradient descent');
      return {
        xs: Array.from(this.f32(p, steps + 1)),
        fs: Array.from(this.f32(p + 4 * (steps + 1), steps + 1)),
        grads: Array.from(this.f32(p + 8 * (steps + 1), steps)),
      };
    } finally { this.free(p); }
  }

  curve(fn, xs) {
    const px = this.putF32(xs), py = this.alloc(4 * xs.length);
    try {
      if (this.x.nbw_gd_curve(fn, px, xs.length, py)) this.fail('curve');
      return Array.from(this.f32(py, xs.length));
    } finally { this.free(px); this.free(py); }
  }

  // y = f4(f3(f2(f1(x)))): forward values, local partials and their products.
  chain(fs, x0) {
    const pf = this.alloc(16), po = this.alloc(48);
    try {
      this.i32(pf, 4).set(fs);
      if (this.x.nbw_chain(pf, x0, po)) this.fail('chain rule');
      const o = Array.from(this.f32(po, 12));
      return { u: o.slice(0, 4), local: o.slice(4, 8), products: o.slice(8, 12) };
    } finally { this.free(pf); this.free(po); }
  }

  net(spec, inputShape, loss, seed = 1) { return new Net(this, spec, inputShape, loss, seed); }
}

export const LOSS = { cce: 0, mse: 1, bce: 2 };
export const OPTIMIZER = { sgd: 0, adam: 1, adamw: 2, rmsprop: 3 };

// An nb_model in the module: a playground network or a loaded CNN.
export class Net {
  constructor(nb, spec, inputShape, loss, seed) {
    this.nb = nb;
    const ps = nb.putString(spec), pshape = nb.alloc(4 * inputShape.length);
    nb.i32(pshape, inputShape.length).set(inputShape);
    this.h = nb.x.nbw_net_new(ps, inputShape.length, pshape, LOSS[loss], seed);
    nb.free(ps); nb.free(pshape);
    if (!this.h) nb.fail(`model '${spec}'`);
    this.inSize = inputShape.reduce((a, b) => a * b, 1);
    this.layers = [];
    for (let i = 0; i < nb.x.nbw_net_layer_count(this.h); i++) this.layers.push(this.layerShape(i));
    this.outSize = this.layers[this.layers.length - 1].reduce((a, b) => a * b, 1);
    this.buffers = {};
  }
  dispose() {
    for (const b of Object.values(this.buffers)) this.nb.free(b.ptr);
    this.buffers = {};
    this.nb.x.nbw_net_free(this.h);
    this.h = 0;
  }
  layerShape(i) {
    const p = this.nb.alloc(32);
    const rank = this.nb.x.nbw_net_layer_shape(this.h, i, p);
    const s = Array.from(this.nb.i32(p, rank));
    this.nb.free(p);
    return s;
  }
  // A persistent float32 buffer named key holding arr (data sets, grids).
  buffer(key, arr) {
    let b = this.buffers[key];
    if (!b || b.n < arr.length) {
      if (b) this.nb.free(b.ptr);
      b = this.buffers[key] = { ptr: this.nb.alloc(4 * arr.length), n: arr.length };
    }
    this.nb.f32(b.ptr, arr.length).set(arr);
    return b.ptr;
  }
  optimizer(kind, lr) {
    if (this.nb.x.nbw_net_optim(this.h, OPTIMIZER[kind], lr)) this.nb.fail('optimiser');
  }
  params() {
    const out = [];
    for (let i = 0; i < this.nb.x.nbw_net_param_count(this.h); i++) {
      const n = this.nb.x.nbw_net_param_size(this.h, i);
      const g = this.nb.x.nbw_net_param_grad(this.h, i);
      out.push({
        name: this.nb.cstring(this.nb.x.nbw_net_param_name(this.h, i)),
        value: this.nb.f32(this.nb.x.nbw_net_param_data(this.h, i), n),
        grad: g ? this.nb.f32(g, n) : null,
      });
    }
    return out;
  }
  // x, y: Float32Arrays already in buffers 'x' and 'y' (setData).
  setData(x, y) {
    this.dataPtr = this.buffer('x', x);
    this.labelPtr = this.buffer('y', y);
    this.n = y.length;
  }
  train(batch, steps) {
    const loss = this.nb.x.nbw_net_train(this.h, this.dataPtr, this.labelPtr, this.n, batch, steps);
    if (Number.isNaN(loss)) this.nb.fail('training');
    return loss;
  }
  loss(x, y) {
    const l = this.nb.x.nbw_net_loss(this.h, this.buffer('lx', x), this.buffer('ly', y), y.length);
    if (Number.isNaN(l)) this.nb.fail('loss');
    return l;
  }
  predict(x, n) {
    const p = this.nb.x.nbw_net_predict(this.h, this.buffer('px', x), n);
    if (!p) this.nb.fail('predict');
    return this.nb.f32(p, n * this.outSize);
  }
  // After predict: layer i's output for those n rows.
  layerValue(i, n) {
    const size = this.layers[i].reduce((a, b) => a * b, 1);
    return this.nb.f32(this.nb.x.nbw_net_layer_value(this.h, i), n * size);
  }
  inputJacobian(x, n) {
    const p = this.nb.x.nbw_net_input_jacobian(this.h, this.buffer('px', x), n);
    if (!p) this.nb.fail('input Jacobian');
    return this.nb.f32(p, n * this.outSize * this.inSize);
  }
  layerJacobian(i, x) {
    const ps = this.nb.alloc(4 * 16), pr = this.nb.alloc(4);
    try {
      const p = this.nb.x.nbw_net_layer_jacobian(this.h, i, this.buffer('jx', x), ps, pr);
      if (!p) this.nb.fail(`Jacobian of layer ${i}`);
      const shape = Array.from(this.nb.i32(ps, this.nb.i32(pr, 1)[0]));
      return { shape, data: this.nb.f32(p, shape.reduce((a, b) => a * b, 1)) };
    } finally { this.nb.free(ps); this.nb.free(pr); }
  }
  // lambda_max of the Hessian of the mean loss over (x, y) w.r.t. all
  // parameters (nbw_net_lambda_max: nb_hessian_eigs, seed 1).
  lambdaMax(x, y, tol = 1e-7, maxIter = 3000) {
    const pi = this.nb.alloc(8);
    try {
      const v = this.nb.x.nbw_net_lambda_max(this.h, this.buffer('hx', x), this.buffer('hy', y), y.length, tol, maxIter,
        pi, pi + 4);
      if (Number.isNaN(v)) this.nb.fail('lambda_max');
      const [iterations, products] = Array.from(this.nb.i32(pi, 2));
      return { value: v, iterations, products };
    } finally { this.nb.free(pi); }
  }
  saliency(x, cls) {
    const p = this.nb.x.nbw_net_saliency(this.h, this.buffer('sx', x), cls);
    if (!p) this.nb.fail('saliency');
    return this.nb.f32(p, this.inSize);
  }
}
