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
