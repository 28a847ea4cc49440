"""Runs ONNX exports in onnxruntime and compares them with what ringtrain computed.

Usage: onnxruntime_parity.py MANIFEST.json TOLERANCE

The manifest lists cases: {what, model, input, dtype, shape, expected}, the input and the
expected output as little-endian raw arrays (float32 or int64 input, float32 output). Prints
"ok <max abs diff> <what>" per case and exits 1 if any case exceeds TOLERANCE.
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main() -> int:
    cases = json.load(open(sys.argv[1]))
    tolerance = float(sys.argv[2])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    failed = 0
    for case in cases:
        session = ort.InferenceSession(case["model"], options, providers=["CPUExecutionProvider"])
        x = np.fromfile(case["input"], dtype=case["dtype"]).reshape(case["shape"])
        name = session.get_inputs()[0].name
        (y,) = session.run(None, {name: x})
        expected = np.fromfile(case["expected"], dtype="float32")
        got = np.asarray(y, dtype=np.float32).reshape(-1)
        if got.shape != expected.shape:
            print(f"FAIL shape {got.shape} != {expected.shape} {case['what']}")
            failed += 1
            continue
        diff = float(np.max(np.abs(got.astype(np.float64) - expected.astype(np.float64))))
        if diff <= tolerance:
            print(f"ok {diff:.3e} {case['what']}")
        else:
            print(f"FAIL {diff:.3e} > {tolerance} {case['what']}")
            failed += 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
