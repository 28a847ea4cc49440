"""Per-step latency of an ONNX export in onnxruntime (one thread, batch 1), for
bench/edge_latency.sh: runs the graph on one step ([1, 1, features]) STEPS times after 1,000
warm-up runs and prints the microseconds per run. The graph starts from a zero state each run,
so a run is the arithmetic of one streaming step.

Usage: onnxruntime_step.py MODEL.onnx FEATURES STEPS
"""
import sys
import time

import numpy as np
import onnxruntime as ort


def main() -> None:
    path, features, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    xs = [
        np.sin(np.arange(i * features, (i + 1) * features, dtype=np.float32) * 0.01).reshape(
            1, 1, features
        )
        for i in range(64)
    ]
    for i in range(1000):
        session.run(None, {name: xs[i % 64]})
    start = time.perf_counter()
    for i in range(steps):
        session.run(None, {name: xs[i % 64]})
    per_step = (time.perf_counter() - start) * 1e6 / steps
    print(f"{per_step:.3f} us/step ({path})")


if __name__ == "__main__":
    main()
