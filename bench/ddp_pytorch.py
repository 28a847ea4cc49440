#!/usr/bin/env python3
"""PyTorch DDP (gloo) side of `bench/dp_scaling.sh`: data-parallel training of the standard config.

N processes on 127.0.0.1 (torch.multiprocessing, spawn), one thread each, each training the model
of bench/train_pytorch.py — nn.LSTM (or GRU / RNN tanh), batch-first, Linear(hidden, 1) on the last
step, MSE, Adam lr 1e-3, fixed random data (its own per rank) — wrapped in DistributedDataParallel,
so gradients are averaged over ranks with gloo all-reduce (bucketed, overlapping backward) every
step. Per-rank batch: weak scaling, as with `ringtrain local --workers N` at batch N x 64.

Timing protocol of train_pytorch.py: each step (zero_grad, forward, backward with its all-reduce,
optimizer step) is timed with perf_counter after `--warmup` untimed steps; a step's time is the
maximum over ranks (they move in lock-step through the all-reduce) and the reported step time is
the median of the timed steps. samples/s = world x batch / median step time (all ranks).

Prints one JSON object:
    {"world": N, "samples_per_sec": X, "step_ms": median ms, "batch_per_rank": .., ...}
"""

import argparse
import datetime
import json
import os
import socket
import statistics
import time


def free_port() -> int:
    """A TCP port nobody listens on now (the rendezvous store binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, a, port, queue):
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=a.world, timeout=datetime.timedelta(seconds=a.timeout))

    class Model(torch.nn.Module):
        def __init__(self):
            super().__init__()
            cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[a.cell]
            kwargs = {"nonlinearity": "tanh"} if a.cell == "rnn" else {}
            self.rnn = cls(a.input, a.hidden, num_layers=a.layers, batch_first=True, **kwargs)
            self.head = torch.nn.Linear(a.hidden, 1)

        def forward(self, x):
            out, _ = self.rnn(x)
            return self.head(out[:, -1, :])

    torch.manual_seed(0)  # DDP broadcasts rank 0's parameters anyway; same seed as train_pytorch
    model = DDP(Model())
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.MSELoss()
    g = torch.Generator().manual_seed(1000 + rank)  # each rank its own shard of fixed data
    x = torch.randn(a.batch, a.seq, a.input, generator=g)
    y = torch.randn(a.batch, 1, generator=g)

    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()  # DDP all-reduces the gradient buckets here
        opt.step()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    t = torch.tensor(times, dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    if rank == 0:
        n_params = sum(p.numel() for p in model.parameters())
        queue.put((t.tolist(), n_params, loss.item()))
    dist.barrier()
    # gloo teardown can hang or crash at interpreter exit; the result is already out.
    os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--world", type=int, default=2, help="processes (ranks)")
    p.add_argument("--cell", choices=["lstm", "gru", "rnn"], default="lstm")
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--input", type=int, default=32)
    p.add_argument("--hidden", type=int, default=128)
    p.add_argument("--batch", type=int, default=64, help="samples per rank per step")
    p.add_argument("--seq", type=int, default=50)
    p.add_argument("--steps", type=int, default=20, help="timed steps")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--port", type=int, default=0, help="rendezvous port (0 = a free one)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds before a stuck rank or rendezvous fails the run")
    a = p.parse_args()
    if a.world < 1 or a.steps < 1 or a.warmup < 0:
        p.error("--world and --steps must be >= 1, --warmup >= 0")
    port = a.port or free_port()

    import torch.multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=worker, args=(r, a, port, queue)) for r in range(a.world)]
    for proc in procs:
        proc.start()
    try:
        times, n_params, last_loss = queue.get(timeout=a.timeout + 60)
    except Exception as e:  # queue.Empty: a rank died or hung; say which ones exited how
        codes = [proc.exitcode for proc in procs]
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
        raise SystemExit(f"ddp_pytorch: no result ({type(e).__name__}); rank exit codes {codes}")
    for proc in procs:
        proc.join(timeout=60)

    ms = statistics.median(times) * 1e3
    sps = a.world * a.batch / (ms / 1e3)
    print(json.dumps({"world": a.world, "samples_per_sec": sps, "step_ms": ms,
                      "batch_per_rank": a.batch, "cell": a.cell, "layers": a.layers,
                      "input": a.input, "hidden": a.hidden, "seq": a.seq,
                      "threads": a.threads, "params": n_params, "timed_steps": a.steps,
                      "warmup": a.warmup, "last_loss": last_loss,
                      "step_ms_all": [t * 1e3 for t in times]}))


if __name__ == "__main__":
    main()
