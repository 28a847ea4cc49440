//! Every target runs a fixed number of mutated inputs from a fixed seed without a panic, and its
//! seeds reach the accepting path (so a fuzz run exercises the readers, not only their first
//! error check).

use ringtrain_fuzz::{Budget, fuzz, target, targets::NAMES};

#[test]
fn every_target_survives_a_short_deterministic_run() {
    for name in NAMES {
        let mut t = target(name).expect("known target");
        let report = fuzz(t.as_mut(), Budget::Execs(400), 42, &mut |_: &[u8]| {});
        if let Some(c) = &report.crash {
            panic!(
                "{name}: panic {:?} on input {:?}",
                c.message,
                String::from_utf8_lossy(&c.input)
            );
        }
        assert_eq!(report.execs, 400, "{name}");
        assert!(
            report.accepted > 0,
            "{name}: no input was accepted: {report:?}"
        );
        assert!(
            report.classes > 2,
            "{name}: mutations reached no error path: {report:?}"
        );
    }
}

#[test]
fn every_seed_is_accepted() {
    for name in NAMES {
        let mut t = target(name).expect("known target");
        for (i, seed) in t.seeds().into_iter().enumerate() {
            let outcome = t.run(&seed);
            assert!(outcome.starts_with("ok"), "{name} seed {i}: {outcome}");
        }
    }
}

/// A CPU-time budget counts the fuzzing thread's time on the CPU: the run ends once one CPU
/// second has been spent, not before (where /proc is readable, i.e. on Linux).
#[test]
fn a_cpu_budget_ends_after_that_much_cpu_time() {
    let Some(before) = ringtrain_fuzz::thread_cpu_time() else {
        return; // not Linux: the budget falls back to wall-clock seconds
    };
    let mut t = target("spec").expect("spec target");
    let report = fuzz(t.as_mut(), Budget::CpuSeconds(1), 7, &mut |_: &[u8]| {});
    let spent = ringtrain_fuzz::thread_cpu_time().expect("still readable") - before;
    assert!(report.crash.is_none());
    assert!(
        spent >= std::time::Duration::from_secs(1),
        "stopped after {spent:?} of CPU"
    );
}
