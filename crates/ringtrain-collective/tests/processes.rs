//! Fault tests with real processes on 127.0.0.1 over gRPC: a rank killed with SIGKILL mid
//! all-reduce, mismatched lengths, and a rank that never joins. Every surviving process must exit
//! with an error naming the culprit, within the deadline.
//!
//! Time bounds are on what each rank process measures itself (the failing call's duration, from
//! its `ERROR after MS ms` line), never on wall time that includes process start-up, and carry a
//! margin that a loaded 2-core machine's scheduling delays fit in.

use ringtrain_collective::rendezvous;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const DEADLINE_MS: u64 = 3000;
/// What scheduling on a loaded machine may add to a deadline before the failure is reported.
const MARGIN_MS: u64 = 5000;
/// A process still running after this long hangs (far beyond any deadline in these tests).
const HANG_LIMIT: Duration = Duration::from_secs(60);

fn spawn(rank: u32, world: u32, rdv: &str, session: &str, mode: &str, elements: usize) -> Child {
    Command::new(env!("CARGO_BIN_EXE_collective-rank"))
        .args(["--rank", &rank.to_string(), "--world", &world.to_string()])
        .args(["--rendezvous", rdv, "--session", session, "--mode", mode])
        .args([
            "--elements",
            &elements.to_string(),
            "--deadline-ms",
            &DEADLINE_MS.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn collective-rank")
}

/// Waits for a child (at most `limit`) and returns (success, stderr).
fn finish(mut child: Child, limit: Duration) -> (bool, String) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            return (status.success(), err);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("process did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_ready(child: &mut Child) {
    let mut line = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "READY");
}

/// Runs `f` with a rendezvous server on a background runtime.
fn with_rendezvous(f: impl FnOnce(&str)) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let handle = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        rendezvous::spawn(listener).unwrap()
    });
    f(&handle.addr().to_string());
    drop(handle);
}

/// How long the failing call ran, from a rank's `ERROR after MS ms: ...` line.
fn failed_after(err: &str) -> Duration {
    let ms = err
        .split_once("ERROR after ")
        .and_then(|(_, rest)| rest.split_once(" ms"))
        .and_then(|(ms, _)| ms.parse().ok())
        .unwrap_or_else(|| panic!("no `ERROR after MS ms` line in: {err}"));
    Duration::from_millis(ms)
}

/// The failing call ended within the deadline plus the scheduling margin.
fn assert_within_deadline(err: &str) {
    let took = failed_after(err);
    assert!(
        took <= Duration::from_millis(DEADLINE_MS + MARGIN_MS),
        "failed after {took:?}, deadline {DEADLINE_MS} ms + margin {MARGIN_MS} ms: {err}"
    );
}

#[test]
fn killed_rank_fails_every_survivor_naming_it() {
    with_rendezvous(|rdv| {
        let world = 4;
        let mut children: Vec<Child> = (0..world)
            .map(|r| spawn(r, world, rdv, "kill", "loop", 2_000_000))
            .collect();
        children.iter_mut().for_each(wait_ready);
        std::thread::sleep(Duration::from_millis(300));
        let mut victim = children.remove(2);
        victim.kill().unwrap(); // SIGKILL
        let _ = victim.wait();
        for child in children {
            let (ok, err) = finish(child, HANG_LIMIT);
            assert!(!ok, "survivor exited cleanly");
            assert!(err.contains("rank 2"), "error does not name rank 2: {err}");
            // The all-reduce that failed started before the kill, so this bounds the time from
            // the kill to the survivor's error too.
            assert_within_deadline(&err);
        }
    });
}

#[test]
fn mismatched_lengths_name_both_ranks() {
    with_rendezvous(|rdv| {
        let children: Vec<Child> = (0..3)
            .map(|r| {
                spawn(
                    r,
                    3,
                    rdv,
                    "mismatch",
                    "once",
                    if r == 1 { 1000 } else { 999 },
                )
            })
            .collect();
        for child in children {
            let (ok, err) = finish(child, HANG_LIMIT);
            assert!(!ok);
            assert!(err.contains("fingerprint mismatch"), "{err}");
            assert_within_deadline(&err);
            assert!(
                err.contains("1000 elements") && err.contains("999 elements"),
                "{err}"
            );
            assert!(
                err.contains("rank 1") && (err.contains("rank 0") || err.contains("rank 2")),
                "{err}"
            );
        }
    });
}

#[test]
fn rank_that_never_joins_times_out_naming_it() {
    with_rendezvous(|rdv| {
        let children: Vec<Child> = [0, 1, 3]
            .iter()
            .map(|r| spawn(*r, 4, rdv, "absent", "once", 10))
            .collect();
        for child in children {
            let (ok, err) = finish(child, HANG_LIMIT);
            assert!(!ok);
            assert!(err.contains("never joined") && err.contains("[2]"), "{err}");
            // Not an early give-up: each rank waited out the whole setup deadline, then failed.
            let took = failed_after(&err);
            assert!(
                took >= Duration::from_millis(DEADLINE_MS),
                "gave up after {took:?}, before the {DEADLINE_MS} ms deadline: {err}"
            );
            assert_within_deadline(&err);
        }
    });
}

#[test]
fn healthy_world_completes() {
    with_rendezvous(|rdv| {
        let children: Vec<Child> = (0..3)
            .map(|r| spawn(r, 3, rdv, "ok", "once", 300_000))
            .collect();
        for child in children {
            let (ok, err) = finish(child, HANG_LIMIT);
            assert!(ok, "{err}");
        }
    });
}
