#!/usr/bin/env python3
"""Submit a ringtrain hyperparameter sweep over gRPC, follow it to the end, print its trials.

A client of the public sweep API in proto/ringtrain/v1/sweep.proto, with the Python stubs
generated at run time by grpcio-tools like submit_and_watch.py (nothing generated is committed):

    python3 -m venv .venv && .venv/bin/pip install -r examples/python/requirements.txt
    .venv/bin/python examples/python/sweep.py --coordinator 127.0.0.1:7070 \
        examples/sweep-seasonal.toml --best best.toml

The sweep file's `base = "job.toml"` is read (relative to the sweep file) and sent inline as
`[job]`, with the base file's directory as the trials' base directory, as `ringtrain sweep
submit` does. One summary line per change goes to stderr; stdout receives one JSON document,
`{"sweep": {...}, "trials": [...]}`, trials sorted by the objective. `--best FILE` writes the
best trial's full job spec. Exit status 0 when the sweep succeeded, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import tomllib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import submit_and_watch as common  # noqa: E402  (stub generation and channel helpers)

PROTO_FILES = ("ringtrain/v1/job.proto", "ringtrain/v1/sweep.proto")


def toml_value(v) -> str:
    """One TOML value (inline form) from what tomllib reads."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int,)):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {toml_value(x)}" for k, x in v.items()) + " }"
    raise ValueError(f"cannot write {type(v).__name__} as TOML")


def toml_table(table: dict, prefix: str = "") -> str:
    """A TOML document for `table` (sub-tables as [prefix.key], everything else inline)."""
    lines, subs = [], []
    for k, v in table.items():
        if isinstance(v, dict):
            subs.append((k, v))
        else:
            lines.append(f"{json.dumps(k)} = {toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in subs:
        name = f"{prefix}.{json.dumps(k)}" if prefix else json.dumps(k)
        out += f"\n[{name}]\n" + toml_table(v, name)
    return out


def resolve(path: Path) -> tuple[str, Path]:
    """The sweep as one document (base job inline as [job]) and the trials' base directory."""
    sweep = tomllib.loads(path.read_text(encoding="utf-8"))
    base_dir = path.resolve().parent
    if "base" in sweep and "job" not in sweep:
        base_path = base_dir / sweep.pop("base")
        sweep["job"] = tomllib.loads(base_path.read_text(encoding="utf-8"))
        base_dir = base_path.resolve().parent
    sweep.setdefault("name", path.stem)
    return toml_table(sweep), base_dir


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sweep", type=Path, help="sweep spec (SWEEP.toml)")
    ap.add_argument("--coordinator",
                    default=os.environ.get("RINGTRAIN_COORDINATOR", "127.0.0.1:7070"),
                    help="host:port or http://host:port (default 127.0.0.1:7070)")
    ap.add_argument("--proto-dir", type=Path, default=common.DEFAULT_PROTO_DIR)
    ap.add_argument("--best", type=Path, help="write the best trial's job spec here")
    a = ap.parse_args()
    try:
        text, base_dir = resolve(a.sweep)
        target = common.grpc_target(a.coordinator)
    except (OSError, UnicodeDecodeError, ValueError, tomllib.TOMLDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    import grpc

    common.PROTO_FILES = PROTO_FILES
    with tempfile.TemporaryDirectory(prefix="ringtrain-stubs-") as tmp:
        try:
            job_pb2, job_grpc = common.generate_stubs(a.proto_dir.resolve(), Path(tmp))
            import importlib
            pb = importlib.import_module("ringtrain.v1.sweep_pb2")
            pb_grpc = importlib.import_module("ringtrain.v1.sweep_pb2_grpc")
        except (RuntimeError, ImportError) as e:
            print(f"error: generating the gRPC stubs: {e}", file=sys.stderr)
            return 1
        options = [("grpc.max_receive_message_length", common.MAX_MESSAGE_BYTES)]
        with grpc.insecure_channel(target, options=options) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=10)
            except grpc.FutureTimeoutError:
                print(f"error: no coordinator answered at {target}", file=sys.stderr)
                return 1
            stub = pb_grpc.SweepServiceStub(channel)
            try:
                sweep = stub.Submit(pb.SubmitSweepRequest(sweep=text, base_dir=str(base_dir),
                                                          origin=str(a.sweep)), timeout=30)
                print(f"submitted {sweep.id} ({sweep.name})", file=sys.stderr)
                last = None
                for sweep in stub.Watch(pb.GetSweepRequest(sweep_id=sweep.id)):
                    done = sum(t.state == pb.TRIAL_STATE_COMPLETE for t in sweep.trials)
                    pruned = sum(t.state == pb.TRIAL_STATE_PRUNED for t in sweep.trials)
                    line = (f"{sweep.id}: {pb.SweepState.Name(sweep.state)}, "
                            f"{sweep.trials_started} started, {done} complete, {pruned} pruned")
                    if line != last:
                        print(line, file=sys.stderr)
                        last = line
            except grpc.RpcError as e:
                print(f"error: {e.code().name}: {e.details()}", file=sys.stderr)
                return 1
            sign = -1.0 if sweep.direction == "max" else 1.0
            trials = sorted(sweep.trials, key=lambda t: (not t.has_value, sign * t.value
                                                         if t.has_value else 0.0, t.index))
            doc = {
                "sweep": {"id": sweep.id, "name": sweep.name, "state":
                          pb.SweepState.Name(sweep.state).removeprefix("SWEEP_STATE_").lower(),
                          "metric": sweep.metric, "direction": sweep.direction,
                          "best_trial": sweep.best_trial, "reason": sweep.reason},
                "trials": [{"index": t.index, "job_id": t.job_id,
                            "state": pb.TrialState.Name(t.state).removeprefix("TRIAL_STATE_").lower(),
                            "value": t.value if t.has_value else None,
                            "params": json.loads(t.params_json), "reason": t.reason}
                           for t in trials],
            }
            if a.best and sweep.best_trial >= 0:
                best = sweep.trials[sweep.best_trial]
                job = job_grpc.JobServiceStub(channel).GetJob(
                    job_pb2.GetJobRequest(job_id=best.job_id), timeout=30)
                a.best.write_text(job.spec, encoding="utf-8")
                print(f"wrote {a.best} (trial {best.index}, {sweep.metric} = {best.value})",
                      file=sys.stderr)
            print(json.dumps(doc))
            return 0 if sweep.state == pb.SWEEP_STATE_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
