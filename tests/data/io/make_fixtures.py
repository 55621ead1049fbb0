#!/usr/bin/python3
"""Regenerates the io test fixtures (run once with NumPy; the outputs are
committed so that the tests need no Python). Usage: make_fixtures.py [dir]"""
import json
import os
import struct
import sys

import numpy as np

out = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))


def save(name, a, **kw):
    path = os.path.join(out, name)
    if kw:
        with open(path, "wb") as f:
            np.lib.format.write_array(f, a, **kw)
    else:
        np.save(path, a)


save("u8.npy", np.array([0, 1, 2, 254, 255], dtype=np.uint8))
save("i64.npy", np.array([-3, 0, 7, 1 << 40], dtype=np.int64))
save("f64.npy", np.array([0.5, -1.25, 3.0e10, -0.0], dtype=np.float64))
save("f32_2d.npy", np.array([[0.1, 0.2, 0.3], [-1.5, 2.5, 1e-3]], dtype=np.float32))
save("i32_be.npy", np.array([1, -2, 65536], dtype=">i4"))
save("bool.npy", np.array([True, False, True]))
save("f32_v2.npy", np.arange(6, dtype=np.float32).reshape(3, 2), version=(2, 0))
save("fortran.npy", np.asfortranarray(np.arange(6, dtype=np.float32).reshape(2, 3)))

# safetensors with several dtypes, written by hand as the format says.
tensors = {
    "a.f16": np.array([1.0, -2.5, 65504.0, 6.1035156e-05, 5.9604645e-08], dtype="<f2"),
    "b.bf16": (np.array([1.0, -3.0, 0.15625], dtype="<f4").view("<u4") >> 16).astype("<u2"),
    "c.i64": np.array([[-1, 2], [3, 1 << 33]], dtype="<i8"),
    "d.u8": np.array([0, 200, 255], dtype="u1"),
    "e.bool": np.array([1, 0, 1], dtype="u1"),
    "f.f64": np.array([[0.25]], dtype="<f8"),
}
dtypes = {"a.f16": "F16", "b.bf16": "BF16", "c.i64": "I64", "d.u8": "U8", "e.bool": "BOOL", "f.f64": "F64"}
header = {"__metadata__": {"format": "pt", "note": "fixture"}}
blob = b""
for name, arr in tensors.items():
    raw = arr.tobytes()
    header[name] = {"dtype": dtypes[name], "shape": list(arr.shape),
                    "data_offsets": [len(blob), len(blob) + len(raw)]}
    blob += raw
h = json.dumps(header).encode()
h += b" " * ((8 - len(h) % 8) % 8)
with open(os.path.join(out, "mixed.safetensors"), "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + blob)
