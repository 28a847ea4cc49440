#!/usr/bin/env python3
"""Submit a ringtrain job over gRPC, watch it to the end and print its result as JSON.

A client of the public job API in proto/ringtrain/v1/job.proto, with the Python stubs generated
at run time by grpcio-tools (nothing generated is committed):

    python3 -m venv .venv && .venv/bin/pip install -r examples/python/requirements.txt
    .venv/bin/python examples/python/submit_and_watch.py --coordinator 127.0.0.1:7070 \
        examples/airline-lstm.toml

State changes, progress and the job's log lines go to stderr; stdout receives exactly one JSON
document, `{"job": {...}}` with the keys of `ringtrain submit --watch --output json` (id, state,
reason, result.metrics, ...), so the script composes with jq (`jq .job.result.metrics`).
Exit status: 0 when the job succeeded, 1 when it failed or was cancelled, the coordinator refused
the spec or could not be reached, or the watch timed out.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path
from types import ModuleType

# The repository's proto/ folder, found relative to this file (examples/python/ -> repo root).
DEFAULT_PROTO_DIR = Path(__file__).resolve().parent.parent.parent / "proto"
# Every file of the ringtrain.v1 package: cluster.proto imports job.proto, and collective.proto is
# in the same package, so they are compiled together to keep the package's modules consistent.
PROTO_FILES = ("ringtrain/v1/job.proto", "ringtrain/v1/cluster.proto",
               "ringtrain/v1/collective.proto")
# Specs are at most 1 MiB (job.proto); Job messages carry the spec and the report JSON, so allow
# replies well above gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


def generate_stubs(proto_dir: Path, out_dir: Path) -> tuple[ModuleType, ModuleType]:
    """Compile the ringtrain.v1 protos into `out_dir` and import job_pb2 / job_pb2_grpc.

    grpc_tools writes `ringtrain/v1/job_pb2.py` and `job_pb2_grpc.py`, whose imports are absolute
    (`from ringtrain.v1 import job_pb2`), so `out_dir` goes on sys.path and both folders get an
    `__init__.py` (a regular package, so nothing else named `ringtrain` on the path can shadow it).
    Raises RuntimeError when protoc reports an error (it prints the details to stderr).
    """
    from grpc_tools import protoc  # imported here so --help works without grpcio-tools

    # grpc_tools ships the well-known types (google/protobuf/*.proto); include them like the
    # `python -m grpc_tools.protoc` entry point does, so a future import of one still compiles.
    import grpc_tools
    well_known = Path(grpc_tools.__file__).resolve().parent / "_proto"

    args = ["grpc_tools.protoc", f"-I{proto_dir}", f"-I{well_known}",
            f"--python_out={out_dir}", f"--grpc_python_out={out_dir}",
            *[str(proto_dir / f) for f in PROTO_FILES]]
    if protoc.main(args) != 0:
        raise RuntimeError(f"grpc_tools.protoc failed on {proto_dir} (see the messages above)")
    for pkg in (out_dir / "ringtrain", out_dir / "ringtrain" / "v1"):
        (pkg / "__init__.py").touch()
    sys.path.insert(0, str(out_dir))
    importlib.invalidate_caches()
    job_pb2 = importlib.import_module("ringtrain.v1.job_pb2")
    job_pb2_grpc = importlib.import_module("ringtrain.v1.job_pb2_grpc")
    return job_pb2, job_pb2_grpc


def state_name(pb, value: int) -> str:
    """`JOB_STATE_RUNNING` -> `running` (the CLI's spelling)."""
    return pb.JobState.Name(value).removeprefix("JOB_STATE_").lower()


def grpc_target(coordinator: str) -> str:
    """Accept the CLI's URL form (`http://host:7070`) as well as gRPC's `host:port`."""
    for scheme in ("http://", "grpc://"):
        if coordinator.startswith(scheme):
            return coordinator[len(scheme):].rstrip("/")
    if coordinator.startswith("https://"):
        raise ValueError("https:// coordinators need TLS credentials; this example speaks plain "
                         "gRPC (ringtrain serves plain HTTP/2)")
    return coordinator


def format_progress(p) -> str:
    """One line: step/total, epoch, loss, samples/s, and per-rank compute vs communication."""
    line = (f"step {p.step}/{p.total_steps}  epoch {p.epoch + 1}/{p.epochs}  "
            f"loss {p.loss:.5g}  {p.samples_per_sec:,.0f} samples/s")
    if not math.isnan(p.val_loss):
        line += f"  val_loss {p.val_loss:.5g}"
    ranks = "  ".join(f"r{r.rank}: {r.compute_seconds * 1e3:.1f}/{r.comm_seconds * 1e3:.1f} ms"
                      for r in p.ranks)
    if ranks:
        line += f"  [compute/comm per step  {ranks}]"
    return line


def result_document(pb, job) -> dict:
    """What goes to stdout: `{"job": ...}` with the keys `ringtrain ... --output json` uses, and
    the result (metrics, full report, checkpoint directory) when the job succeeded."""
    doc = {"id": job.id, "name": job.name, "state": state_name(pb, job.state),
           "reason": job.reason, "world": job.world, "workers": list(job.workers),
           "submitted_ms": job.submitted_ms, "started_ms": job.started_ms,
           "finished_ms": job.finished_ms, "base_dir": job.base_dir, "result": None}
    if job.HasField("result"):
        r = job.result
        try:
            report = json.loads(r.report_json) if r.report_json else None
        except json.JSONDecodeError:
            report = None  # the metrics map still carries the headline numbers
        doc["result"] = {"metrics": dict(sorted(r.metrics.items())), "report": report,
                         "checkpoint_dir": r.checkpoint_dir, "steps": r.steps,
                         "stop_reason": r.stop_reason, "samples_per_sec": r.samples_per_sec}
    return {"job": doc}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("spec", type=Path, help="job spec (.toml, or .json for the JSON form)")
    ap.add_argument("--coordinator",
                    default=os.environ.get("RINGTRAIN_COORDINATOR", "127.0.0.1:7070"),
                    help="host:port or http://host:port (env RINGTRAIN_COORDINATOR; "
                         "default 127.0.0.1:7070)")
    ap.add_argument("--proto-dir", type=Path, default=DEFAULT_PROTO_DIR,
                    help=f"folder holding ringtrain/v1/*.proto (default {DEFAULT_PROTO_DIR})")
    ap.add_argument("--connect-timeout", type=float, default=10.0,
                    help="seconds to wait for the coordinator to accept the connection")
    ap.add_argument("--rpc-timeout", type=float, default=30.0,
                    help="deadline of each unary call, seconds")
    ap.add_argument("--timeout", type=float, default=0.0,
                    help="give up watching after this many seconds (0 = wait for the end); the "
                         "job keeps running")
    ap.add_argument("--cancel-on-interrupt", action="store_true",
                    help="on Ctrl-C cancel the job instead of leaving it running")
    a = ap.parse_args()

    try:
        spec_text = a.spec.read_text(encoding="utf-8")
        target = grpc_target(a.coordinator)
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1

    import grpc

    with tempfile.TemporaryDirectory(prefix="ringtrain-stubs-") as tmp:
        try:
            pb, pb_grpc = generate_stubs(a.proto_dir.resolve(), Path(tmp))
        except (RuntimeError, ImportError) as e:
            print(f"error: generating the gRPC stubs: {e}", file=sys.stderr)
            return 1

        options = [("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
                   ("grpc.max_send_message_length", MAX_MESSAGE_BYTES)]
        with grpc.insecure_channel(target, options=options) as channel:
            try:
                grpc.channel_ready_future(channel).result(timeout=a.connect_timeout)
            except grpc.FutureTimeoutError:
                print(f"error: no coordinator answered at {target} within "
                      f"{a.connect_timeout:g} s", file=sys.stderr)
                return 1
            stub = pb_grpc.JobServiceStub(channel)
            return submit_and_watch(pb, stub, a, spec_text)


def submit_and_watch(pb, stub, a, spec_text: str) -> int:
    """SubmitJob, then WatchJob until a final state; prints the result; returns the exit status."""
    import grpc

    fmt = pb.SPEC_FORMAT_JSON if a.spec.suffix.lower() == ".json" else pb.SPEC_FORMAT_TOML
    request = pb.SubmitJobRequest(spec=spec_text, format=fmt,
                                  base_dir=str(a.spec.resolve().parent), origin=str(a.spec))
    try:
        job = stub.SubmitJob(request, timeout=a.rpc_timeout).job
    except grpc.RpcError as e:
        # INVALID_ARGUMENT carries every bad field (`path = value: what is allowed`), one per line.
        print(f"error: SubmitJob: {e.code().name}: {e.details()}", file=sys.stderr)
        return 1
    print(f"submitted {job.id} ({job.name}, {job.world} ranks)", file=sys.stderr)

    final = {pb.JOB_STATE_SUCCEEDED, pb.JOB_STATE_FAILED, pb.JOB_STATE_CANCELLED}
    deadline = time.monotonic() + a.timeout if a.timeout > 0 else None
    last_state = None
    last_progress_print = 0.0
    reconnects = 0
    try:
        while job.state not in final:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                print(f"error: {job.id} still {state_name(pb, job.state)} after {a.timeout:g} s "
                      "(it keeps running)", file=sys.stderr)
                return 1
            try:
                for ev in stub.WatchJob(pb.WatchJobRequest(job_id=job.id), timeout=remaining):
                    job = ev.job
                    reconnects = 0
                    if job.state != last_state:
                        last_state = job.state
                        why = f" ({job.reason})" if job.reason else ""
                        print(f"{job.id}: {state_name(pb, job.state)}{why}", file=sys.stderr)
                    if ev.kind == pb.JobEvent.KIND_LOG and ev.HasField("log"):
                        who = "coordinator" if ev.log.rank < 0 else f"rank {ev.log.rank}"
                        level = pb.LogLevel.Name(ev.log.level).removeprefix("LOG_LEVEL_")
                        print(f"  [{who}] {level} {ev.log.message}", file=sys.stderr)
                    elif ev.kind == pb.JobEvent.KIND_PROGRESS and job.HasField("progress"):
                        # Ranks report about once a second each; one line per second is plenty.
                        now = time.monotonic()
                        if now - last_progress_print >= 1.0:
                            last_progress_print = now
                            print("  " + format_progress(job.progress), file=sys.stderr)
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
                    continue  # the loop head reports the timeout
                if e.code() != grpc.StatusCode.UNAVAILABLE or reconnects >= 5:
                    print(f"error: WatchJob: {e.code().name}: {e.details()}", file=sys.stderr)
                    return 1
                # The coordinator restarted or the connection dropped: it keeps every job in
                # its database, so watch again after a short pause (the first event is a snapshot).
                reconnects += 1
                print(f"  watch interrupted ({e.details()}); reconnecting ({reconnects}/5)",
                      file=sys.stderr)
                time.sleep(min(2.0 * reconnects, 10.0))
                continue
            if job.state not in final:
                # The stream ended without a final state (e.g. a server shutting down): confirm.
                try:
                    job = stub.GetJob(pb.GetJobRequest(job_id=job.id), timeout=a.rpc_timeout)
                except grpc.RpcError as e:
                    print(f"error: GetJob: {e.code().name}: {e.details()}", file=sys.stderr)
                    return 1
    except KeyboardInterrupt:
        if not a.cancel_on_interrupt:
            print(f"\ninterrupted; {job.id} keeps running (cancel it with "
                  f"`ringtrain cancel {job.id}`)", file=sys.stderr)
            return 1
        try:
            job = stub.CancelJob(pb.CancelJobRequest(job_id=job.id,
                                                     reason="Ctrl-C in submit_and_watch.py"),
                                 timeout=a.rpc_timeout)
        except grpc.RpcError as e:
            print(f"\nerror: CancelJob: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
        print(f"\ncancelled {job.id}", file=sys.stderr)

    json.dump(result_document(pb, job), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0 if job.state == pb.JOB_STATE_SUCCEEDED else 1


if __name__ == "__main__":
    sys.exit(main())
