"""Per-step latency of an ONNX export in onnxruntime (one thread, batch 1), for
bench/edge_latency.sh: runs the graph on one step ([1, 1, features]) STEPS times after 1,000
warm-up runs and prints the microseconds per run. A graph exported with --onnx-state gets its
state outputs (state_h{k}_out, state_c{k}_out) fed back as the next run's state inputs, so it
streams like a device; a graph without them starts from zeros every run.

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
    inputs = session.get_inputs()
    name = inputs[0].name
    states = [i.name for i in inputs[1:]]
    outputs = [o.name for o in session.get_outputs()]
    state = {
        i.name: np.zeros([d if isinstance(d, int) else 1 for d in i.shape], dtype=np.float32)
        for i in inputs[1:]
    }
    xs = [
        np.sin(np.arange(i * features, (i + 1) * features, dtype=np.float32) * 0.01).reshape(
            1, 1, features
        )
        for i in range(64)
    ]

    def step(i):
        out = session.run(outputs, {name: xs[i % 64], **state})
        for k, v in zip(states, out[1:]):
            state[k] = v

    for i in range(1000):
        step(i)
    start = time.perf_counter()
    for i in range(steps):
        step(i)
    per_step = (time.perf_counter() - start) * 1e6 / steps
    print(f"{per_step:.3f} us/step ({path}, {len(states)} state tensors carried)")


if __name__ == "__main__":
    main()
