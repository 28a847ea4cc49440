//! `ringtrain-infer MODEL --anomaly K` through the binary: rows stream in on stdin, each output
//! line carries the forecast, the row's score against the forecast made one row before (in
//! standard deviations of the validation residuals stored in the file) and a flag; a spike is
//! flagged, ordinary rows are not, and a file without residuals is refused with the reason.

use burn::tensor::Device;
use ringtrain_infer::{Network, Stream};
use ringtrain_models::{HeadKind, InputKind, Model, flat};
use ringtrain_spec::{Activation, CellKind, ModelSpec};
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const FITTED: &str = r#"{"kind":"series","state":{"kind":"zscore","features":[{"column":"a","shift":1.0,"scale":2.0},{"column":"b","shift":-3.0,"scale":4.0}],"targets":[{"column":"b","shift":-3.0,"scale":4.0}]}}"#;

/// A 1-layer LSTM forecaster of `b` from `(a, b)`, exported with the normalizer above and,
/// when given, `residuals` metadata.
fn export(residuals: Option<&str>) -> Vec<u8> {
    let device = Device::flex();
    let spec = ModelSpec {
        cell: CellKind::Lstm,
        activation: Activation::Tanh,
        layers: 1,
        hidden: 8,
        bidirectional: false,
        dropout: 0.0,
        embedding_dim: 4,
        projection: None,
        conv: Vec::new(),
        attention: None,
    };
    let model = Model::new(
        &spec,
        InputKind::Numeric { features: 2 },
        HeadKind::Regression { outputs: 1 },
        3,
        &device,
    )
    .unwrap();
    let mut metadata = HashMap::from([
        (
            "ringtrain.spec".to_string(),
            r#"{"model": {"activation": "tanh"}, "task": {"kind": "forecast"}}"#.to_string(),
        ),
        ("ringtrain.fitted".to_string(), FITTED.to_string()),
    ]);
    if let Some(r) = residuals {
        metadata.insert("ringtrain.residuals".to_string(), r.to_string());
    }
    let params = flat::flatten_params(&model);
    ringtrain_train::export::serialize(&model, &params, metadata, Path::new("m"))
        .unwrap()
        .bytes
}

/// Raw rows `(a, b)`: two smooth signals.
fn rows(n: usize) -> Vec<[f32; 2]> {
    (0..n)
        .map(|i| {
            let t = i as f32;
            [1.0 + 2.0 * (t * 0.1).sin(), -3.0 + 4.0 * (t * 0.07).cos()]
        })
        .collect()
}

fn run(model: &Path, args: &[&str], input: &str) -> (bool, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ringtrain-infer"))
        .arg(model)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A binary that refuses its arguments exits without reading stdin.
    if let Err(e) = child.stdin.take().unwrap().write_all(input.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_spike_is_flagged_and_ordinary_rows_are_not() {
    // "Validation": the one-step-ahead residuals of the model on the first 300 rows.
    let plain = export(None);
    let net = Network::from_safetensors(&plain).unwrap();
    let scaling = net.scaling().unwrap();
    let mut stream = Stream::new(&net).unwrap();
    let data = rows(600);
    let mut x = [0.0f32; 2];
    let mut previous: Option<f32> = None;
    let mut residuals = Vec::new();
    for row in &data[..300] {
        if let Some(p) = previous {
            residuals.push(f64::from(row[1] - p));
        }
        scaling.normalize(row, &mut x).unwrap();
        let mut y = stream.step(&x).unwrap().to_vec();
        scaling.denormalize(&mut y, &[row[1]]).unwrap();
        previous = Some(y[0]);
    }
    let n = residuals.len() as f64;
    let mean = residuals.iter().sum::<f64>() / n;
    let std = (residuals.iter().map(|r| (r - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt();
    let stats = format!(r#"{{"split":"val","samples":{n},"mean":[{mean}],"std":[{std}]}}"#);

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(&path, export(Some(&stats))).unwrap();
    // Rows 300..600 with one spike of 20 standard deviations at row 450.
    let spike = 150;
    let mut csv = String::from("a,b\n");
    for (i, row) in data[300..].iter().enumerate() {
        let b = if i == spike {
            row[1] + 20.0 * std as f32
        } else {
            row[1]
        };
        csv.push_str(&format!("{},{b}\n", row[0]));
    }
    let (ok, stdout, stderr) = run(&path, &["--anomaly", "4"], &csv);
    assert!(ok, "{stderr}");
    let lines: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(lines.len(), 300, "one line per row");
    // forecast, score, flag
    assert!(lines.iter().all(|l| l.len() == 3), "{stdout}");
    assert_eq!(
        lines[0][1], "",
        "the first row has no forecast to be scored against"
    );
    let flagged: Vec<usize> = (0..lines.len()).filter(|i| lines[*i][2] == "1").collect();
    assert!(flagged.contains(&spike), "spike not flagged: {flagged:?}");
    let z: f64 = lines[spike][1].parse().unwrap();
    assert!(z > 15.0, "spike scored {z}");
    // Ordinary rows: the residuals' own distribution, well inside 4 deviations (the row after
    // the spike may be flagged too: its forecast was made from the spike).
    let others: Vec<_> = flagged
        .iter()
        .filter(|i| **i != spike && **i != spike + 1)
        .collect();
    assert!(others.len() <= 3, "ordinary rows flagged: {others:?}");
    assert!(
        stderr.contains(&format!(
            "{} of 300 rows beyond 4 standard deviations",
            flagged.len()
        )),
        "{stderr}"
    );

    // Without --anomaly the output is the forecast alone, the same values.
    let (ok, plain_out, _) = run(&path, &[], &csv);
    assert!(ok);
    let first: Vec<&str> = plain_out
        .lines()
        .map(|l| l.split(',').next().unwrap())
        .collect();
    let with: Vec<&str> = lines.iter().map(|l| l[0]).collect();
    assert_eq!(first, with);
}

#[test]
fn anomaly_without_stored_residuals_or_with_a_bad_threshold_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    std::fs::write(&path, export(None)).unwrap();
    let (ok, _, stderr) = run(&path, &["--anomaly", "3"], "1,2\n");
    assert!(!ok);
    assert!(
        stderr.contains("--anomaly needs the validation residuals an export stores"),
        "{stderr}"
    );
    std::fs::write(
        &path,
        export(Some(
            r#"{"split":"val","samples":5,"mean":[0.0],"std":[1.0]}"#,
        )),
    )
    .unwrap();
    let (ok, _, stderr) = run(&path, &["--anomaly", "-1"], "1,2\n");
    assert!(!ok);
    assert!(stderr.contains("anomaly threshold -1"), "{stderr}");
    let (ok, _, stderr) = run(&path, &["--anomaly", "many"], "1,2\n");
    assert!(!ok);
    assert!(stderr.contains("--anomaly \"many\""), "{stderr}");
    std::fs::write(
        &path,
        export(Some(
            r#"{"split":"val","samples":5,"mean":[0.0],"std":[0.0]}"#,
        )),
    )
    .unwrap();
    let (ok, _, stderr) = run(&path, &["--anomaly", "3"], "1,2\n");
    assert!(!ok);
    assert!(stderr.contains("ringtrain.residuals"), "{stderr}");
}
