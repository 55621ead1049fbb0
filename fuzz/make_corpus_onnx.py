#!/usr/bin/python3
"""Writes the seed corpus of fuzz_onnx under fuzz/corpus/onnx/ (run once; the
files are committed): small models exported by nabla (NHWC and NCHW, every
layer kind, batchnorm and layernorm too), small models from torch.onnx.export when python3-torch is there
(a residual graph with a concat too, and nabla's export of its import),
and a few broken ones. Needs a built nabla (build/nabla or --nabla)."""
import json
import os
import struct
import subprocess
import sys
import tempfile

here = os.path.dirname(os.path.abspath(__file__))
out = os.path.join(here, "corpus", "onnx")
nabla = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "build", "nabla")
os.makedirs(out, exist_ok=True)

models = {
    "cnn": ("conv2d 2 3 relu; maxpool 2; flatten; dense 3", "8,8,1"),
    "options": ("conv2d 2 3 stride=2 padding=same; elu; conv2d 3 2 tanh dilation=2; avgpool 2 stride=1 padding=same; "
                "maxpool 2; flatten; dropout 0.25; dense 2 softmax", "9,7,2"),
    "mlp": ("dense 4 leaky_relu; linear; dense 3 log_softmax; sigmoid; softplus", "5"),
    # BatchNormalization after a Conv, in a residual block and on (N, C) (opset 13)
    "batchnorm": ("conv2d 2 3 padding=same; batchnorm momentum=0.2; relu as a; conv2d 2 3 padding=same; "
                  "batchnorm eps=0.001; add a; flatten; dense 3; batchnorm", "6,6,1"),
    # LayerNormalization (opset 17) on NHWC images, after a Conv (a Transpose back) and on (N, C)
    "layernorm": ("layernorm; conv2d 2 3; layernorm eps=1e-4; flatten; dense 3; layernorm", "5,5,2"),
}


def param_shapes(spec, shape):
    """(name, shape) of every parameter, from the output shapes `nabla summary` prints."""
    text = subprocess.run([nabla, "summary", "--model", spec, "--input", shape], check=True, capture_output=True,
                          text=True).stdout
    prev, params = [int(d) for d in shape.split(",")], []
    for line in text.splitlines():
        parts = line.split("(N, ")
        if len(parts) != 2 or not line[:1].isdigit():
            continue
        idx, layer = line.split()[0], line.split()[1:3]
        dims = [int(d) for d in parts[1].split(")")[0].split(",")]
        if layer[0] == "conv2d":
            size = int(line.split()[3])
            params += [(f"{idx}.kernel", [size, size, prev[-1], dims[-1]]),
                       (f"{idx}.bias", [dims[-1]])]
        elif layer[0] in ("dense", "neuron"):
            params += [(f"{idx}.kernel", [prev[-1], dims[-1]]), (f"{idx}.bias", [dims[-1]])]
        elif layer[0] in ("batchnorm", "layernorm"):
            names = ("gamma", "beta", "moving_mean", "moving_variance") if layer[0] == "batchnorm" else ("gamma", "beta")
            params += [(f"{idx}.{p}", [dims[-1]]) for p in names]
        prev = dims
    return params


def safetensors(spec, shape, path):
    """A nabla model file of spec with small deterministic weights."""
    header, blobs, off = {}, [], 0
    for k, (name, dims) in enumerate(param_shapes(spec, shape)):
        n = 1
        for d in dims:
            n *= d
        v = [((i * 7 + k) % 11 - 5) / 10 for i in range(n)]
        if name.endswith(".moving_variance"):  # a variance is positive (the import refuses a negative one)
            v = [abs(x) + 0.5 for x in v]
        blob = struct.pack(f"<{n}f", *v)
        header[name] = {"dtype": "F32", "shape": dims, "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    header["__metadata__"] = {"nabla.spec": spec, "nabla.input": shape, "nabla.format": "1"}
    h = json.dumps(header).encode()
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


with tempfile.TemporaryDirectory() as tmp:
    for name, (spec, shape) in models.items():
        st = os.path.join(tmp, name + ".safetensors")
        safetensors(spec, shape, st)
        for flag, suffix in (([], ""), (["--nchw"], "_nchw")):
            subprocess.run([nabla, "export", "--model", st, "-o", os.path.join(out, name + suffix + ".onnx")] + flag,
                           check=True, capture_output=True)
try:
    import torch
    nn = torch.nn
    torch.manual_seed(0)
    for name, net, shape in (
        ("torch_cnn", nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                                    nn.Linear(32, 3)), (1, 1, 8, 8)),
        ("torch_mlp", nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.Tanh(), nn.Linear(4, 2), nn.Softmax(1)),
         (1, 6)),
    ):
        torch.onnx.export(net.eval(), torch.zeros(shape), os.path.join(out, name + ".onnx"), opset_version=13)

    class Residual(nn.Module):  # a graph: shared tensors, Add, Concat, padding=1 at stride 2, global pooling
        def __init__(self):
            super().__init__()
            self.stem, self.c1, self.c2 = nn.Conv2d(1, 2, 3, padding=1), nn.Conv2d(2, 3, 3, 2, 1), nn.Conv2d(3, 3, 1)
            self.short, self.fc = nn.Conv2d(2, 3, 1, 2), nn.Linear(6, 2)

        def forward(self, x):
            x = torch.relu(self.stem(x))
            y = torch.relu(self.c2(torch.relu(self.c1(x))) + self.short(x))
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(torch.cat([y, torch.tanh(y)], 1), 1), 1))

    torch_res = os.path.join(out, "torch_resnet.onnx")
    torch.onnx.export(Residual().eval(), torch.zeros(1, 1, 8, 8), torch_res, opset_version=13)
    with tempfile.TemporaryDirectory() as tmp:  # nabla's own writing of the same graph (as/from/add/concat)
        st = os.path.join(tmp, "resnet.safetensors")
        subprocess.run([nabla, "import", torch_res, "-o", st], check=True, capture_output=True)
        for flag, suffix in (([], ""), (["--nchw"], "_nchw")):
            subprocess.run([nabla, "export", "--model", st, "-o", os.path.join(out, "resnet" + suffix + ".onnx")] + flag,
                           check=True, capture_output=True)
    # BatchNorm2d kept as BatchNormalization (TrainingMode.PRESERVE), random moving statistics; LayerNorm
    # (opset 17). Last, so that the seeds before it keep their random weights.
    bn = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1, bias=False), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(),
                       nn.Linear(128, 3), nn.LayerNorm(3))
    with torch.no_grad():
        bn[1].running_mean.uniform_(-0.5, 0.5), bn[1].running_var.uniform_(0.5, 2.0)
    torch.onnx.export(bn.eval(), torch.zeros(1, 1, 8, 8), os.path.join(out, "torch_batchnorm.onnx"), opset_version=17,
                      training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
except ImportError:
    print("make_corpus_onnx: no python3-torch: torch seeds skipped")
for name in list(os.listdir(out)):
    data = open(os.path.join(out, name), "rb").read()
    if name == "cnn.onnx":
        open(os.path.join(out, "bad_truncated.onnx"), "wb").write(data[: len(data) // 2])
        flipped = bytearray(data)
        flipped[len(data) // 3] ^= 0xFF
        open(os.path.join(out, "bad_flipped.onnx"), "wb").write(bytes(flipped))
print("\n".join(f"{n}: {os.path.getsize(os.path.join(out, n))} bytes" for n in sorted(os.listdir(out))))
