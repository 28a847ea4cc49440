//! The crate graph is the architecture (ARCHITECTURE.md): each crate may depend only on the
//! ringtrain crates listed here, and only the listed crates may use burn. Checked with
//! `cargo metadata` so a new dependency edge fails the tests instead of creeping in.

use std::collections::BTreeMap;

/// Allowed internal dependencies (normal, not dev) of each crate.
const ALLOWED: &[(&str, &[&str])] = &[
    ("ringtrain-core", &[]),
    ("ringtrain-spec", &["ringtrain-core"]),
    ("ringtrain-data", &["ringtrain-core", "ringtrain-spec"]),
    ("ringtrain-models", &["ringtrain-core", "ringtrain-spec"]),
    (
        "ringtrain-train",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-models",
        ],
    ),
    ("ringtrain-proto", &["ringtrain-core"]),
    (
        "ringtrain-collective",
        &["ringtrain-core", "ringtrain-proto"],
    ),
    // The Prometheus endpoint both services serve their series on (HTTP only, no ringtrain deps).
    ("ringtrain-telemetry", &[]),
    // The coordinator schedules and records; it never trains, so no models/train/burn. It mounts
    // the collective library's rendezvous service so ranks meet at the coordinator.
    (
        "ringtrain-coordinator",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-proto",
            "ringtrain-collective",
            "ringtrain-telemetry",
        ],
    ),
    (
        "ringtrain-worker",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-models",
            "ringtrain-train",
            "ringtrain-proto",
            "ringtrain-collective",
            "ringtrain-telemetry",
        ],
    ),
    (
        "ringtrain-cli",
        &[
            "ringtrain-core",
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-models",
            "ringtrain-train",
            "ringtrain-proto",
            "ringtrain-collective",
            "ringtrain-coordinator",
            "ringtrain-worker",
        ],
    ),
    // Fuzz targets call the readers they test; nothing depends on this crate.
    (
        "ringtrain-fuzz",
        &[
            "ringtrain-spec",
            "ringtrain-data",
            "ringtrain-train",
            "ringtrain-proto",
            "ringtrain-collective",
        ],
    ),
];

/// Crates allowed to depend on burn (the collective library and the future coordinator must not).
const BURN_USERS: &[&str] = &[
    "ringtrain-models",
    "ringtrain-train",
    "ringtrain-worker",
    "ringtrain-cli",
];

#[test]
fn crate_dependencies_follow_the_architecture() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for package in meta["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        let Some(ok) = allowed.get(name) else {
            problems.push(format!("{name}: not in the architecture table (add it to tests/architecture.rs and ARCHITECTURE.md)"));
            continue;
        };
        for dep in package["dependencies"].as_array().unwrap() {
            if dep["kind"].as_str() == Some("dev") {
                continue;
            }
            let dep_name = dep["name"].as_str().unwrap();
            if dep_name.starts_with("ringtrain-") && !ok.contains(&dep_name) {
                problems.push(format!("{name} must not depend on {dep_name}"));
            }
            if dep_name == "burn" && !BURN_USERS.contains(&name) {
                problems.push(format!("{name} must not depend on burn"));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
