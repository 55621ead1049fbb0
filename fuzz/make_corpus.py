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


for t in ["idx", "npy", "csv", "safetensors"]:
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
