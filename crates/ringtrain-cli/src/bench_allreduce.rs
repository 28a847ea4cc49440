//! `ringtrain bench allreduce`: measures ringtrain's all-reduce across N local processes (gRPC) or
//! N tasks of this process (in-process), and prints per size the median time, algorithm bandwidth
//! and bus bandwidth (busbw = algbw × 2(N−1)/N, the nccl-tests convention; the time of an
//! iteration is the slowest rank's, each iteration starting after a barrier). The parent serves the
//! rendezvous and re-runs this executable with hidden `--rank/--rendezvous/--session` flags.
//! `--tls` makes a throwaway CA and certificate for 127.0.0.1 and runs the rendezvous and every
//! link over mutual TLS, as a secured cluster would, to measure what TLS costs the all-reduce.

use anyhow::{Context, bail};
use ringtrain_collective::bench::{BenchResult, measure};
use ringtrain_collective::{
    CommConfig, Communicator, GrpcConfig, GrpcTransport, InProcTransport, WireDType, rendezvous,
};
use ringtrain_proto::tls::{ThrowawayPki, TlsFiles};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

/// Transport under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchTransport {
    /// One process per rank, gRPC over 127.0.0.1.
    Grpc,
    /// All ranks as tasks of this process, channels.
    Inproc,
}

/// Wire element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchDtype {
    /// 4 bytes per element.
    F32,
    /// IEEE half precision on the wire, f32 accumulation.
    F16,
    /// bfloat16 on the wire, f32 accumulation.
    Bf16,
}

/// Report format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BenchOutput {
    /// A table for people.
    Text,
    /// One JSON document.
    Json,
}

/// Arguments of `ringtrain bench allreduce`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchAllreduceArgs {
    /// Number of ranks.
    #[arg(long, default_value_t = 2)]
    pub world: u32,
    /// Buffer sizes, comma-separated, with optional KiB/MiB/GiB suffix (e.g. 1MiB,16MiB,64MiB).
    #[arg(long, value_delimiter = ',', default_value = "1MiB,16MiB,64MiB")]
    pub bytes: Vec<String>,
    /// Transport.
    #[arg(long, value_enum, default_value = "grpc")]
    pub transport: BenchTransport,
    /// Timed iterations per size.
    #[arg(long, default_value_t = 20)]
    pub iters: usize,
    /// Untimed warm-up iterations per size.
    #[arg(long, default_value_t = 3)]
    pub warmup: usize,
    /// Element type on the wire.
    #[arg(long, value_enum, default_value = "f32")]
    pub dtype: BenchDtype,
    /// Report format.
    #[arg(long, value_enum, default_value = "text")]
    pub output: BenchOutput,
    /// Run the rendezvous and every peer link over mutual TLS with throwaway certificates
    /// (gRPC transport only).
    #[arg(long)]
    pub tls: bool,
    /// Internal: directory of the throwaway certificates given to child processes.
    #[arg(long, hide = true)]
    pub tls_dir: Option<std::path::PathBuf>,
    /// Internal: rank of a spawned child process.
    #[arg(long, hide = true)]
    pub rank: Option<u32>,
    /// Internal: rendezvous address given to child processes.
    #[arg(long, hide = true)]
    pub rendezvous: Option<String>,
    /// Internal: rendezvous session name given to child processes.
    #[arg(long, hide = true)]
    pub session: Option<String>,
}

fn parse_size(s: &str) -> anyhow::Result<u64> {
    let s = s.trim();
    let (num, mult) = [
        ("GiB", 1u64 << 30),
        ("MiB", 1 << 20),
        ("KiB", 1 << 10),
        ("B", 1),
    ]
    .iter()
    .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|n| (n, *m)))
    .unwrap_or((s, 1));
    let n: u64 = num
        .trim()
        .parse()
        .with_context(|| format!("bad size {s:?} in --bytes"))?;
    Ok(n * mult)
}

fn config(args: &BenchAllreduceArgs) -> CommConfig {
    CommConfig {
        wire_dtype: match args.dtype {
            BenchDtype::F32 => WireDType::F32,
            BenchDtype::F16 => WireDType::F16,
            BenchDtype::Bf16 => WireDType::Bf16,
        },
        deadline: Duration::from_secs(120),
        ..CommConfig::default()
    }
}

fn to_json(results: &[BenchResult], world: u32) -> serde_json::Value {
    serde_json::Value::Array(
        results
            .iter()
            .map(|r| {
                serde_json::json!({
                    "bytes": r.bytes,
                    "world": world,
                    "median_s": r.median(),
                    "algbw_gbps": r.algbw() / 1e9,
                    "busbw_gbps": r.busbw(world) / 1e9,
                    "seconds": r.seconds,
                })
            })
            .collect(),
    )
}

/// Runs the benchmark (or, with the hidden `--rank`, one child rank of it).
pub fn run(args: BenchAllreduceArgs) -> anyhow::Result<()> {
    if args.world == 0 {
        bail!("--world must be at least 1");
    }
    if args.tls && args.transport == BenchTransport::Inproc {
        bail!("--tls secures network links: use it with --transport grpc");
    }
    let sizes = args
        .bytes
        .iter()
        .map(|s| parse_size(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if let Some(rank) = args.rank {
        ringtrain_collective::alloc::keep_freed_memory();
        return run_child(&args, rank, &sizes);
    }
    let results = match args.transport {
        BenchTransport::Inproc => run_inproc(&args, &sizes)?,
        BenchTransport::Grpc => run_parent(&args)?,
    };
    let mut out = std::io::stdout().lock();
    match args.output {
        BenchOutput::Json => writeln!(out, "{}", to_json(&results, args.world))?,
        BenchOutput::Text => {
            writeln!(
                out,
                "all-reduce {:?}{} world {} dtype {:?} iters {}",
                args.transport,
                if args.tls { " (mutual TLS)" } else { "" },
                args.world,
                args.dtype,
                args.iters
            )?;
            writeln!(
                out,
                "{:>12} {:>12} {:>14} {:>14}",
                "bytes", "median ms", "algbw GB/s", "busbw GB/s"
            )?;
            for r in &results {
                writeln!(
                    out,
                    "{:>12} {:>12.3} {:>14.3} {:>14.3}",
                    r.bytes,
                    r.median() * 1e3,
                    r.algbw() / 1e9,
                    r.busbw(args.world) / 1e9
                )?;
            }
        }
    }
    Ok(())
}

fn run_inproc(args: &BenchAllreduceArgs, sizes: &[u64]) -> anyhow::Result<Vec<BenchResult>> {
    ringtrain_collective::alloc::keep_freed_memory();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let tasks: Vec<_> = InProcTransport::world(args.world)
            .into_iter()
            .map(|t| {
                let mut comm = Communicator::new(Arc::new(t), config(args));
                let (sizes, iters, warmup) = (sizes.to_vec(), args.iters, args.warmup);
                tokio::spawn(async move {
                    let r = measure(&mut comm, &sizes, iters, warmup).await;
                    comm.shutdown().await?;
                    r
                })
            })
            .collect();
        let mut first = None;
        for t in tasks {
            let r = t.await??;
            first.get_or_insert(r);
        }
        first.context("no ranks")
    })
}

fn run_parent(args: &BenchAllreduceArgs) -> anyhow::Result<Vec<BenchResult>> {
    // A worker thread keeps the rendezvous answering while this thread waits on the children.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let certs = tempfile::tempdir().context("a directory for throwaway certificates")?;
    let tls = if args.tls {
        let pki = ThrowawayPki::generate(&["127.0.0.1"])?;
        let files = pki
            .write(certs.path(), true)
            .context("writing throwaway certificates")?;
        files.load()?
    } else {
        None
    };
    let rdv = {
        let _guard = rt.enter();
        rendezvous::spawn_with(listener, tls.as_ref())?
    };
    let session = format!("bench-{}", std::process::id());
    let exe = std::env::current_exe().context("locating this executable")?;
    let mut children = Vec::new();
    for rank in 0..args.world {
        let child = Command::new(&exe)
            .args(std::env::args_os().skip(1))
            .args([
                "--rank",
                &rank.to_string(),
                "--rendezvous",
                &rdv.addr().to_string(),
            ])
            .args(["--session", &session])
            .args(
                tls.as_ref()
                    .map(|_| ["--tls-dir".as_ref(), certs.path().as_os_str()])
                    .into_iter()
                    .flatten(),
            )
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawning rank {rank}"))?;
        children.push(child);
    }
    let mut report = None;
    for (rank, mut child) in children.into_iter().enumerate() {
        let stdout = child.stdout.take().context("child stdout")?;
        let lines: Vec<String> = BufReader::new(stdout).lines().collect::<Result<_, _>>()?;
        let status = child.wait()?;
        if !status.success() {
            bail!("rank {rank} failed ({status})");
        }
        if rank == 0 {
            let line = lines.last().context("rank 0 printed no result")?;
            report = Some(line.clone());
        }
    }
    drop(rdv);
    let parsed: Vec<(u64, Vec<f64>)> =
        serde_json::from_str(&report.context("no report from rank 0")?)?;
    Ok(parsed
        .into_iter()
        .map(|(bytes, seconds)| BenchResult { bytes, seconds })
        .collect())
}

fn run_child(args: &BenchAllreduceArgs, rank: u32, sizes: &[u64]) -> anyhow::Result<()> {
    // One thread per rank: the link tasks and the ring driver take turns on it, so a received
    // piece is reduced without a cross-thread wake-up, and N ranks put N busy threads (not 3N) on
    // the cores. Measured on 2 cores against 2 workers plus the driver thread, back to back: N = 4
    // 16 MiB 0.91-0.98 vs 0.69-0.96 GB/s bus bandwidth, 64 MiB 0.85-1.02 vs 0.78-0.88; N = 2 on par.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let tls = match &args.tls_dir {
        Some(dir) => TlsFiles {
            cert: Some(dir.join("cert.pem")),
            key: Some(dir.join("key.pem")),
            ca: Some(dir.join("ca.pem")),
            require_client_cert: true,
        }
        .load()?,
        None => None,
    };
    let results = rt.block_on(async {
        let transport = GrpcTransport::connect(GrpcConfig {
            rank,
            world: args.world,
            listen: "127.0.0.1:0".parse()?,
            advertise_host: None,
            rendezvous: args
                .rendezvous
                .clone()
                .context("--rendezvous is required with --rank")?,
            session: args.session.clone().unwrap_or_default(),
            session_token: String::new(),
            setup_timeout: Duration::from_secs(60),
            tls,
        })
        .await?;
        let mut comm = Communicator::new(Arc::new(transport), config(args));
        let results = measure(&mut comm, sizes, args.iters, args.warmup).await?;
        comm.shutdown().await?;
        anyhow::Ok(results)
    })?;
    if rank == 0 {
        let rows: Vec<(u64, &Vec<f64>)> = results.iter().map(|r| (r.bytes, &r.seconds)).collect();
        writeln!(
            std::io::stdout().lock(),
            "{}",
            serde_json::to_string(&rows)?
        )?;
    }
    Ok(())
}
