#!/usr/bin/env python3
"""PyTorch side of `bench/train.sh`: full training steps of the standard recurrent config.

nn.LSTM / nn.GRU / nn.RNN(tanh), batch-first input, Linear(hidden, 1) on the last step, MSE,
Adam lr 1e-3, fixed random data, one thread (like one ringtrain worker). Warm-up steps, then
the median of the timed steps. Prints one line:
    pytorch <cell> layers=.. input=.. hidden=.. batch=.. seq=.. threads=..: X ms/step, Y samples/s
or, with --json, a JSON object with the same numbers.
"""

import argparse
import json
import statistics
import time

import torch


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()

    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    rnn_cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[a.cell]
    kwargs = {"nonlinearity": "tanh"} if a.cell == "rnn" else {}
    rnn = rnn_cls(a.input, a.hidden, num_layers=a.layers, batch_first=True, **kwargs)
    head = torch.nn.Linear(a.hidden, 1)
    params = list(rnn.parameters()) + list(head.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    loss_fn = torch.nn.MSELoss()
    x = torch.randn(a.batch, a.seq, a.input)
    y = torch.randn(a.batch, 1)

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        out, _ = rnn(x)
        loss = loss_fn(head(out[:, -1, :]), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt * 1e3)
    ms = statistics.median(times)
    sps = a.batch / (ms / 1e3)
    n_params = sum(t.numel() for t in params)
    if a.json:
        print(json.dumps({"cell": a.cell, "layers": a.layers, "input": a.input, "hidden": a.hidden,
                          "batch": a.batch, "seq": a.seq, "threads": a.threads, "params": n_params,
                          "median_ms": ms, "samples_per_sec": sps, "step_ms": times}))
    else:
        print(f"pytorch {a.cell} layers={a.layers} input={a.input} hidden={a.hidden} "
              f"batch={a.batch} seq={a.seq} threads={a.threads}: {ms:.1f} ms/step, "
              f"{sps:.0f} samples/s ({n_params} params, median of {len(times)} steps)")


if __name__ == "__main__":
    main()
