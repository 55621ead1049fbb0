#!/usr/bin/python3
"""Checks `nabla jacobian` and `nabla grad` against PyTorch on the same model.

For each spec: trains a tiny model for one epoch on 512 Fashion-MNIST images
with `nabla train`, rebuilds it in PyTorch from the .safetensors file (the
header parsed with json, the data read with numpy), and compares
  - the full Jacobian d logits / d input, shape (N, 10, N, 28, 28, 1), with
    torch.autograd.functional.jacobian;
  - the per-example Jacobian (N, 10, 28, 28, 1) with the diagonal blocks;
  - d logits / d 0.kernel with torch's Jacobian w.r.t. the same kernel;
  - every parameter's gradient of the mean cross-entropy with loss.backward().
Prints the max absolute differences; exits 1 if any exceeds --tol (1e-4).

Layouts: nabla keeps Keras's: dense kernel (in, out), conv kernel
(kh, kw, in, out), NHWC images, and Flatten flattens NHWC. The torch model
holds the Keras-layout tensors as leaves and transposes them on use: Linear
weight = kernel.T (out, in); Conv2d weight = kernel.permute(3, 2, 0, 1)
(out, in, kh, kw); the input is permuted NHWC -> NCHW for the convolutions and
back to NHWC before flattening, so the flattened order is nabla's.

usage: /usr/bin/python3 scripts/check_vs_torch.py [--nabla PATH] [--spec SPEC ...]
                                                  [--model M.safetensors] [--n 3]
"""
import argparse
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist"
DEFAULT_SPECS = [
    "conv2d 4 3 relu; maxpool 2; flatten; dense 10",
    "conv2d 4 3 tanh; maxpool 2; conv2d 6 3 relu padding=same; avgpool 2; flatten; dense 16 relu; dense 10",
]


def read_safetensors(path):
    """Returns ({name: float32 array}, metadata) from a .safetensors file."""
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    base = 8 + hlen
    dtypes = {"F32": np.float32, "F64": np.float64}
    tensors = {}
    meta = header.pop("__metadata__", {})
    for name, info in header.items():
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[base + a:base + b], dtype=np.dtype(dtypes[info["dtype"]]).newbyteorder("<"))
        tensors[name] = arr.reshape(info["shape"]).astype(np.float32)
    return tensors, meta


def parse_spec(spec):
    layers = []
    for line in spec.replace(";", "\n").split("\n"):
        line = line.split("#")[0].strip()
        if not line:
            continue
        words = line.split()
        opts = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        pos = [w for w in words[1:] if "=" not in w]
        layers.append((words[0], pos, opts))
    return layers


ACTS = {
    "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
    "softmax": lambda z: F.softmax(z, dim=-1), "log_softmax": lambda z: F.log_softmax(z, dim=-1),
    "leaky_relu": lambda z: F.leaky_relu(z, 0.01), "elu": F.elu, "softplus": F.softplus,
    "gelu": F.gelu,
}


def same_pad(x, size, stride, dilation):
    """TensorFlow's 'same' padding of NCHW x: out = ceil(in / stride), the odd pixel at the end."""
    pads = []
    for n in (x.shape[3], x.shape[2]):  # F.pad takes the last dim first
        out = math.ceil(n / stride)
        total = max((out - 1) * stride + (size - 1) * dilation + 1 - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def torch_forward(layers, params, x):
    """The logits (output before a final softmax/sigmoid) of the model on NHWC x."""
    h = x
    nchw = False  # whether h is currently NCHW (an image) rather than NHWC
    n = len(layers)
    for i, (kind, pos, opts) in enumerate(layers):
        act = None
        if kind == "dense":
            if nchw:
                h, nchw = h.permute(0, 2, 3, 1), False
            k, b = params[f"{i}.kernel"], params[f"{i}.bias"]
            h = F.linear(h, k.t(), b)  # Linear weight (out, in) = Keras kernel (in, out) transposed
            act = pos[1] if len(pos) > 1 else None
        elif kind == "conv2d":
            if not nchw:
                h, nchw = h.permute(0, 3, 1, 2), True
            k, b = params[f"{i}.kernel"], params[f"{i}.bias"]
            size = int(pos[1])
            stride, dil = int(opts.get("stride", 1)), int(opts.get("dilation", 1))
            if opts.get("padding", "valid") == "same":
                h = same_pad(h, size, stride, dil)
            h = F.conv2d(h, k.permute(3, 2, 0, 1), b, stride=stride, dilation=dil)
            act = pos[2] if len(pos) > 2 else None
        elif kind in ("maxpool", "avgpool"):
            if not nchw:
                h, nchw = h.permute(0, 3, 1, 2), True
            size = int(pos[0])
            stride = int(opts.get("stride", size))
            if opts.get("padding", "valid") != "valid":
                raise SystemExit(f"check_vs_torch: pooling padding '{opts['padding']}' not supported here")
            h = (F.max_pool2d if kind == "maxpool" else F.avg_pool2d)(h, size, stride)
        elif kind == "flatten":
            if nchw:
                h, nchw = h.permute(0, 2, 3, 1), False  # nabla flattens NHWC
            h = h.reshape(h.shape[0], -1)
        elif kind == "dropout":
            pass  # inference: identity
        elif kind in ACTS:
            act = kind
        else:
            raise SystemExit(f"check_vs_torch: unknown layer '{kind}'")
        if act is not None:
            if i == n - 1 and act in ("softmax", "sigmoid"):
                break  # the logits are the value before the final softmax/sigmoid
            if nchw:
                h = ACTS[act](h)  # elementwise: layout does not matter
            else:
                h = ACTS[act](h)
    if nchw:
        h = h.permute(0, 2, 3, 1)
    return h


def load_images(n):
    with gzip.open(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    with gzip.open(os.path.join(FASHION, "t10k-labels-idx1-ubyte.gz")) as f:
        lab = f.read()
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[:n].astype(np.float32) / 255
    y = np.frombuffer(lab, np.uint8, offset=8)[:n].astype(np.int64)
    return x[..., None].copy(), y


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        sys.stderr.write(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        raise SystemExit(1)
    return r.stdout + r.stderr


def check(nabla, model, n, tmp, tol):
    tensors, meta = read_safetensors(model)
    spec = meta["nabla.spec"]
    layers = parse_spec(spec)
    params = {k: torch.tensor(v) for k, v in tensors.items() if not k.startswith("optim.")}
    x, y = load_images(n)
    xp, yp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(xp, x)
    np.save(yp, y)
    xt = torch.tensor(x)
    results = []

    # d logits / d input: full (nabla's default mode and both explicit modes) and per example.
    jt = torch.autograd.functional.jacobian(lambda inp: torch_forward(layers, params, inp), xt).numpy()
    for mode in ("auto", "rev", "fwd"):
        jp = os.path.join(tmp, f"J_{mode}.npy")
        line = run([nabla, "jacobian", "--model", model, "--input", xp, "--mode", mode, "-o", jp]).strip()
        jn = np.load(jp)
        assert jn.shape == jt.shape, (jn.shape, jt.shape)
        results.append((f"jacobian d logits/d input {mode} {jn.shape}", np.abs(jn - jt).max(), np.abs(jt).max()))
        print("   ", line)
    pp = os.path.join(tmp, "Jp.npy")
    run([nabla, "jacobian", "--model", model, "--input", xp, "--per-example", "-o", pp])
    jpe = np.load(pp)
    diag = np.stack([jt[i, :, i] for i in range(n)])
    results.append((f"jacobian per-example {jpe.shape}", np.abs(jpe - diag).max(), np.abs(diag).max()))

    # d logits / d 0.kernel (Keras layout on both sides).
    first = next(k for k in params if k.endswith(".kernel"))
    kp = os.path.join(tmp, "Jk.npy")
    run([nabla, "jacobian", "--model", model, "--input", xp, "--wrt", first, "-o", kp])

    def f_kernel(k):
        p = dict(params)
        p[first] = k
        return torch_forward(layers, p, xt)

    jk = torch.autograd.functional.jacobian(f_kernel, params[first]).numpy()
    jkn = np.load(kp)
    assert jkn.shape == jk.shape, (jkn.shape, jk.shape)
    results.append((f"jacobian d logits/d {first} {jkn.shape}", np.abs(jkn - jk).max(), np.abs(jk).max()))

    # Gradients of the mean cross-entropy.
    gp = os.path.join(tmp, "g.safetensors")
    run([nabla, "grad", "--model", model, "--input", xp, "--labels", yp, "--loss", "cce", "-o", gp])
    grads, _ = read_safetensors(gp)
    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    loss = F.cross_entropy(torch_forward(layers, leaves, xt), torch.tensor(y))
    loss.backward()
    assert set(grads) == set(leaves), (sorted(grads), sorted(leaves))
    for k in sorted(leaves):
        g = leaves[k].grad.numpy()
        assert grads[k].shape == g.shape, (k, grads[k].shape, g.shape)
        results.append((f"grad {k} {g.shape}", np.abs(grads[k] - g).max(), np.abs(g).max()))
    return spec, results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nabla", help="the nabla binary (default: build-cli/nabla or build/nabla)")
    ap.add_argument("--spec", action="append", help="a model spec to train and check (repeatable)")
    ap.add_argument("--model", help="check this .safetensors model instead of training one")
    ap.add_argument("--n", type=int, default=3, help="examples (default 3)")
    ap.add_argument("--tol", type=float, default=1e-4, help="max abs difference allowed (default 1e-4)")
    a = ap.parse_args()
    nabla = a.nabla or next((p for p in (os.path.join(ROOT, "build-cli", "nabla"), os.path.join(ROOT, "build", "nabla"))
                             if os.path.exists(p)), None)
    if not nabla:
        raise SystemExit("check_vs_torch: no nabla binary; build it or pass --nabla")
    torch.manual_seed(0)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        models = [a.model] if a.model else []
        for i, spec in enumerate([] if a.model else (a.spec or DEFAULT_SPECS)):
            m = os.path.join(tmp, f"model{i}.safetensors")
            run([nabla, "train", "--data", "fashion-mnist", "--model", spec, "--limit", "512", "--epochs", "1",
                 "--batch", "64", "--no-test", "--quiet", "--out", m])
            models.append(m)
        for m in models:
            spec, results = check(nabla, m, a.n, tmp, a.tol)
            print(f"model: {spec}  (N = {a.n}, float32)")
            print(f"  {'quantity':<58} {'max |nabla - torch|':>20} {'max |torch|':>12}")
            for name, d, scale in results:
                flag = "" if d <= a.tol else "  FAIL"
                print(f"  {name:<58} {d:>20.3e} {scale:>12.3e}{flag}")
                worst = max(worst, d)
    print(f"worst difference {worst:.3e} (tolerance {a.tol:g}): {'ok' if worst <= a.tol else 'FAIL'}")
    return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
