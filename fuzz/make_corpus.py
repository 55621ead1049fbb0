#!/usr/bin/python3
"""Writes the seed corpora under fuzz/corpus/<target>/ (run once; the files
are committed). Small valid files plus a few invalid ones."""
import gzip
import json
import os
import shutil
import struct

here = os.path.dirname(os.path.abspath(__file__))
fixtures = os.path.join(here, "..", "tests", "data", "io")


for t in ["idx", "npy", "csv", "safetensors", "model_import"]:
    os.makedirs(os.path.join(here, "corpus", t), exist_ok=True)


def put(target, name, data):
    d = os.path.join(here, "corpus", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def idx(typ, dims, payload):
    return bytes([0, 0, typ, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


u8 = idx(0x08, [2, 3], bytes([0, 1, 2, 3, 254, 255]))
put("idx", "u8_2x3", u8)
put("idx", "u8_2x3.gz", gzip.compress(u8, mtime=0))
put("idx", "f32_2", idx(0x0D, [2], struct.pack(">ff", 1.5, -2.0)))
put("idx", "f64_1x1x1", idx(0x0E, [1, 1, 1], struct.pack(">d", 0.25)))
put("idx", "i16_3", idx(0x0B, [3], struct.pack(">hhh", -1, 2, 300)))
put("idx", "i32_labels.gz", gzip.compress(idx(0x0C, [4], struct.pack(">iiii", 0, 9, -7, 70000)), mtime=0))
put("idx", "bad_truncated", u8[:9])
put("idx", "bad_lying_dims", idx(0x08, [100, 100], b"\x01\x02"))

for name in ["u8.npy", "i64.npy", "f32_2d.npy", "i32_be.npy", "bool.npy", "f32_v2.npy", "fortran.npy"]:
    shutil.copy(os.path.join(fixtures, name), os.path.join(here, "corpus", "npy", name))
hdr = b"{'descr': '<f4', 'fortran_order': False, 'shape': (1000000,), }\n"
put("npy", "bad_lying_shape.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr + b"\0" * 12)
hdr = b"{'descr': '<c8', 'fortran_order': False, 'shape': (1,), }\n"
put("npy", "bad_dtype.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(hdr)) + hdr + b"\0" * 8)

put("csv", "header.csv", b"x, y ,\"a, b\"\r\n1, 2.5, -3\r\n4,5e-1,6\r\n\r\n")
put("csv", "plain.csv", b"1,2,3\n4,5,6\n7,8,9")
put("csv", "floats.csv", b"1e-3,-0.5,inf\nnan,0x1p3,  7\n")
put("csv", "bad_ragged.csv", b"1,2\n3\n")
put("csv", "bad_word.csv", b"a,b\n1,abc\n")


def st(entries, meta=None, pad=b""):
    header = {}
    if meta:
        header["__metadata__"] = meta
    blob = b""
    for name, dtype, shape, raw in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(blob), len(blob) + len(raw)]}
        blob += raw
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + blob + pad


shutil.copy(os.path.join(fixtures, "mixed.safetensors"), os.path.join(here, "corpus", "safetensors", "mixed.safetensors"))
put("safetensors", "model.safetensors",
    st([("0.kernel", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), ("0.bias", "F32", [2], struct.pack("<2f", 0.5, -1))],
       {"nabla.spec": "dense 2", "nabla.input": "2", "nabla.format": "1"}))
put("safetensors", "empty.safetensors", st([]))
put("safetensors", "f16.safetensors", st([("h", "F16", [3], struct.pack("<3H", 0x3c00, 0x0001, 0x7c00))]))
bad = st([("a", "F32", [2], b"\0" * 8)])
h = json.dumps({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}).encode()
put("safetensors", "bad_overlap.safetensors", struct.pack("<Q", len(h)) + h + b"\0" * 16)
put("safetensors", "bad_truncated.safetensors", bad[:-3])


# fuzz_model_import: byte 0 flags, byte 1 selector, then SPEC\0INPUT\0,
# the number of extra tensors and their records (NAME\0 RANK DIMS...),
# then value bytes (see fuzz/fuzz_model_import.c).
def mi(flags, sel, spec, shape, extras=(), values=b""):
    b = bytes([flags, sel]) + spec.encode() + b"\0" + shape.encode() + b"\0" + bytes([len(extras)])
    for name, dims in extras:
        b += name.encode() + b"\0" + bytes([len(dims)] + list(dims))
    return b + values


AUTO, MISSING, RESHAPE, OPTIM, ALLOW, NO_INPUT = 4, 8, 16, 32, 2, 64
vals = bytes(range(100, 160, 3))
put("model_import", "mlp", mi(AUTO, 0, "dense 8 relu; dense 3", "4", values=vals))
put("model_import", "cnn", mi(AUTO, 0, "conv2d 2 3 relu; maxpool 2; flatten; dense 3 softmax; dropout 0.1", "6,6,1",
                              values=vals))
put("model_import", "cnn_options", mi(AUTO, 0, "conv2d 2 3 tanh stride=2 padding=same dilation=2; avgpool 2 stride=1 "
                                      "padding=same; flatten; dense 2 sigmoid", "7,7,2", values=vals))
put("model_import", "linear_none", mi(AUTO, 0, "dense 5 relu; linear; none; dense 2 none", "3", values=vals))
put("model_import", "optim_state", mi(AUTO | OPTIM, 0, "dense 3", "2", values=vals))
put("model_import", "bad_missing", mi(AUTO | MISSING, 1, "dense 8 relu; dense 3", "4", values=vals))
put("model_import", "bad_reshaped", mi(AUTO | RESHAPE, 8, "dense 8 relu; dense 3", "4", values=vals))
put("model_import", "bad_extra", mi(AUTO, 0, "dense 8 relu; dense 3", "4", [("9.kernel", [2, 2]), ("foo", [1])], vals))
put("model_import", "bad_replaced", mi(AUTO, 0, "dense 8 relu; dense 3", "4", [("1.bias", [4])], vals))
put("model_import", "bad_nonfinite", mi(AUTO, 0, "dense 4; dense 2", "3", values=bytes([128, 255, 254, 253, 140])))
put("model_import", "nonfinite_allowed",
    mi(AUTO | ALLOW, 0, "dense 4; dense 2", "3", values=bytes([128, 255, 254, 253])))
put("model_import", "bad_no_input", mi(AUTO | NO_INPUT, 0, "dense 2", "2"))
put("model_import", "bad_spec", mi(AUTO, 0, "conv2d 2 3; dense 2", "5,5,1"))
put("model_import", "no_params", mi(AUTO, 0, "flatten; relu", "2,2"))
put("model_import", "raw_model",
    bytes([1, 0]) + st([("0.kernel", "F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)),
                        ("0.bias", "F32", [2], struct.pack("<2f", 0.5, -1))],
                       {"nabla.spec": "dense 2", "nabla.input": "2", "nabla.format": "1"}))
put("model_import", "raw_bad_nan",
    bytes([1, 0]) + st([("0.kernel", "F32", [2, 1], struct.pack("<2f", 1, float("nan"))),
                        ("0.bias", "F32", [1], struct.pack("<f", 0.5))],
                       {"nabla.spec": "dense 1 sigmoid", "nabla.input": "2", "nabla.format": "1"}))
