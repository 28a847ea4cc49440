#!/usr/bin/env python3
"""torch.distributed all_reduce with the gloo backend: N processes on 127.0.0.1, one thread each.

Prints per size the median time, algbw and busbw = algbw * 2(N-1)/N (nccl-tests convention), where
the time of an iteration is the maximum over ranks and every iteration starts after a barrier --
the same protocol as `ringtrain bench allreduce`.

Usage: allreduce_gloo.py --world 4 --bytes 1MiB,16MiB,64MiB [--iters 20] [--warmup 3] [--json]
"""
import argparse
import json
import os
import statistics
import time

SUFFIX = {"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10, "B": 1}


def parse_size(s):
    for suffix, mult in SUFFIX.items():
        if s.endswith(suffix):
            return int(s[: -len(suffix)]) * mult
    return int(s)


def worker(rank, world, port, sizes, iters, warmup, queue):
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world
    )
    results = []
    for nbytes in sizes:
        buf = torch.ones(nbytes // 4, dtype=torch.float32)
        for _ in range(warmup):
            dist.all_reduce(buf)
        times = []
        for _ in range(iters):
            dist.barrier()
            t0 = time.perf_counter()
            dist.all_reduce(buf)
            times.append(time.perf_counter() - t0)
        t = torch.tensor(times, dtype=torch.float64)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        results.append((nbytes, t.tolist()))
    if rank == 0:
        queue.put(results)
    dist.barrier()
    # gloo teardown can hang or crash at interpreter exit; the results are already out.
    os._exit(0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--bytes", default="1MiB,16MiB,64MiB")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--port", type=int, default=29533)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    sizes = [parse_size(s) for s in args.bytes.split(",")]

    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=(r, args.world, args.port, sizes, args.iters, args.warmup, queue))
        for r in range(args.world)
    ]
    for p in procs:
        p.start()
    results = queue.get(timeout=1800)
    for p in procs:
        p.join(timeout=60)
    n = args.world
    rows = []
    for nbytes, times in results:
        med = statistics.median(times)
        algbw = nbytes / med
        rows.append(
            {
                "bytes": nbytes,
                "world": n,
                "median_s": med,
                "algbw_gbps": algbw / 1e9,
                "busbw_gbps": algbw * 2 * (n - 1) / n / 1e9,
            }
        )
    if args.json:
        print(json.dumps(rows))
    else:
        print(f"gloo all-reduce world {n} iters {args.iters}")
        print(f"{'bytes':>12} {'median ms':>12} {'algbw GB/s':>14} {'busbw GB/s':>14}")
        for r in rows:
            print(
                f"{r['bytes']:>12} {r['median_s'] * 1e3:>12.3f} {r['algbw_gbps']:>14.3f} {r['busbw_gbps']:>14.3f}"
            )


if __name__ == "__main__":
    main()
