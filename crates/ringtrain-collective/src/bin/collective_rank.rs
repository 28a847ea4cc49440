//! Helper process for the multi-process fault tests: one rank of a gRPC world that runs a scripted
//! scenario and reports on stdout/stderr. Not a user tool (the user tool is `ringtrain bench`).
//! A failure is reported as `ERROR after MS ms: MESSAGE`, MS being how long the failing call
//! (joining the world, or the all-reduce that failed) ran, so the tests can bound it by the
//! deadline without counting process start-up.
//!
//! Usage: `collective-rank --rank R --world N --rendezvous HOST:PORT --session S
//! --mode loop|once --elements E --deadline-ms D`

#![allow(clippy::print_stdout, clippy::print_stderr)]

use ringtrain_collective::{CommConfig, Communicator, GrpcConfig, GrpcTransport, ReduceOp};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::{Duration, Instant};

// The same allocator setup as the `ringtrain` binary, so the fault tests exercise the real data path.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn parse() -> Result<HashMap<String, String>, String> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut map = HashMap::new();
    for pair in args.chunks(2) {
        match pair {
            [k, v] if k.starts_with("--") => {
                map.insert(k.trim_start_matches("--").to_string(), v.clone());
            }
            _ => return Err(format!("expected --key value pairs, got {pair:?}")),
        }
    }
    Ok(map)
}

fn get<T: std::str::FromStr>(args: &HashMap<String, String>, key: &str) -> Result<T, String> {
    args.get(key)
        .ok_or_else(|| format!("missing --{key}"))?
        .parse()
        .map_err(|_| format!("bad --{key}"))
}

/// A failure and how long the failing call ran.
type Failure = (Duration, String);

async fn run(args: HashMap<String, String>) -> Result<(), Failure> {
    let started = Instant::now();
    let arg = |e: String| (started.elapsed(), e);
    let rank: u32 = get(&args, "rank").map_err(arg)?;
    let deadline = Duration::from_millis(get(&args, "deadline-ms").map_err(arg)?);
    let transport = GrpcTransport::connect(GrpcConfig {
        rank,
        world: get(&args, "world").map_err(arg)?,
        listen: "127.0.0.1:0".parse().map_err(|_| arg("listen".into()))?,
        advertise_host: None,
        rendezvous: get(&args, "rendezvous").map_err(arg)?,
        session: get(&args, "session").map_err(arg)?,
        session_token: String::new(),
        setup_timeout: deadline,
        tls: None,
    })
    .await
    .map_err(|e| (started.elapsed(), e.to_string()))?;
    let cfg = CommConfig {
        deadline,
        stall_after: deadline / 4,
        ..CommConfig::default()
    };
    let mut comm = Communicator::new(Arc::new(transport), cfg);
    println!("READY");
    let _ = std::io::stdout().flush();
    let elements: usize = get(&args, "elements").map_err(arg)?;
    let mut buf = vec![1.0f32; elements];
    let mode: String = get(&args, "mode").map_err(arg)?;
    let rounds = if mode == "loop" { usize::MAX } else { 1 };
    for _ in 0..rounds {
        let op = Instant::now();
        if let Err(e) = comm.all_reduce(&mut buf, ReduceOp::Sum).await {
            let took = op.elapsed();
            // Keep the links open a moment so the abort notice reaches every peer.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Err((took, e.to_string()));
        }
        buf.fill(1.0);
    }
    let op = Instant::now();
    comm.shutdown()
        .await
        .map_err(|e| (op.elapsed(), e.to_string()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    ringtrain_collective::alloc::keep_freed_memory();
    let result = match parse() {
        Ok(args) => run(args).await,
        Err(e) => Err((Duration::ZERO, e)),
    };
    match result {
        Ok(()) => println!("OK"),
        Err((took, e)) => {
            eprintln!("ERROR after {} ms: {e}", took.as_millis());
            std::process::exit(1);
        }
    }
}
