"""PyTorch's side of the benchmark: the same network, batch sizes, threads and
measurements as bench/bench.c. Prints "key value" lines. Run with Debian's
python3-torch: /usr/bin/python3 bench/torch_bench.py THREADS [peak|epoch|second|hessian_peak|resnet|eigs [COUNT [MODEL]]]"""
import gzip
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn as nn

FASHION = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load(split):
    x = idx(f"{FASHION}/{split}-images-idx3-ubyte.gz").astype(np.float32) / 255
    y = idx(f"{FASHION}/{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return torch.from_numpy(x).unsqueeze(1), torch.from_numpy(y)


def cnn():
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))


class ResNet(nn.Module):
    """scripts/resnet.spec in PyTorch: the same layers, shapes and order
    (padding=same at stride 2 on 28 and 14 pixels pads one at the bottom and
    right only, which 'padding=1' does not; the cost is the same)."""

    def __init__(self):
        super().__init__()

        def cbr(i, o, s, relu=True):
            layers = [nn.Conv2d(i, o, 3, s, 1), nn.BatchNorm2d(o)]
            return nn.Sequential(*(layers + [nn.ReLU()] if relu else layers))
        a, b, c = 24, 48, 96  # the channels of the three stages
        self.stem = cbr(1, a, 1)
        self.b1 = nn.Sequential(cbr(a, a, 1), cbr(a, a, 1, False))
        self.b2 = nn.Sequential(cbr(a, b, 2), cbr(b, b, 1, False))
        self.p2 = nn.Sequential(nn.Conv2d(a, b, 1, 2), nn.BatchNorm2d(b))
        self.b3 = nn.Sequential(cbr(b, c, 2), cbr(c, c, 1, False))
        self.p3 = nn.Sequential(nn.Conv2d(b, c, 1, 2), nn.BatchNorm2d(c))
        self.head = nn.Linear(c, 10)

    def forward(self, x):
        s = self.stem(x)
        s1 = torch.relu(self.b1(s) + s)
        s2 = torch.relu(self.b2(s1) + self.p2(s1))
        s3 = torch.relu(self.b3(s2) + self.p3(s2))
        return self.head(s3.mean((2, 3)))


def resnet_train(x, y):
    """Training images per second of the ResNet at batch 128 (SGD, momentum
    0.9, training mode) and the peak memory of those steps."""
    torch.manual_seed(1)
    model = ResNet().train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    xb, yb = x[:128].clone(), y[:128].clone()
    base = status_kib("VmRSS")

    def run():
        for _ in range(4):
            opt.zero_grad()
            loss_fn(model(xb), yb).backward()
            opt.step()
    print("resnet_train_b128_ips %.1f" % (128 * 4 / timed(run, 5)))
    print("resnet_train_b128_peak_mib %.1f" % ((status_kib("VmHWM") - base) / 1024))


def timed(fn, reps):
    fn()  # warm-up
    out = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def train_ips(x, y, batch, steps, reps):
    model = cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    xb, yb = x[:batch], y[:batch]

    def run():
        for _ in range(steps):
            opt.zero_grad()
            loss = loss_fn(model(xb), yb)
            loss.backward()
            opt.step()
    return batch * steps / timed(run, reps)


def infer_ips(x, batch, steps, reps):
    model = cnn().eval()
    xb = x[:batch]

    def run():
        with torch.no_grad():
            for _ in range(steps):
                model(xb)
    return batch * steps / timed(run, reps)


def jacobian_one(x, reps):
    model = cnn()
    x1 = x[:1].clone()
    return timed(lambda: torch.autograd.functional.jacobian(model, x1, vectorize=True), reps)


def per_example(x, reps):
    """The best of PyTorch 1.13's ways: 10 batched VJPs (one backward per logit)."""
    model = cnn()
    xb = x[:64].clone().requires_grad_(True)

    def run():
        out = model(xb)
        rows = []
        for k in range(10):
            g, = torch.autograd.grad(out[:, k].sum(), xb, retain_graph=k < 9)
            rows.append(g)
        return torch.stack(rows, 1)
    return timed(run, reps)


def status_kib(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    return -1


def epoch_seconds():
    x, y = load("train")
    model = cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    t0 = time.perf_counter()
    perm = torch.randperm(len(x), generator=g)
    for i in range(0, len(x), 128):
        idx_ = perm[i:i + 128]
        opt.zero_grad()
        loss = loss_fn(model(x[idx_]), y[idx_])
        loss.backward()
        opt.step()
    return time.perf_counter() - t0


def second_order(x, y, reps):
    """One gradient, one HVP w.r.t. all parameters (torch.autograd.functional.hvp
    over the parameters as inputs, via functional_call) and the full Hessian
    w.r.t. the last Linear's weight (10 x 128, vectorize=True), batch 128;
    gradient and HVP timed alternately (paired), medians."""
    from torch.nn.utils.stateless import functional_call
    model = cnn()
    loss_fn = nn.CrossEntropyLoss()
    xb, yb = x[:128], y[:128]
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone() for _, p in model.named_parameters())
    g = torch.Generator().manual_seed(1)
    vs = tuple(torch.randn(p.shape, generator=g) for p in params)

    def loss_of(*ps):
        return loss_fn(functional_call(model, dict(zip(names, ps)), (xb,)), yb)

    def grad():
        model.zero_grad()
        loss_fn(model(xb), yb).backward()

    def hvp():
        torch.autograd.functional.hvp(loss_of, params, vs)

    tg, th = [], []
    grad(), hvp()
    for _ in range(reps):
        t0 = time.perf_counter(); grad(); t1 = time.perf_counter(); hvp(); t2 = time.perf_counter()
        tg.append(t1 - t0), th.append(t2 - t1)
    w_index = names.index("8.weight")

    def loss_w(w):
        ps = list(params)
        ps[w_index] = w
        return loss_of(*ps)
    th2 = timed(lambda: torch.autograd.functional.hessian(loss_w, params[w_index], vectorize=True), 3)
    print("grad_b128_s %.4f" % statistics.median(tg))
    print("hvp_b128_s %.4f" % statistics.median(th))
    print("hvp_over_grad %.2f" % (statistics.median(th) / statistics.median(tg)))
    print("hessian_dense2_b128_s %.4f" % th2)


def hessian_peak(x, y):
    """Peak resident memory (MiB) of the Hessian w.r.t. the last Linear's
    weight at batch 128 (vectorize=True), above the resident size before it;
    the high-water mark is reset first (5 into /proc/self/clear_refs)."""
    from torch.nn.utils.stateless import functional_call
    model = cnn()
    loss_fn = nn.CrossEntropyLoss()
    xb, yb = x[:128].clone(), y[:128].clone()
    names = [n for n, _ in model.named_parameters()]
    params = [p.detach().clone() for _, p in model.named_parameters()]
    w_index = names.index("8.weight")

    def loss_w(w):
        ps = list(params)
        ps[w_index] = w
        return loss_fn(functional_call(model, dict(zip(names, ps)), (xb,)), yb)
    loss_w(params[w_index])  # the forward's buffers exist before the baseline, as in bench.c
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    base = status_kib("VmRSS")
    torch.autograd.functional.hessian(loss_w, params[w_index], vectorize=True)
    print("hessian_dense2_b128_peak_mib %.1f" % ((status_kib("VmHWM") - base) / 1024))


def read_nabla_cnn(path, model):
    """The weights nabla_bench eigs wrote (safetensors, Keras layouts, the
    dense kernel's rows in nabla's (h, w, c) flatten order) into model."""
    import json
    import struct
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])

    def t(name):
        h = header[name]
        a, b = h["data_offsets"]
        return torch.from_numpy(np.frombuffer(raw[8 + n + a:8 + n + b], dtype=np.float32).reshape(h["shape"]).copy())
    with torch.no_grad():
        for i, layer in ((0, 0), (1, 2)):  # conv (kh, kw, in, out) -> (out, in, kh, kw)
            model[layer].weight.copy_(t(f"{i}.kernel").permute(3, 2, 0, 1))
            model[layer].bias.copy_(t(f"{i}.bias"))
        k = t("4.kernel").reshape(12, 12, 64, 128).permute(2, 0, 1, 3).reshape(9216, 128)  # rows to (c, h, w)
        model[6].weight.copy_(k.t())
        model[6].bias.copy_(t("4.bias"))
        model[8].weight.copy_(t("5.kernel").t())
        model[8].bias.copy_(t("5.bias"))


def top_eigenvalue(count, model_path):
    """Power iteration on torch.autograd.functional.hvp of the mean CCE over
    the first count training images (batches of 250, weighted by size) w.r.t.
    all parameters, stopped when the Rayleigh quotient changes by <= 1e-3
    (as bench.c's nb_linop_eigs: 1e-2 stopped 4% short there), on nabla's
    weights when model_path is given: time and HVPs used, once."""
    from torch.nn.utils.stateless import functional_call
    x, y = load("train")
    x, y = x[:count], y[:count]
    model = cnn()
    if model_path:
        read_nabla_cnn(model_path, model)
    loss_fn = nn.CrossEntropyLoss()
    names = [n for n, _ in model.named_parameters()]
    params = tuple(p.detach().clone() for _, p in model.named_parameters())

    def hv(vs):
        out = [torch.zeros_like(p) for p in params]
        for i in range(0, count, 250):
            xb, yb = x[i:i + 250], y[i:i + 250]
            f = lambda *ps: loss_fn(functional_call(model, dict(zip(names, ps)), (xb,)), yb)  # noqa: E731
            _, h = torch.autograd.functional.hvp(f, params, vs)
            for o, hi in zip(out, h):
                o.add_(hi, alpha=len(yb) / count)
        return out
    g = torch.Generator().manual_seed(1)
    v = [torch.randn(p.shape, generator=g) for p in params]
    t0 = time.perf_counter()
    lam, hvps = None, 0
    for _ in range(200):
        norm = torch.sqrt(sum((a * a).sum() for a in v))
        v = [a / norm for a in v]
        hvv = hv(tuple(v))
        hvps += 1
        new = float(sum((a * b).sum() for a, b in zip(v, hvv)))
        v = hvv
        if lam is not None and abs(new - lam) <= 1e-3 * abs(new):
            lam = new
            break
        lam = new
    print("eigs_top_images %d" % count)
    print("eigs_top_value %.6g" % lam)
    print("eigs_top_s %.2f" % (time.perf_counter() - t0))
    print("eigs_top_hvps %d" % hvps)


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    mode = sys.argv[2] if len(sys.argv) > 2 else "all"
    torch.set_num_threads(1 if mode == "onethread" else threads)
    print("torch_version", torch.__version__)
    if mode == "eigs":  # torch_bench.py T eigs [COUNT [MODEL]]
        top_eigenvalue(int(sys.argv[3]) if len(sys.argv) > 3 else 10000, sys.argv[4] if len(sys.argv) > 4 else None)
        return
    if mode == "epoch":
        print("epoch_s %.3f" % epoch_seconds())
        return
    x, y = load("t10k")
    if mode == "infer":  # inference alone (bench/ab_infer.sh pairs it with nabla_bench T infer)
        print("infer_b128_ips %.1f" % infer_ips(x, 128, 64, 5))
        return
    if mode == "second":
        second_order(x, y, 5)
        return
    if mode == "hessian_peak":  # its own process: a clean high-water mark
        hessian_peak(x, y)
        return
    if mode == "onethread":  # its own process: set_num_threads(1) after 2-thread work does not stick
        torch.set_num_threads(1)
        print("train_b128_1thread_ips %.1f" % train_ips(x, y, 128, 4, 5))
        return
    if mode == "resnet":  # its own process: a clean high-water mark
        xb, yb = x[:128].clone(), y[:128].clone()
        del x, y
        resnet_train(xb, yb)
        return
    if mode == "peak":
        xb, yb = x[:128].clone(), y[:128].clone()
        del x, y
        base = status_kib("VmRSS")
        train_ips(xb, yb, 128, 3, 1)
        print("train_b128_peak_mib %.1f" % ((status_kib("VmHWM") - base) / 1024))
        return
    print("train_b128_ips %.1f" % train_ips(x, y, 128, 8, 5))
    print("train_b32_ips %.1f" % train_ips(x, y, 32, 24, 5))
    print("infer_b128_ips %.1f" % infer_ips(x, 128, 16, 5))
    print("jacobian_one_s %.6f" % jacobian_one(x, 9))
    print("jacobian_per_example64_s %.6f" % per_example(x, 5))


if __name__ == "__main__":
    main()
