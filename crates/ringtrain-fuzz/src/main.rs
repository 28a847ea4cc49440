//! `ringtrain-fuzz TARGET SECONDS [--cpu] [--seed N] [--crash-dir DIR]`: fuzzes one target
//! (`spec`, `data`, `checkpoint`, `wire`, `safetensors`) for a wall-clock budget (with `--cpu`: CPU seconds of
//! the fuzzing thread) and exits 0 when nothing was found.
//! Exit 1: a panic; 2: usage; 3: a single allocation above the ceiling (unbounded allocation);
//! 4: one input ran longer than the hang limit. The offending input is written to the crash
//! directory (default `fuzz-crashes/`) so it can be replayed with `--replay FILE`.

use anyhow::{Context, Result, bail};
use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Largest single allocation an input may cause. Every input is at most 64 KiB and every target
/// bounds what it reads, so anything near this is an allocation sized by a value in the input.
const ALLOC_CEILING: usize = 512 << 20;
/// Longest one input may run before it counts as a hang.
const HANG: Duration = Duration::from_secs(20);

static CEILING: AtomicUsize = AtomicUsize::new(usize::MAX);
/// Milliseconds since `EPOCH` at which the current input started (0 before the first).
static STARTED_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<Instant> = OnceLock::new();
static CURRENT: Mutex<Vec<u8>> = Mutex::new(Vec::new());
static CRASH_FILE: OnceLock<PathBuf> = OnceLock::new();

/// The system allocator with a per-allocation ceiling.
struct Ceiling;

// SAFETY: forwards every call to `System` unchanged; only inspects the size first.
unsafe impl GlobalAlloc for Ceiling {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: the caller's contract is passed through.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        check(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        check(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Ceiling = Ceiling;

fn check(size: usize) {
    if size > CEILING.load(Ordering::Relaxed) {
        // Lift the ceiling first: reporting allocates.
        CEILING.store(usize::MAX, Ordering::Relaxed);
        found(
            3,
            &format!("allocation of {size} bytes (ceiling {ALLOC_CEILING})"),
        );
    }
}

/// Saves the current input, says what happened and exits with `code`.
fn found(code: i32, what: &str) -> ! {
    let input = CURRENT.lock().map(|v| v.clone()).unwrap_or_default();
    let file = CRASH_FILE
        .get()
        .cloned()
        .unwrap_or_else(|| "fuzz-crash.bin".into());
    let saved = std::fs::write(&file, &input);
    let _ = writeln!(
        std::io::stderr(),
        "FOUND: {what}; input of {} bytes {} {}",
        input.len(),
        if saved.is_ok() {
            "saved to"
        } else {
            "could not be saved to"
        },
        file.display()
    );
    if std::env::var_os("RUST_BACKTRACE").is_some() {
        let _ = writeln!(
            std::io::stderr(),
            "{}",
            std::backtrace::Backtrace::force_capture()
        );
    }
    std::process::exit(code);
}

fn now_ms() -> u64 {
    EPOCH.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: ringtrain-fuzz TARGET SECONDS [--cpu] [--seed N] [--crash-dir DIR] | \
                 ringtrain-fuzz TARGET --replay FILE  (targets: spec, data, checkpoint, wire, safetensors)";
    let Some(name) = args.first() else {
        let _ = writeln!(std::io::stderr(), "{usage}");
        std::process::exit(2);
    };
    let Some(mut target) = ringtrain_fuzz::target(name) else {
        let _ = writeln!(std::io::stderr(), "unknown target {name:?}; {usage}");
        std::process::exit(2);
    };
    let mut seed = 1u64;
    let mut crash_dir = PathBuf::from("fuzz-crashes");
    let mut seconds = None;
    let mut cpu = false;
    let mut replay = None;
    let mut rest = args[1..].iter();
    while let Some(a) = rest.next() {
        match a.as_str() {
            "--cpu" => cpu = true,
            "--seed" => seed = rest.next().context("--seed needs a value")?.parse()?,
            "--crash-dir" => crash_dir = rest.next().context("--crash-dir needs a value")?.into(),
            "--replay" => {
                replay = Some(PathBuf::from(rest.next().context("--replay needs a file")?))
            }
            s => {
                seconds = Some(
                    s.parse::<u64>()
                        .with_context(|| format!("{usage}: {s:?}"))?,
                )
            }
        }
    }
    if let Some(file) = replay {
        let input = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
        if let Ok(mut cur) = CURRENT.lock() {
            cur.clone_from(&input);
        }
        let _ = CRASH_FILE.set(std::env::temp_dir().join(format!("replay-{name}.bin")));
        CEILING.store(ALLOC_CEILING, Ordering::Relaxed);
        let outcome = target.run(&input);
        CEILING.store(usize::MAX, Ordering::Relaxed);
        writeln!(std::io::stdout(), "{name}: {}: {outcome}", file.display())?;
        return Ok(());
    }
    let Some(seconds) = seconds else {
        bail!("{usage}")
    };
    std::fs::create_dir_all(&crash_dir)
        .with_context(|| format!("creating {}", crash_dir.display()))?;
    let _ = CRASH_FILE.set(crash_dir.join(format!("crash-{name}-seed{seed}.bin")));
    EPOCH.get_or_init(Instant::now);

    // Hang watchdog: an input that started more than HANG ago and is still the current one.
    std::thread::spawn(|| {
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let started = STARTED_MS.load(Ordering::Relaxed);
            if started != 0 && now_ms().saturating_sub(started) > HANG.as_millis() as u64 {
                found(4, &format!("one input ran longer than {HANG:?}"));
            }
        }
    });

    // Seeds are built (training-data fitting, checkpoint writing) before the ceiling applies.
    let mut before = |input: &[u8]| {
        if let Ok(mut cur) = CURRENT.lock() {
            cur.clear();
            cur.extend_from_slice(input);
        }
        CEILING.store(ALLOC_CEILING, Ordering::Relaxed);
        STARTED_MS.store(now_ms(), Ordering::Relaxed);
    };
    let t = Instant::now();
    let cpu_start = ringtrain_fuzz::thread_cpu_time();
    let budget = if cpu {
        ringtrain_fuzz::Budget::CpuSeconds(seconds)
    } else {
        ringtrain_fuzz::Budget::Seconds(seconds)
    };
    let report = ringtrain_fuzz::fuzz(target.as_mut(), budget, seed, &mut before);
    STARTED_MS.store(0, Ordering::Relaxed);
    CEILING.store(usize::MAX, Ordering::Relaxed);
    let secs = t.elapsed().as_secs_f64();
    let cpu_secs = match (cpu_start, ringtrain_fuzz::thread_cpu_time()) {
        (Some(a), Some(b)) => format!("{:.0}", b.saturating_sub(a).as_secs_f64()),
        _ => "unknown".into(),
    };
    writeln!(
        std::io::stdout(),
        "{name}: seed {seed}, {secs:.0} s wall, {cpu_secs} s CPU, {} execs ({:.0}/s), {} accepted, \
         {} outcome classes, corpus {}, slowest input {:?}",
        report.execs,
        report.execs as f64 / secs.max(1e-9),
        report.accepted,
        report.classes,
        report.corpus,
        report.slowest,
    )?;
    if let Some(crash) = report.crash {
        if let Ok(mut cur) = CURRENT.lock() {
            *cur = crash.input;
        }
        found(1, &format!("panic: {}", crash.message));
    }
    writeln!(std::io::stdout(), "{name}: nothing found")?;
    Ok(())
}
