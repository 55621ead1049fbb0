#!/usr/bin/python3
"""Checks nabla's graph models (residual add, concat, batchnorm, layernorm,
globalavgpool) against PyTorch 1.13 on random small models. A script, not a
test: it needs /usr/bin/python3 with torch and numpy and Fashion-MNIST.

For each random spec (templates with random widths, momentum and eps):
  1. `nabla train` writes the model (1 epoch on --train images, so the
     weights and the moving statistics are not their start values);
  2. the model is rebuilt in PyTorch from the .safetensors file (Keras
     layouts: dense kernel (in, out), conv kernel (kh, kw, in, out), NHWC;
     BatchNorm's gamma/beta/moving_mean/moving_variance are PyTorch's
     weight/bias/running_mean/running_var) and compared on:
     - `nabla jacobian` d logits / d input, inference mode (moving
       statistics), with torch.autograd.functional.jacobian in eval mode;
     - `nabla grad` of the mean cross-entropy, training mode (the batch's
       statistics), with loss.backward() in train mode;
     - one SGD step of `nabla train` on a data set of exactly one batch
       (a directory of IDX files): the moving statistics after it and the
       new weights, with F.batch_norm(training=True) and torch's SGD rule.
A bias right before a training-mode batchnorm has gradient 0 in exact
arithmetic; its error is measured against the model's largest gradient.
Prints each comparison's relative error max|nabla - torch| / max|torch| and
the worst of them; exits 1 if the worst exceeds --tol (2e-4, the issue's goal
in float).

usage: /usr/bin/python3 scripts/check_graph_vs_torch.py [--nabla PATH] [--models 4] [--seed 1]
"""
import argparse
import gzip
import json
import os
import random
import struct
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FASHION = "/usr/share/datasets/fashion-mnist"


def random_spec(rng):
    """One of the graph templates with random sizes and options."""
    c, d = rng.choice([3, 4, 6]), rng.choice([2, 4, 5])
    mom = rng.choice(["", " momentum=0.3", " momentum=0.05"])
    eps = rng.choice(["", " eps=0.001"])
    templates = [
        # a residual block with BN, then global pooling and layernorm
        f"conv2d {c} 3 padding=same; batchnorm{mom}; relu as a; conv2d {c} 3 padding=same; batchnorm{eps} as b; "
        f"add a; relu; globalavgpool; layernorm{eps}; dense 10",
        # a projection shortcut and a concat of three branches
        f"conv2d {c} 3 stride=2 padding=same; batchnorm{mom}; tanh as a; conv2d {d} 1 as b; from a; "
        f"conv2d {d} 3 padding=same; batchnorm as m; from a; concat b m; globalavgpool; dense 10",
        # dense layers: BN on (N, C), layernorm, a residual add
        f"maxpool 2; flatten; dense {8 * d}; batchnorm{mom}{eps}; relu as h; dense {8 * d} tanh; layernorm; "
        f"add h; dense 10",
        # one input feeding three consumers
        f"conv2d {c} 3 relu as x; batchnorm{mom} as p; from x; batchnorm as q; from x; add p q; "
        f"layernorm{eps}; globalavgpool; dense 10",
    ]
    return rng.choice(templates)


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    (hlen,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + hlen].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    kinds = {"F32": "<f4", "F64": "<f8"}
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        arr = np.frombuffer(raw[8 + hlen + a:8 + hlen + b], dtype=kinds[info["dtype"]])
        out[name] = arr.reshape(info["shape"]).astype(np.float64)
    return out, meta


def entries(spec):
    """(kind, positional words, key=value options, name) per entry."""
    out = []
    for line in spec.replace(";", "\n").split("\n"):
        words = line.split("#")[0].split()
        if not words:
            continue
        name = None
        if len(words) >= 3 and words[-2] == "as":
            name, words = words[-1], words[:-2]
        opts = dict(w.split("=", 1) for w in words[1:] if "=" in w)
        pos = [w for w in words[1:] if "=" not in w]
        out.append((words[0], pos, opts, name))
    return out


ACTS = {"relu": F.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}


def nchw(h):
    return h.permute(0, 3, 1, 2)


def nhwc(h):
    return h.permute(0, 2, 3, 1)


def same_pad(x, size, stride):
    pads = []
    for n in (x.shape[3], x.shape[2]):
        out = -(-n // stride)
        total = max((out - 1) * stride + size - n, 0)
        pads += [total // 2, total - total // 2]
    return F.pad(x, pads)


def batchnorm(h, p, i, opts, training):
    """F.batch_norm on NHWC or (N, C); updates p's running stats in training."""
    mom, eps = float(opts.get("momentum", 0.1)), float(opts.get("eps", 1e-5))
    rm, rv = p[f"{i}.moving_mean"], p[f"{i}.moving_variance"]
    x = nchw(h) if h.dim() == 4 else h
    y = F.batch_norm(x, rm, rv, p[f"{i}.gamma"], p[f"{i}.beta"], training, mom, eps)
    return nhwc(y) if h.dim() == 4 else y


def forward(spec, p, x, training):
    """The logits of the model on NHWC x; h stays NHWC between entries."""
    h, named = x, {"input": x}
    for i, (kind, pos, opts, name) in enumerate(entries(spec)):
        act = None
        if kind == "conv2d":
            size, stride = int(pos[1]), int(opts.get("stride", 1))
            z = nchw(h)
            if opts.get("padding") == "same":
                z = same_pad(z, size, stride)
            h = nhwc(F.conv2d(z, p[f"{i}.kernel"].permute(3, 2, 0, 1), p[f"{i}.bias"], stride=stride))
            act = pos[2] if len(pos) > 2 else None
        elif kind == "dense":
            h = F.linear(h, p[f"{i}.kernel"].t(), p[f"{i}.bias"])
            act = pos[1] if len(pos) > 1 else None
        elif kind == "maxpool":
            h = nhwc(F.max_pool2d(nchw(h), int(pos[0])))
        elif kind == "flatten":
            h = h.reshape(h.shape[0], -1)
        elif kind == "batchnorm":
            h = batchnorm(h, p, i, opts, training)
        elif kind == "layernorm":
            h = F.layer_norm(h, (h.shape[-1],), p[f"{i}.gamma"], p[f"{i}.beta"], float(opts.get("eps", 1e-5)))
        elif kind == "globalavgpool":
            h = h.mean(dim=(1, 2))
        elif kind == "from":
            h = named[pos[0]]
        elif kind == "add":
            for r in pos:
                h = h + named[r]
        elif kind == "concat":
            h = torch.cat([h] + [named[r] for r in pos], dim=-1)
        elif kind in ACTS:
            act = kind
        else:
            raise SystemExit(f"check_graph_vs_torch: layer '{kind}' not handled here")
        if act:
            h = ACTS[act](h)
        if name:
            named[name] = h
    return h


def run(cmd):
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode:
        sys.stderr.write(f"failed ({r.returncode}): {' '.join(cmd)}\n{r.stdout}{r.stderr}")
        raise SystemExit(1)
    return r.stdout


def images(split, n, offset=0):
    with gzip.open(os.path.join(FASHION, f"{split}-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    with gzip.open(os.path.join(FASHION, f"{split}-labels-idx1-ubyte.gz")) as f:
        lab = f.read()
    x = np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28)[offset:offset + n]
    y = np.frombuffer(lab, np.uint8, offset=8)[offset:offset + n]
    return x.copy(), y.copy()


def write_idx_dir(d, x, y):
    """A data set directory of one split, 'train', in IDX (uint8)."""
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "train-images-idx3-ubyte"), "wb") as f:
        f.write(struct.pack(">IIII", 0x803, len(x), 28, 28) + x.tobytes())
    with open(os.path.join(d, "train-labels-idx1-ubyte"), "wb") as f:
        f.write(struct.pack(">II", 0x801, len(y)) + y.tobytes())


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def grad_error(ours, ref):
    """The worst relative error over the parameters. A bias right before a
    training-mode batchnorm has gradient 0 in exact arithmetic (the batch
    mean removes it): torch's is ~1e-17, nabla's float rounding ~1e-9, and
    a relative error of those means nothing, so such a parameter (max |ref|
    under 1e-6 of the model's largest) is compared in absolute terms
    against that largest gradient instead."""
    scale = max(np.abs(v).max() for v in ref.values())
    worst = 0.0
    for n in ref:
        den = np.abs(ref[n]).max()
        if den < 1e-6 * scale:
            den = scale
        worst = max(worst, float(np.abs(ours[n] - ref[n]).max() / den))
    return worst


def check_model(nabla, spec, tmp, k, a):
    model = os.path.join(tmp, f"m{k}.safetensors")
    run([nabla, "train", "--data", "fashion-mnist", "--model", spec, "--limit", str(a.train), "--epochs", "1",
         "--batch", "32", "--val-split", "0", "--no-test", "--quiet", "--seed", str(a.seed + k), "--out", model])
    t, meta = read_safetensors(model)
    assert meta["nabla.spec"] == spec, (meta["nabla.spec"], spec)
    params = {n: torch.tensor(v) for n, v in t.items() if not n.startswith("optim.")}
    res = []
    # 1. Jacobian, inference mode.
    xi, yi = images("t10k", a.n)
    x = xi[..., None].astype(np.float64) / 255
    xp, yp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(xp, x.astype(np.float32))
    np.save(yp, yi.astype(np.int64))
    jp = os.path.join(tmp, "J.npy")
    run([nabla, "jacobian", "--model", model, "--input", xp, "-o", jp])
    xt = torch.tensor(x)
    jt = torch.autograd.functional.jacobian(lambda v: forward(spec, {n: q.clone() for n, q in params.items()}, v,
                                                              False), xt).numpy()
    res.append(("jacobian (inference)", rel(np.load(jp), jt)))
    # 2. grad, training mode (batch statistics).
    xg, yg = images("t10k", a.batch, 100)
    xg = xg[..., None].astype(np.float64) / 255
    np.save(xp, xg.astype(np.float32))
    np.save(yp, yg.astype(np.int64))
    gp = os.path.join(tmp, "g.safetensors")
    run([nabla, "grad", "--model", model, "--input", xp, "--labels", yp, "--loss", "cce", "-o", gp])
    grads, _ = read_safetensors(gp)
    leaves = {n: q.clone().requires_grad_(not n.split(".")[1].startswith("moving_")) for n, q in params.items()}
    F.cross_entropy(forward(spec, leaves, torch.tensor(xg), True), torch.tensor(yg.astype(np.int64))).backward()
    trained = sorted(n for n, q in leaves.items() if q.requires_grad)
    assert sorted(grads) == trained, (sorted(grads), trained)
    res.append(("grad (training)", grad_error({n: grads[n] for n in trained},
                                               {n: leaves[n].grad.numpy() for n in trained})))
    # 3. One SGD step on one batch: moving statistics and weights after it.
    d = os.path.join(tmp, f"data{k}")
    xs, ys = images("train", a.batch, 1000)
    write_idx_dir(d, xs, ys)
    step = os.path.join(tmp, f"s{k}.safetensors")
    run([nabla, "train", "--data", d, "--model", model, "--epochs", "1", "--batch", str(a.batch), "--val-split", "0",
         "--no-test", "--quiet", "--optimizer", "sgd", "--lr", "0.05", "--out", step])
    after, _ = read_safetensors(step)
    p = {n: q.clone().requires_grad_(not n.split(".")[1].startswith("moving_")) for n, q in params.items()}
    xs = torch.tensor(xs[..., None].astype(np.float64) / 255)
    F.cross_entropy(forward(spec, p, xs, True), torch.tensor(ys.astype(np.int64))).backward()
    moving = [n for n in p if ".moving_" in n]
    if moving:
        res.append(("moving statistics after a step", max(rel(after[n], p[n].detach().numpy()) for n in moving)))
    with torch.no_grad():
        # the new weights themselves: their change (lr * grad, ~1e-4) read
        # back from float32 files would be mostly the files' rounding
        res.append(("weights after an SGD step",
                    max(rel(after[n], t[n] - 0.05 * p[n].grad.numpy()) for n in trained)))
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nabla", help="the nabla binary (default: build/nabla)")
    ap.add_argument("--models", type=int, default=4, help="random models (default 4)")
    ap.add_argument("--seed", type=int, default=1, help="seed of the specs and of nabla train (default 1)")
    ap.add_argument("--n", type=int, default=2, help="examples of the Jacobian (default 2)")
    ap.add_argument("--batch", type=int, default=16, help="examples of grad and of the SGD step (default 16)")
    ap.add_argument("--train", type=int, default=256, help="images of the first training epoch (default 256)")
    ap.add_argument("--tol", type=float, default=2e-4, help="worst relative error allowed (default 2e-4)")
    a = ap.parse_args()
    nabla = a.nabla or os.path.join(ROOT, "build", "nabla")
    torch.set_default_dtype(torch.float64)  # the reference in double: the error is nabla's float
    rng = random.Random(a.seed)
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for k in range(a.models):
            spec = random_spec(rng)
            print(f"model {k}: {spec}")
            for what, e in check_model(nabla, spec, tmp, k, a):
                print(f"    {what:34s} relative error {e:.3g}")
                worst = max(worst, e)
    print(f"worst relative error: {worst:.3g} (goal < {a.tol:g})")
    return 0 if worst < a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
