//! TLS through the public interfaces: a real coordinator and real worker processes on 127.0.0.1
//! with throwaway certificates (made at test time), driven by the `ringtrain` CLI. A data-parallel
//! job over TLS and over mutual TLS ends with the parameters of one process (the numerics contract
//! of `cluster.rs`); clients that speak plain text, present no certificate under mutual TLS, or
//! trust another CA are refused with errors that say so; `/metrics` answers over HTTPS only; bad
//! TLS settings fail at start naming the file or flag; a plain-text service on a network address
//! warns loudly.

// Tests report on stderr.
#![allow(clippy::print_stderr)]

mod common;

use common::services::{Cluster, Flags, Service};
use common::tls::{Pki, https_get};
use common::{assert_same_training, cluster_spec, ringtrain, run_train};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::Output;

/// The forecasting job of `cluster.rs` (dropout off, so a data-parallel run and one process
/// are comparable), two epochs.
fn spec(dir: &Path, name: &str, data: u32, batch: usize) -> PathBuf {
    cluster_spec(dir, name, data, batch, 2, "")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed, returning its stderr.
fn failed(what: &str, out: &Output) -> String {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "{what} should fail\nstdout:\n{}\nstderr:\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    eprintln!("{what}: {err}");
    err
}

/// Two workers train a 2-rank job over (mutual) TLS; it must end where one process ends.
fn tls_job_matches_one_process(cluster: &Cluster) {
    let dir = tempfile::tempdir().unwrap();
    let dp = spec(dir.path(), "dp", 2, 16);
    let single = spec(dir.path(), "single", 1, 16);
    let id = cluster.submit(&dp);
    let done = cluster.wait_job(&id, 180, |j| {
        j["state"] == "succeeded" || j["state"] == "failed"
    });
    assert_eq!(done["state"], "succeeded", "{done:#}\n{}", cluster.logs());
    assert_eq!(done["world"], 2);
    let report = run_train(&single);
    assert_same_training(
        "2 workers over TLS",
        &dir.path().join("runs/dp"),
        &json!({ "job": done }),
        &dir.path().join("runs/single"),
        &report,
    );
}

/// The coordinator's and a worker's `/metrics` addresses.
fn metrics_addrs(cluster: &Cluster) -> Vec<String> {
    let mut out = vec![
        cluster.coordinator.as_ref().unwrap().ready["metrics"]
            .as_str()
            .unwrap()
            .to_string(),
    ];
    out.push(
        cluster.workers[0].ready["metrics"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    out
}

/// A plain-text client of a TLS coordinator fails, and says TLS is the likely reason.
fn plaintext_client_is_refused(cluster: &Cluster) {
    let out = cluster.cli_with(&["workers"], &[]);
    let err = failed("plain-text client", &out);
    assert!(err.contains("TLS"), "{err}");
}

#[test]
fn a_tls_cluster_trains_like_one_process_and_refuses_plain_text() {
    let pki = Pki::new();
    let cluster = Cluster::start_with(2, pki.flags(false));
    tls_job_matches_one_process(&cluster);
    plaintext_client_is_refused(&cluster);
    // Without mutual TLS a client needs only the CA, and /metrics answers any HTTPS client.
    cluster.cli_ok(&["workers"]);
    for addr in metrics_addrs(&cluster) {
        let text = https_get(&addr, "/metrics", &pki, false).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("ringtrain_"),
            "{addr}: {text}"
        );
        // Plain HTTP gets no metrics.
        let plain = std::process::Command::new("curl")
            .args(["-s", "--max-time", "5", &format!("http://{addr}/metrics")])
            .output();
        if let Ok(plain) = plain {
            assert!(
                !String::from_utf8_lossy(&plain.stdout).contains("ringtrain_"),
                "plain HTTP answered on {addr}"
            );
        }
    }
    cluster.stop();
}

#[test]
fn a_mutual_tls_cluster_trains_like_one_process_and_refuses_clients_without_a_certificate() {
    let pki = Pki::new();
    let cluster = Cluster::start_with(2, pki.flags(true));
    tls_job_matches_one_process(&cluster);
    plaintext_client_is_refused(&cluster);

    // The CA alone is not enough under mutual TLS.
    let out = cluster.cli_with(&["workers"], &pki.client_flags(false));
    let err = failed("client without a certificate", &out);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // A client whose certificate (and trust) come from another CA is refused, and refuses too.
    let stranger = Pki::new();
    let out = cluster.cli_with(&["workers"], &stranger.client_flags(true));
    let err = failed("client of another CA", &out);
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    // /metrics: HTTPS with a certificate answers; without one the handshake is refused.
    for addr in metrics_addrs(&cluster) {
        let text = https_get(&addr, "/metrics", &pki, true).unwrap();
        assert!(
            text.starts_with("HTTP/1.1 200") && text.contains("ringtrain_"),
            "{addr}: {text}"
        );
        let refused = https_get(&addr, "/metrics", &pki, false);
        assert!(
            refused.as_ref().is_err() || !refused.as_ref().unwrap().contains("ringtrain_"),
            "{addr} answered a client without a certificate: {refused:?}"
        );
    }
    cluster.stop();
}

#[test]
fn a_worker_without_the_cluster_certificate_cannot_join_a_mutual_tls_cluster() {
    let pki = Pki::new();
    let cluster = Cluster::start_with(0, pki.flags(true));
    let stranger = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let out = ringtrain()
        .args(["worker", "--coordinator", &cluster.addr])
        .args(["--listen", "127.0.0.1:0", "--name", "stranger"])
        .args(stranger.flags(true).worker)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = failed("worker of another CA", &out);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let workers = cluster.json(&["workers"]);
    assert_eq!(workers.as_array().unwrap().len(), 0, "{workers:#}");
    cluster.stop();
}

#[test]
fn bad_tls_settings_fail_at_start_naming_the_flag_or_file() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let state = state.to_str().unwrap();
    let p = |p: &PathBuf| p.to_str().unwrap().to_string();
    let coordinator = |extra: &[String]| {
        ringtrain()
            .args(["coordinator", "--listen", "127.0.0.1:0", "--state", state])
            .args(extra)
            .output()
            .unwrap()
    };
    let err = failed(
        "certificate without key",
        &coordinator(&["--tls-cert".into(), p(&pki.cert)]),
    );
    assert!(err.contains("--tls-key"), "{err}");
    let err = failed(
        "mutual TLS without a CA",
        &coordinator(&[
            "--tls-cert".into(),
            p(&pki.cert),
            "--tls-key".into(),
            p(&pki.key),
            "--tls-require-client-cert".into(),
        ]),
    );
    assert!(err.contains("--tls-ca"), "{err}");
    let missing = dir.path().join("missing.pem");
    let err = failed(
        "missing CA file",
        &coordinator(&[
            "--tls-cert".into(),
            p(&pki.cert),
            "--tls-key".into(),
            p(&pki.key),
            "--tls-ca".into(),
            p(&missing),
        ]),
    );
    assert!(err.contains("missing.pem"), "{err}");
    // A key given as the certificate: named, and the key never echoed.
    let err = failed(
        "key as certificate",
        &coordinator(&[
            "--tls-cert".into(),
            p(&pki.key),
            "--tls-key".into(),
            p(&pki.key),
        ]),
    );
    assert!(
        err.contains("key.pem") && !err.contains("PRIVATE KEY-----\n"),
        "{err}"
    );
    // A worker needs its own certificate (its peer port serves) as well as the CA.
    let out = ringtrain()
        .args([
            "worker",
            "--coordinator",
            "127.0.0.1:1",
            "--listen",
            "127.0.0.1:0",
        ])
        .args(pki.client_flags(false))
        .output()
        .unwrap();
    let err = failed("worker with only a CA", &out);
    assert!(err.contains("--tls-cert"), "{err}");
    // A client given an https:// address but no CA.
    let out = ringtrain()
        .args(["workers", "--coordinator", "https://127.0.0.1:1"])
        .output()
        .unwrap();
    let err = failed("https without a CA", &out);
    assert!(err.contains("--tls-ca"), "{err}");
}

#[test]
fn plain_text_services_on_a_network_address_warn_loudly() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.db");
    let plain = Service::start(
        &[
            "coordinator",
            "--listen",
            "0.0.0.0:0",
            "--state",
            state.to_str().unwrap(),
        ]
        .map(String::from),
        dir.path().join("plain.log"),
    );
    // The log is written before the ready line.
    let log = plain.log_text();
    assert!(
        log.contains("SECURITY") && log.contains("WITHOUT TLS"),
        "{log}"
    );
    plain.stop();

    let pki = Pki::new();
    let flags = Flags {
        coordinator: pki.flags(false).coordinator,
        ..Flags::default()
    };
    let mut args: Vec<String> = ["coordinator", "--listen", "0.0.0.0:0", "--state"]
        .map(String::from)
        .to_vec();
    args.push(dir.path().join("tls.db").to_str().unwrap().to_string());
    args.extend(flags.coordinator);
    let secure = Service::start(&args, dir.path().join("tls.log"));
    let log = secure.log_text();
    assert!(!log.contains("SECURITY"), "{log}");
    secure.stop();

    // Loopback without TLS is the quiet default (what `ringtrain local` runs).
    let quiet = Service::start(
        &[
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--state",
            dir.path().join("quiet.db").to_str().unwrap(),
        ]
        .map(String::from),
        dir.path().join("quiet.log"),
    );
    let log = quiet.log_text();
    assert!(!log.contains("SECURITY"), "{log}");
    quiet.stop();
}
