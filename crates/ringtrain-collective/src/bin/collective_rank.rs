//! Helper process for the multi-process fault tests: one rank of a gRPC world that runs a scripted
//! scenario and reports on stdout/stderr. Not a user tool (the user tool is `ringtrain bench`).
//!
//! Usage: `collective-rank --rank R --world N --rendezvous HOST:PORT --session S
//! --mode loop|once --elements E --deadline-ms D`

#![allow(clippy::print_stdout, clippy::print_stderr)]

use ringtrain_collective::{CommConfig, Communicator, GrpcConfig, GrpcTransport, ReduceOp};
use std::collections::HashMap;
use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

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

async fn run(args: HashMap<String, String>) -> Result<(), String> {
    let rank: u32 = get(&args, "rank")?;
    let deadline = Duration::from_millis(get(&args, "deadline-ms")?);
    let transport = GrpcTransport::connect(GrpcConfig {
        rank,
        world: get(&args, "world")?,
        listen: "127.0.0.1:0".parse().map_err(|_| "listen")?,
        advertise_host: None,
        rendezvous: get(&args, "rendezvous")?,
        session: get(&args, "session")?,
        session_token: String::new(),
        setup_timeout: deadline,
        tls: None,
    })
    .await
    .map_err(|e| e.to_string())?;
    let cfg = CommConfig {
        deadline,
        stall_after: deadline / 4,
        ..CommConfig::default()
    };
    let mut comm = Communicator::new(Arc::new(transport), cfg);
    println!("READY");
    let _ = std::io::stdout().flush();
    let elements: usize = get(&args, "elements")?;
    let mut buf = vec![1.0f32; elements];
    let mode: String = get(&args, "mode")?;
    let rounds = if mode == "loop" { usize::MAX } else { 1 };
    for _ in 0..rounds {
        if let Err(e) = comm.all_reduce(&mut buf, ReduceOp::Sum).await {
            // Keep the links open a moment so the abort notice reaches every peer.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Err(e.to_string());
        }
        buf.fill(1.0);
    }
    comm.shutdown().await.map_err(|e| e.to_string())
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    ringtrain_collective::alloc::keep_freed_memory();
    let result = match parse() {
        Ok(args) => run(args).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => println!("OK"),
        Err(e) => {
            eprintln!("ERROR: {e}");
            std::process::exit(1);
        }
    }
}
