//! A coverage-less mutational fuzzer that runs on the stable toolchain, and its targets: the
//! spec parser, the dataset readers, the checkpoint reader, the peer frame decoder (issue 12) and
//! the two safetensors readers (`init_from` and the device runtime). libFuzzer (cargo-fuzz) needs a nightly `-Zsanitizer`, and afl.rs needs AFL++ built
//! and every dependency (burn included) rebuilt instrumented, which this project's 2-core build
//! machine cannot afford; so each target is an ordinary function fed seeded mutations of a
//! small generated corpus (bit flips, byte and integer substitutions, truncations, splices,
//! dictionary tokens, length-field edits, target-specific structure-aware edits).
//!
//! The only feedback is the *outcome class* of each input (the target's error message with its
//! numbers and quotes removed): an input that produces a class not seen before joins the corpus,
//! so mutations build on inputs that reached a new error path. A run fails on the first panic;
//! the `ringtrain-fuzz` binary adds an allocation ceiling and a hang watchdog.

pub mod mutate;
pub mod targets;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::{Duration, Instant};

pub use mutate::Rng;

/// A fuzz target: a function of bytes that must return (never panic, abort, hang or allocate
/// without bound) whatever the bytes are.
pub trait Target {
    /// Name used on the command line (`spec`, `data`, `checkpoint`, `wire`, `safetensors`).
    fn name(&self) -> &'static str;
    /// Valid or nearly valid inputs to start from.
    fn seeds(&mut self) -> Vec<Vec<u8>>;
    /// Tokens worth inserting (keywords, punctuation, numbers of the input language).
    fn dictionary(&self) -> &'static [&'static [u8]];
    /// Runs one input; the result is its outcome class (starting with `ok` when the input was
    /// accepted, else a normalized error message).
    fn run(&mut self, input: &[u8]) -> String;
    /// A target-specific mutation (structure-aware: fix a checksum, edit a field); `None`
    /// leaves the generic mutators to do it.
    fn mutate(&mut self, _input: &[u8], _rng: &mut Rng) -> Option<Vec<u8>> {
        None
    }
}

/// How long a run lasts.
#[derive(Debug, Clone, Copy)]
pub enum Budget {
    /// Wall-clock seconds.
    Seconds(u64),
    /// CPU seconds spent by the fuzzing thread (Linux: from `/proc/thread-self/schedstat`), so a
    /// run on a shared, loaded machine still does the stated amount of work. Where that file is
    /// unreadable the budget falls back to wall-clock seconds.
    CpuSeconds(u64),
    /// A number of executions (deterministic for a given seed: used by the tests).
    Execs(u64),
}

/// A panic found by [`fuzz`]: the input and the panic message.
#[derive(Debug, Clone)]
pub struct Crash {
    /// The input that panicked.
    pub input: Vec<u8>,
    /// The panic payload, when it was a string.
    pub message: String,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// Inputs executed.
    pub execs: u64,
    /// Corpus size at the end (seeds plus inputs with a new outcome class).
    pub corpus: usize,
    /// Distinct outcome classes seen (at most 2^18 are remembered).
    pub classes: usize,
    /// Executions whose outcome was accepted (starts with `ok`).
    pub accepted: u64,
    /// Slowest single execution.
    pub slowest: Duration,
    /// The first panic, which ends the run.
    pub crash: Option<Crash>,
}

/// Largest corpus kept: new classes beyond it are counted but not kept.
const MAX_CORPUS: usize = 4096;
/// Most outcome classes remembered.
const MAX_CLASSES: usize = 1 << 18;
/// Largest input produced by mutation (targets read small files; big ones only slow a run).
pub const MAX_INPUT: usize = 64 << 10;

/// Called with each input just before it runs (the binary records it for its allocation
/// ceiling and watchdog).
pub type BeforeRun<'a> = &'a mut dyn FnMut(&[u8]);

/// Fuzzes `target` for `budget` from PRNG seed `seed`, stopping at the first panic. Panics are
/// caught with `catch_unwind`, so the default panic hook still prints each one; callers that
/// want silence install their own hook.
pub fn fuzz(target: &mut dyn Target, budget: Budget, seed: u64, before: BeforeRun<'_>) -> Report {
    let mut rng = Rng::new(seed);
    let mut corpus: Vec<Vec<u8>> = target.seeds();
    assert!(!corpus.is_empty(), "target {} has no seeds", target.name());
    let dict = target.dictionary();
    let mut classes = HashSet::new();
    let mut report = Report {
        execs: 0,
        corpus: 0,
        classes: 0,
        accepted: 0,
        slowest: Duration::ZERO,
        crash: None,
    };
    let start = Instant::now();
    let cpu_start = thread_cpu_time();
    // Seeds run first, unmutated, so a broken seed is reported as what it is.
    let mut queue: Vec<Vec<u8>> = corpus.clone();
    loop {
        let done = match budget {
            Budget::Seconds(s) => start.elapsed() >= Duration::from_secs(s),
            // Reading /proc costs microseconds: look only every 64 executions.
            Budget::CpuSeconds(s) if report.execs.is_multiple_of(64) => {
                match (cpu_start, thread_cpu_time()) {
                    (Some(a), Some(b)) => b.saturating_sub(a) >= Duration::from_secs(s),
                    _ => start.elapsed() >= Duration::from_secs(s),
                }
            }
            Budget::CpuSeconds(_) => false,
            Budget::Execs(n) => report.execs >= n,
        };
        if done {
            break;
        }
        let input = queue.pop().unwrap_or_else(|| {
            let base = &corpus[rng.below(corpus.len())];
            let out = if rng.below(4) == 0 {
                target.mutate(base, &mut rng)
            } else {
                None
            };
            out.unwrap_or_else(|| mutate::mutate(base, &corpus, dict, &mut rng))
        });
        before(&input);
        let t = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| target.run(&input)));
        report.slowest = report.slowest.max(t.elapsed());
        report.execs += 1;
        match outcome {
            Ok(class) => {
                if class.starts_with("ok") {
                    report.accepted += 1;
                }
                // Messages that quote the input make most classes unique; past the cap they
                // are no longer recorded, so memory stays bounded on long runs.
                let new = if classes.len() < MAX_CLASSES {
                    classes.insert(class)
                } else {
                    !classes.contains(&class)
                };
                if new && corpus.len() < MAX_CORPUS {
                    corpus.push(input);
                }
            }
            Err(payload) => {
                let message = payload
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "non-string panic payload".into());
                report.crash = Some(Crash { input, message });
                break;
            }
        }
    }
    report.corpus = corpus.len();
    report.classes = classes.len();
    report
}

/// The outcome class of an error message: digits dropped, quoted text and everything after the
/// 60th character cut, so that one error path is one class whatever the values in it.
pub fn class_of(message: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    for c in message.chars() {
        match c {
            '"' | '`' | '\'' => {
                quoted = !quoted;
                out.push('"');
            }
            _ if quoted => {}
            c if c.is_ascii_digit() => {
                if !out.ends_with('#') {
                    out.push('#');
                }
            }
            c => out.push(c),
        }
        if out.len() >= 60 {
            break;
        }
    }
    out
}

/// The target named `name`, or `None`. Names: [`targets::NAMES`].
pub fn target(name: &str) -> Option<Box<dyn Target>> {
    match name {
        "spec" => Some(Box::new(targets::spec::SpecTarget)),
        "data" => Some(Box::new(targets::data::DataTarget::new())),
        "checkpoint" => Some(Box::new(targets::checkpoint::CheckpointTarget::new())),
        "wire" => Some(Box::new(targets::wire::WireTarget)),
        "safetensors" => Some(Box::new(targets::safetensors::SafetensorsTarget::new())),
        _ => None,
    }
}

/// CPU time the calling thread has run, from the first field of `/proc/thread-self/schedstat`
/// (nanoseconds on the CPU); `None` where that file does not exist (not Linux) or cannot be
/// parsed.
pub fn thread_cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
