#!/usr/bin/python3
"""Checks `nabla hessian` and `nabla hvp` against torch.autograd on small models.

For each spec (Dense, Conv2D valid/same/strided, pooling, each activation)
and each loss (cce, mse, bce): trains a tiny model for one epoch on 512
Fashion-MNIST images with `nabla train`, rebuilds it in PyTorch
(scripts/check_vs_torch.py's loader and forward), and compares
  - `nabla hessian --wrt P` with torch.autograd.functional.hessian for every
    parameter P small enough (<= 400 values), and the cross block between the
    first and the last parameter (`--wrt2`);
  - `nabla hvp` along a random v over all parameters with
    torch.autograd.functional.hvp.
Prints the relative error max |nabla - torch| / max |torch| of each and the
worst; exits 1 if it exceeds --tol (1e-3, float32 on both sides). Not a test.

usage: /usr/bin/python3 scripts/check_second_vs_torch.py [--nabla PATH] [--n 4]
"""
import argparse
import os
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from check_vs_torch import ROOT, load_images, parse_spec, read_safetensors, run, torch_forward  # noqa: E402

SPECS = [
    "flatten; dense 8 tanh; dense 10",
    "flatten; dense 6 sigmoid; dense 6 elu; dense 6 softplus; dense 10",
    "flatten; dense 6 gelu; dense 6 leaky_relu; dense 10",
    "conv2d 2 3 relu; maxpool 2; flatten; dense 10",
    "conv2d 2 3 tanh padding=same; avgpool 2; flatten; dense 10",
    "conv2d 2 4 tanh stride=2; conv2d 2 3 relu padding=same stride=2; flatten; dense 10",
]


def write_safetensors(path, tensors):
    import json
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def loss_fn(kind, logits, y):
    if kind == "cce":
        return F.cross_entropy(logits, torch.tensor(y))
    t = F.one_hot(torch.tensor(y), 10).float()
    if kind == "mse":
        return F.mse_loss(logits, t)
    return F.binary_cross_entropy_with_logits(logits, t)


def rel(a, b):
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def check(nabla, spec, kind, n, tmp):
    m = os.path.join(tmp, "m.safetensors")
    run([nabla, "train", "--data", "fashion-mnist", "--model", spec, "--limit", "512", "--epochs", "1",
         "--batch", "64", "--no-test", "--quiet", "--out", m])
    tensors, _ = read_safetensors(m)
    layers = parse_spec(spec)
    params = {k: torch.tensor(v) for k, v in tensors.items() if not k.startswith("optim.")}
    x, y = load_images(n)
    xp, yp = os.path.join(tmp, "x.npy"), os.path.join(tmp, "y.npy")
    np.save(xp, x)
    np.save(yp, y if kind == "cce" else np.eye(10, dtype=np.float32)[y])
    xt = torch.tensor(x)
    names = sorted(params)

    def loss_of(replace):
        p = dict(params)
        p.update(replace)
        return loss_fn(kind, torch_forward(layers, p, xt), y)

    results = []
    common = ["--model", m, "--input", xp, "--labels", yp, "--loss", kind]
    for name in [k for k in names if params[k].numel() <= 400]:
        hp = os.path.join(tmp, "H.npy")
        run([nabla, "hessian", *common, "--wrt", name, "-o", hp])
        ht = torch.autograd.functional.hessian(lambda w: loss_of({name: w}), params[name]).numpy()
        results.append((f"hessian {name} {ht.shape}", rel(np.load(hp), ht)))
    a, b = names[0], names[-1]
    if params[a].numel() * params[b].numel() <= 200000:
        hp = os.path.join(tmp, "Hab.npy")
        run([nabla, "hessian", *common, "--wrt", a, "--wrt2", b, "-o", hp])
        full = torch.autograd.functional.hessian(lambda u, w: loss_of({a: u, b: w}), (params[a], params[b]))
        results.append((f"hessian {a} x {b}", rel(np.load(hp), full[0][1].numpy())))
    g = torch.Generator().manual_seed(1)
    v = {k: torch.randn(params[k].shape, generator=g) for k in names}
    vp, hvp_path = os.path.join(tmp, "v.safetensors"), os.path.join(tmp, "hv.safetensors")
    write_safetensors(vp, {k: t.numpy() for k, t in v.items()})
    run([nabla, "hvp", *common, "--vector", vp, "-o", hvp_path])
    hv, _ = read_safetensors(hvp_path)
    _, ht = torch.autograd.functional.hvp(lambda *ps: loss_of(dict(zip(names, ps))),
                                          tuple(params[k] for k in names), tuple(v[k] for k in names))
    num = max(float(np.abs(hv[k] - t.numpy()).max()) for k, t in zip(names, ht))
    den = max(float(np.abs(t.numpy()).max()) for t in ht)
    results.append(("hvp all parameters", num / max(den, 1e-12)))
    return results


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--nabla", help="the nabla binary (default: build/nabla)")
    ap.add_argument("--n", type=int, default=4, help="examples (default 4)")
    ap.add_argument("--tol", type=float, default=1e-3, help="largest relative error allowed (default 1e-3)")
    a = ap.parse_args()
    nabla = a.nabla or os.path.join(ROOT, "build", "nabla")
    if not os.path.exists(nabla):
        raise SystemExit("check_second_vs_torch: no nabla binary; build it or pass --nabla")
    worst = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for spec in SPECS:
            for kind in ("cce", "mse", "bce"):
                for name, r in check(nabla, spec, kind, a.n, tmp):
                    worst = max(worst, r)
                    print(f"{spec:<80} {kind}  {name:<40} rel {r:.2e}{'  FAIL' if r > a.tol else ''}")
    print(f"worst relative error {worst:.3e} (tolerance {a.tol:g}): {'ok' if worst <= a.tol else 'FAIL'}")
    return 0 if worst <= a.tol else 1


if __name__ == "__main__":
    sys.exit(main())
