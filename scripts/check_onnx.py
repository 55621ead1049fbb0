#!/usr/bin/python3
"""Checks nabla's ONNX files against the tools of the field (issue 15).

 1. nabla export writes files that Debian's python3-onnx checker accepts
    (onnx.checker.check_model with full_check, which runs shape inference).
 2. ONNX Runtime (onnxruntime-node from npm, tests/onnx/) runs them and gives
    the outputs of `nabla predict --raw` within --tol-out (1e-5) on real
    Fashion-MNIST test images, for an NHWC and an NCHW (--nchw) export.
 3. Graph models (as/from/add/concat/globalavgpool, padding=P, batchnorm,
    layernorm): a residual, a concat and a BatchNorm/LayerNorm model trained
    briefly (so the moving statistics are not 0 and 1) pass the checker, ONNX
    Runtime gives nabla's outputs within --tol-out, and they import back to
    the same spec and outputs.
 4. Models built here with Debian's python3-torch (the lecture CNN, an MLP
    with tanh and GELU, and a small ResNet-like module with identity and
    strided projection shortcuts, Conv2d(padding=1, stride=2) on even sizes,
    a torch.cat on the channels and AdaptiveAvgPool2d(1); random weights from
    a fixed seed, no downloads) and written by torch.onnx.export (opset 13)
    import into nabla (`nabla import`, and --model M.onnx directly) and give
    torch's logits within --tol-out (ONNX Runtime's too, on the same file)
    and torch.autograd's per-example input Jacobian within --tol-jac (2e-4);
    the ResNet-like one imports as a spec with `as`, `from`, `add`, `concat`.
 5. A ResNet with Conv2d + BatchNorm2d + ReLU residual blocks (eval mode,
    random moving statistics and affine parameters), exported with
    TrainingMode.PRESERVE so that torch keeps the BatchNormalization nodes
    (its default, EVAL, folds them into the Conv weights; that file is
    checked too): imported as conv2d + batchnorm layers, torch's logits and
    input Jacobian as in 4, then `nabla hessian` and `nabla curvature` run
    on it and give finite numbers of the right shape (and `nabla saliency` a
    PNG).

Each part is skipped, with a message, when its tool is missing (exit 0);
any disagreement exits 1. Prints the largest differences.

usage: /usr/bin/python3 scripts/check_onnx.py [--nabla build/nabla] [--n 64]
"""
import argparse
import gzip
import json
import re
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"
CNN_SPEC = "conv2d 8 3 relu; conv2d 16 3 padding=same stride=2; relu; maxpool 2; flatten; dense 32 gelu; dropout 0.2; dense 10 softmax"
GRAPH_SPECS = {
    "residual": "conv2d 8 3 padding=same; relu as a; conv2d 16 3 stride=2 padding=1; relu; conv2d 16 3 padding=same as main; "
                "from a; conv2d 16 1 stride=2 as short; add main; relu; globalavgpool; dense 10",
    "concat": "conv2d 8 3 relu padding=same as a; conv2d 4 1 relu as b; from a; conv2d 8 3 padding=same; concat b a; "
              "maxpool 2; flatten; dense 10",
    # BatchNormalization after Conv (NCHW) and on (N, C), LayerNormalization (opset 17) on NHWC images and on (N, C)
    "norms": "conv2d 8 3 padding=same; batchnorm momentum=0.2; relu as a; conv2d 8 3 padding=same; batchnorm eps=0.001; "
             "add a; relu; maxpool 2; conv2d 8 3; layernorm; relu; globalavgpool; dense 16; batchnorm; layernorm eps=1e-4; "
             "dense 10",
}
failures = []


def run(*cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"check_onnx: {' '.join(cmd)} failed ({r.returncode}):\n{r.stdout}{r.stderr}")
    return r.stdout


def check(what, diff, tol):
    ok = diff <= tol
    print(f"  {what}: max |difference| {diff:.3g} (tolerance {tol:g}) {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(what)


def test_images(n):
    """The first n Fashion-MNIST test images as float32 (n, 28, 28, 1) in [0, 1]."""
    with gzip.open(DATA, "rb") as f:
        raw = f.read()
    x = np.frombuffer(raw, dtype=np.uint8, offset=16)[: n * 784]
    return (x.astype(np.float32) / 255.0).reshape(n, 28, 28, 1)


def predict(nabla, model, x_npy, out):
    run(nabla, "predict", "--model", model, "--input", x_npy, "-o", out, "--raw")
    return np.load(out)


def ort_ok():
    return shutil.which("node") and os.path.isdir(os.path.join(ROOT, "tests/onnx/node_modules/onnxruntime-node"))


def ort_run(tmp, path, xin):
    """The first output of ONNX Runtime on model path with input xin."""
    fin, fout = os.path.join(tmp, "x.f32"), os.path.join(tmp, "y.f32")
    xin.astype("<f4").tofile(fin)
    dims = run("node", os.path.join(ROOT, "tests/onnx/run_ort.js"), path, fin, ",".join(map(str, xin.shape)),
               fout).strip()
    return np.fromfile(fout, dtype="<f4").reshape([int(d) for d in dims.split(",")])


def spec_of(safetensors):
    """The nabla.spec metadata of a model file (read back from its header)."""
    with open(safetensors, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        return json.loads(f.read(n))["__metadata__"]["nabla.spec"]


def check_export(nabla, tmp, x, x_npy):
    print("== exported files: onnx checker and ONNX Runtime against nabla predict")
    model = os.path.join(tmp, "cnn.safetensors")
    run(nabla, "train", "--data", "fashion-mnist", "--model", CNN_SPEC, "--limit", "2048", "--epochs", "1",
        "--seed", "1", "--out", model, "--quiet")
    check_exported(nabla, tmp, x, x_npy, model, "cnn")
    for name, spec in GRAPH_SPECS.items():
        model = os.path.join(tmp, f"{name}.safetensors")
        run(nabla, "train", "--data", "fashion-mnist", "--model", spec, "--limit", "512", "--epochs", "1",
            "--seed", "2", "--out", model, "--quiet")
        check_exported(nabla, tmp, x, x_npy, model, name)


def check_exported(nabla, tmp, x, x_npy, model, tag):
    want = predict(nabla, model, x_npy, os.path.join(tmp, "nabla.npy"))
    try:
        import onnx
    except ImportError:
        onnx = None
        print("  skipped the checker: python3-onnx is not installed (apt-get install python3-onnx)")
    node_ok = ort_ok()
    if not node_ok:
        print("  skipped ONNX Runtime: no node or no tests/onnx/node_modules (cd tests/onnx && npm ci --ignore-scripts)")
    for layout in ("nhwc", "nchw"):
        path = os.path.join(tmp, f"{tag}_{layout}.onnx")
        run(nabla, "export", "--model", model, "-o", path, *(["--nchw"] if layout == "nchw" else []))
        if onnx:
            onnx.checker.check_model(onnx.load(path), full_check=True)
            print(f"  onnx.checker ({onnx.__version__}) accepts {os.path.basename(path)}")
        if node_ok:
            xin = x if layout == "nhwc" else np.ascontiguousarray(x.transpose(0, 3, 1, 2))
            got = ort_run(tmp, path, xin)
            check(f"ONNX Runtime vs nabla predict, {tag} {layout} export, {len(x)} images, outputs {got.shape}",
                  float(np.abs(got - want).max()), args.tol_out)
        back = os.path.join(tmp, f"{tag}_{layout}_back.safetensors")
        run(nabla, "import", path, "-o", back)
        if spec_of(back) != spec_of(model):
            failures.append(f"{tag} {layout}: imported spec '{spec_of(back)}' differs from '{spec_of(model)}'")
        again = predict(nabla, back, x_npy, os.path.join(tmp, "back.npy"))
        check(f"{tag} {layout}: nabla -> ONNX -> nabla, same spec, outputs", float(np.abs(again - want).max()), 0)


def torch_models(torch):
    nn = torch.nn
    torch.manual_seed(0)
    cnn = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                        nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.Tanh(), nn.Linear(256, 128), nn.GELU(),
                        nn.Linear(128, 10))
    return {"lecture CNN": (cnn, (1, 1, 28, 28)), "MLP": (mlp, (1, 1, 28, 28)),
            "ResNet-like": (resnet_like(torch), (1, 1, 28, 28)),
            "BatchNorm ResNet": (resnet_bn(torch), (1, 1, 28, 28)),
            "BatchNorm ResNet folded": (resnet_bn(torch), (1, 1, 28, 28))}


def resnet_bn(torch):
    """A small ResNet with BatchNorm: a Conv2d + BatchNorm2d + ReLU stem, an
    identity block and a strided block with a Conv2d + BatchNorm2d projection
    shortcut (convolutions without bias, as in torchvision), global average
    pooling, a linear layer. In eval mode, with random moving statistics and
    affine parameters so that every one of them changes the logits."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout)
            self.c2, self.b2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout)
            self.short = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
                          if stride != 1 or cin != cout else None)

        def forward(self, x):
            y = self.b2(self.c2(torch.relu(self.b1(self.c1(x)))))
            return torch.relu(y + (self.short(x) if self.short is not None else x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
            self.b1, self.b2 = Block(8, 8, 1), Block(8, 16, 2)
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(16, 10)

        def forward(self, x):
            return self.fc(torch.flatten(self.pool(self.b2(self.b1(self.stem(x)))), 1))

    torch.manual_seed(2)
    net = Net()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net


def check_second_order(nabla, tmp, model, x, tag):
    """nabla hessian (w.r.t. the first batchnorm's gamma, batch statistics),
    nabla saliency and nabla curvature on an imported model: finite numbers of
    the right shape, a PNG."""
    with open(model, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    gammas = sorted((k for k in header if k.endswith(".gamma")), key=lambda k: int(k.split(".")[0]))
    if not gammas:
        failures.append(f"{tag}: no batchnorm gamma in the imported model")
        return
    wrt, c = gammas[0], header[gammas[0]]["shape"][0]
    xs, ys, h = os.path.join(tmp, "xh.npy"), os.path.join(tmp, "yh.npy"), os.path.join(tmp, "H.npy")
    np.save(xs, x[:16])
    np.save(ys, (np.arange(16) % 10).astype(np.int64))
    out = run(nabla, "hessian", "--model", model, "--input", xs, "--labels", ys, "--loss", "cce", "--wrt", wrt, "-o", h)
    hess = np.load(h)
    ok = hess.shape == (c, c) and np.isfinite(hess).all() and np.abs(hess).max() > 0
    print(f"  {tag}: nabla hessian --wrt {wrt}: shape {hess.shape}, max |H| {np.abs(hess).max():.3g}, "
          f"asymmetry {np.abs(hess - hess.T).max():.3g} {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(f"{tag}: nabla hessian gave shape {hess.shape} or non-finite/zero values:\n{out}")
    png = os.path.join(tmp, "saliency.png")
    out = run(nabla, "saliency", "--model", model, "--data", "fashion-mnist", "--count", "4", "-o", png)
    with open(png, "rb") as f:
        ok = f.read(8) == b"\x89PNG\r\n\x1a\n" and os.path.getsize(png) > 100
    print(f"  {tag}: nabla saliency --count 4: {os.path.getsize(png)} bytes of PNG {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(f"{tag}: nabla saliency wrote no PNG:\n{out}")
    out = run(nabla, "curvature", "--model", model, "--data", "fashion-mnist", "--count", "64", "--batch", "32",
              "--top", "2", "--iters", "30")
    lam = [float(v) for v in re.findall(r"lambda_\d+\s*[=:]?\s*(\S+)", out)]
    ok = len(lam) >= 2 and all(np.isfinite(lam)) and max(abs(v) for v in lam) > 0
    print(f"  {tag}: nabla curvature --top 2: {lam} {'ok' if ok else 'FAIL'}")
    if not ok:
        failures.append(f"{tag}: nabla curvature printed no 2 finite eigenvalues:\n{out}")


def resnet_like(torch):
    """A small ResNet without BatchNorm (nabla's batchnorm is not imported yet):
    a stem, an identity block, a strided block with a 1x1 projection shortcut
    (Conv2d(padding=1, stride=2) on 28x28: pads [1, 1, 1, 1], not
    TensorFlow's same), a side branch concatenated on the channels, global
    average pooling and a linear layer."""
    nn = torch.nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1)
            self.c2 = nn.Conv2d(cout, cout, 3, padding=1)
            self.short = nn.Conv2d(cin, cout, 1, stride=stride) if stride != 1 or cin != cout else None

        def forward(self, x):
            y = self.c2(torch.relu(self.c1(x)))
            return torch.relu(y + (self.short(x) if self.short is not None else x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(1, 8, 3, padding=1)
            self.b1, self.b2 = Block(8, 8, 1), Block(8, 16, 2)
            self.side = nn.Conv2d(16, 4, 1)
            self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(20, 10)

        def forward(self, x):
            x = self.b2(self.b1(torch.relu(self.stem(x))))
            x = torch.cat([x, torch.tanh(self.side(x))], 1)
            return self.fc(torch.flatten(self.pool(x), 1))

    torch.manual_seed(1)
    return Net()


def check_torch(nabla, tmp, x, x_npy):
    print("== models from torch.onnx.export: logits and input Jacobians against torch")
    try:
        import torch
    except ImportError:
        print("  skipped: python3-torch is not installed (apt-get install python3-torch)")
        return
    torch.set_num_threads(2)
    xt = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))  # NCHW for torch
    nj = min(len(x), 8)
    for name, (net, shape) in torch_models(torch).items():
        net.eval()
        tag = {"BatchNorm ResNet": "resnet_bn", "BatchNorm ResNet folded": "resnet_bn_folded"}.get(
            name, name.split()[-1].lower())
        # TrainingMode.PRESERVE keeps BatchNormalization nodes (in inference form: the module is in eval mode);
        # the default (EVAL) folds them into the Conv weights, what the "folded" file checks.
        keep = torch.onnx.TrainingMode.PRESERVE if name == "BatchNorm ResNet" else torch.onnx.TrainingMode.EVAL
        path, imported = os.path.join(tmp, f"{tag}.onnx"), os.path.join(tmp, f"{tag}.safetensors")
        torch.onnx.export(net, torch.zeros(shape), path, opset_version=13, input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "N"}, "logits": {0: "N"}}, training=keep,
                          do_constant_folding=keep == torch.onnx.TrainingMode.EVAL)
        out = run(nabla, "import", path, "-o", imported).strip()
        print(f"  {name}: {out}")
        spec = spec_of(imported)
        print(f"    spec: {spec}")
        words = re.split(r"[;\s]+", spec)
        if name == "ResNet-like" and not all(w in words for w in ("as", "from", "add", "concat", "globalavgpool")):
            failures.append(f"{name}: the imported spec lacks as/from/add/concat/globalavgpool: {spec}")
        if name == "BatchNorm ResNet" and (words.count("batchnorm") != 6 or "add" not in words):
            failures.append(f"{name}: the imported spec has not its 6 batchnorm layers and the adds: {spec}")
        if name == "BatchNorm ResNet folded" and "batchnorm" in words:
            failures.append(f"{name}: torch folded BatchNorm into the Conv weights, yet the spec has one: {spec}")
        with torch.no_grad():
            want = net(xt).numpy()
        if ort_ok():
            got = ort_run(tmp, path, np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
            check(f"{name} logits, ONNX Runtime on the torch file vs torch, {len(x)} images",
                  float(np.abs(got - want).max()), args.tol_out)
        for model in (imported, path):
            got = predict(nabla, model, x_npy, os.path.join(tmp, "logits.npy"))
            check(f"{name} logits, nabla --model {os.path.basename(model)} vs torch, {len(x)} images",
                  float(np.abs(got - want).max()), args.tol_out)
        xs = os.path.join(tmp, "xj.npy")
        np.save(xs, x[:nj])
        jac = os.path.join(tmp, "J.npy")
        run(nabla, "jacobian", "--model", path, "--input", xs, "--per-example", "-o", jac)
        got = np.load(jac)  # (n, 10, 28, 28, 1)
        ref = []
        for i in range(nj):
            j = torch.autograd.functional.jacobian(net, xt[i:i + 1])  # (1, 10, 1, 1, 28, 28)
            ref.append(j[0, :, 0].permute(0, 2, 3, 1).numpy())  # (10, 28, 28, 1): NCHW -> NHWC, C = 1
        ref = np.stack(ref)
        check(f"{name} input Jacobian {got.shape} (max |J| {np.abs(ref).max():.3g}), nabla jacobian --per-example vs "
              f"torch.autograd, {nj} images", float(np.abs(got - ref).max()), args.tol_jac)
        if not np.abs(ref).max() > 0:
            failures.append(f"{name}: torch's input Jacobian is all zero: the comparison would say nothing")
        else:  # pooled networks have small entries (|J| ~ 1e-3), where 2e-4 alone would say little
            check(f"{name} input Jacobian, relative to max |J|", float(np.abs(got - ref).max() / np.abs(ref).max()),
                  1e-4)
        if name == "BatchNorm ResNet":
            check_second_order(nabla, tmp, imported, x, name)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nabla", default=os.path.join(ROOT, "build", "nabla"))
    ap.add_argument("--n", type=int, default=64, help="test images (default 64)")
    ap.add_argument("--tol-out", type=float, default=1e-5)
    ap.add_argument("--tol-jac", type=float, default=2e-4)
    args = ap.parse_args()
    # One GEMM kernel choice per shape for every process (docs/design.md, "Kernels chosen by
    # measurement"), so that nabla -> ONNX -> nabla can be compared bit for bit across commands.
    os.environ["NB_GEMM"] = "fixed"
    if not os.path.exists(args.nabla):
        raise SystemExit(f"check_onnx: no nabla binary at {args.nabla}; build it or pass --nabla")
    if not os.path.exists(DATA):
        print(f"check_onnx: skipped: no Fashion-MNIST at {DATA} (apt-get install dataset-fashion-mnist)")
        sys.exit(0)
    with tempfile.TemporaryDirectory(prefix="nabla-onnx-") as tmp:
        x = test_images(args.n)
        x_npy = os.path.join(tmp, "x.npy")
        np.save(x_npy, x)
        check_export(args.nabla, tmp, x, x_npy)
        check_torch(args.nabla, tmp, x, x_npy)
    if failures:
        print(f"check_onnx: {len(failures)} check(s) failed: {'; '.join(failures)}")
        sys.exit(1)
    print("check_onnx: all checks passed")
