//! `ringtrain-infer MODEL.safetensors`: the device-side example. It reads raw sensor rows from
//! stdin (comma-separated, one value per feature in the spec's order; a first line that is
//! not numbers is taken as a header), feeds each to a [`Stream`] and prints the forecast after
//! it, in raw units when the export carries its normalizer. The state carries over the whole
//! input, as in a long-running device. With `--anomaly K` each line also carries the row's
//! score — how many standard deviations of the validation residuals (stored at export) its
//! actual targets are from the forecast made one row before — and a `1` flag beyond `K`.
//!
//! `ringtrain-infer --bench [STEPS]`: per-step latency of the runtime at batch 1 for a 1-layer
//! LSTM 64 and a 2-layer LSTM 128 (4 input features, 1 output), with the model's size and one
//! stream's RAM. Their weights are random (latency does not depend on them), written in the
//! export's layout and loaded like an export. `ringtrain-infer --bench STEPS MODEL` times a
//! given export the same way (bench/edge_latency.sh runs it beside onnxruntime and tract).

// The binary's output is its interface.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use ringtrain_infer::{Detector, Network, Stream};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Instant;

const FEATURES: usize = 4;

/// A deterministic pseudo-random sequence in [-0.1, 0.1).
fn values(n: usize, seed: u64) -> Vec<u8> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
    (0..n)
        .flat_map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let v = ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 0.2;
            v.to_le_bytes()
        })
        .collect()
}

fn lstm_file(layers: usize, hidden: usize) -> Vec<u8> {
    let g = 4 * hidden;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for l in 0..layers {
        let input = if l == 0 { FEATURES } else { hidden };
        let seed = l as u64 * 10;
        tensors.push((
            format!("rnn.weight_ih_l{l}"),
            vec![g, input],
            values(g * input, seed),
        ));
        tensors.push((
            format!("rnn.weight_hh_l{l}"),
            vec![g, hidden],
            values(g * hidden, seed + 1),
        ));
        tensors.push((format!("rnn.bias_ih_l{l}"), vec![g], values(g, seed + 2)));
        tensors.push((format!("rnn.bias_hh_l{l}"), vec![g], values(g, seed + 3)));
    }
    tensors.push((
        "head.linear.weight".into(),
        vec![1, hidden],
        values(hidden, 99),
    ));
    tensors.push(("head.linear.bias".into(), vec![1], values(1, 98)));
    let views: Vec<(String, TensorView<'_>)> = tensors
        .iter()
        .map(|(n, s, d)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), d).expect("sizes match"),
            )
        })
        .collect();
    safetensors::serialize(views, None).expect("serializable")
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = || {
        eprintln!(
            "usage: ringtrain-infer MODEL.safetensors [--anomaly K] < rows.csv | ringtrain-infer --bench [STEPS [MODEL.safetensors]]"
        );
        ExitCode::from(2)
    };
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["--bench", steps, model] => match (steps.parse(), bench_file(model)) {
            (Ok(steps), Ok(net)) => {
                let (per_step, state) = time_steps(&net, steps);
                println!("{per_step:.3} us/step, {state} bytes of stream state ({model})");
                ExitCode::SUCCESS
            }
            (Err(_), _) => usage(),
            (_, Err(e)) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        },
        ["--bench", rest @ ..] => {
            bench(rest.first().and_then(|s| s.parse().ok()).unwrap_or(200_000));
            ExitCode::SUCCESS
        }
        [path, rest @ ..] if !path.starts_with('-') => {
            let anomaly = match rest {
                [] => None,
                ["--anomaly", k] => match k.parse::<f64>() {
                    Ok(k) => Some(k),
                    Err(_) => {
                        eprintln!("error: --anomaly {k:?}: not a number of standard deviations");
                        return ExitCode::from(2);
                    }
                },
                _ => return usage(),
            };
            match stream_stdin(path, anomaly) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        _ => usage(),
    }
}

/// Streams stdin's rows through the model, printing each forecast (raw units when the export
/// has its normalizer); with `anomaly = Some(K)` each line also gets the row's score (`|z|` of
/// its one-step-ahead residual, empty for the first row) and `1` when it exceeds `K`, else `0`,
/// and a count of flagged rows goes to stderr at the end.
fn stream_stdin(path: &str, anomaly: Option<f64>) -> Result<(), String> {
    use std::io::Write;
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    let net = Network::from_safetensors(&bytes).map_err(|e| format!("{path}: {e}"))?;
    let mut stream = Stream::new(&net).map_err(|e| format!("{path}: {e}"))?;
    let positions = net.scaling().and_then(|s| s.target_positions());
    let mut detector = match anomaly {
        None => None,
        Some(k) => {
            let residuals = net.residuals().ok_or_else(|| {
                format!(
                    "{path}: --anomaly needs the validation residuals an export stores                      (ringtrain.residuals); export again where the training data is readable"
                )
            })?;
            if positions.is_none_or(|p| p.len() != residuals.targets()) {
                return Err(format!(
                    "{path}: --anomaly needs every target among the input columns, to read                      its actual value from each row"
                ));
            }
            Some(Detector::new(residuals.clone(), k).map_err(|e| e.to_string())?)
        }
    };
    let delta = net.scaling().is_some_and(|s| s.is_delta());
    if delta && positions.is_none() {
        return Err(format!(
            "{path}: a delta-mode forecaster needs every target among the input columns"
        ));
    }
    let positions = positions.unwrap_or(&[]);
    let mut x = vec![0.0f32; net.features()];
    let mut y = vec![0.0f32; net.outputs()];
    let mut actual = vec![0.0f32; positions.len()];
    let (mut rows, mut flagged) = (0usize, 0usize);
    let mut out = std::io::stdout().lock();
    for (i, line) in std::io::stdin().lock().lines().enumerate() {
        let line = line.map_err(|e| format!("stdin: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let row: Result<Vec<f32>, _> = line.split(',').map(|v| v.trim().parse::<f32>()).collect();
        let row = match row {
            Ok(r) => r,
            Err(_) if i == 0 => continue,
            Err(e) => {
                let snippet: String = line.chars().take(40).collect();
                return Err(format!("stdin:{}: {e} in {snippet:?}", i + 1));
            }
        };
        let fail = |e: ringtrain_infer::InferError| format!("stdin:{}: {e}", i + 1);
        match net.scaling() {
            Some(s) => s.normalize(&row, &mut x).map_err(fail)?,
            None if row.len() == x.len() => x.copy_from_slice(&row),
            None => {
                return Err(format!(
                    "stdin:{}: expected {} values, got {}",
                    i + 1,
                    x.len(),
                    row.len()
                ));
            }
        }
        // `normalize` checked the row's width, so every position is in it.
        for (a, p) in actual.iter_mut().zip(positions) {
            *a = row[*p];
        }
        y.copy_from_slice(stream.step(&x).map_err(fail)?);
        if let Some(s) = net.scaling() {
            s.denormalize(&mut y, &actual).map_err(fail)?;
        }
        let mut text: Vec<String> = y.iter().map(|v| format!("{v}")).collect();
        if let Some(d) = &mut detector {
            rows += 1;
            match d.observe(&actual, &y).map_err(fail)? {
                None => text.extend([String::new(), "0".into()]),
                Some(score) => {
                    flagged += usize::from(score.anomaly);
                    text.extend([
                        format!("{:.3}", score.z),
                        if score.anomaly { "1" } else { "0" }.into(),
                    ]);
                }
            }
        }
        writeln!(out, "{}", text.join(",")).map_err(|e| format!("stdout: {e}"))?;
    }
    if let (Some(k), true) = (anomaly, detector.is_some()) {
        eprintln!(
            "{flagged} of {rows} rows beyond {k} standard deviations of the validation residuals"
        );
    }
    Ok(())
}

fn bench_file(path: &str) -> Result<Network, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{path}: {e}"))?;
    Network::from_safetensors(&bytes).map_err(|e| format!("{path}: {e}"))
}

/// Microseconds per [`Stream::step`] of `net` at batch 1 over `steps` steps (after 1,000 steps
/// of warm-up), and the stream's state bytes.
fn time_steps(net: &Network, steps: usize) -> (f64, usize) {
    let features = net.features();
    let mut stream = Stream::new(net).expect("a unidirectional model");
    let x: Vec<Vec<f32>> = (0..1024)
        .map(|i| {
            (0..features)
                .map(|f| ((i * features + f) as f32 * 0.01).sin())
                .collect()
        })
        .collect();
    let mut sink = 0.0f32;
    for row in x.iter().take(1000) {
        sink += stream.step(row).expect("right width")[0];
    }
    let start = Instant::now();
    for i in 0..steps {
        sink += stream.step(&x[i % x.len()]).expect("right width")[0];
    }
    let per_step = start.elapsed().as_secs_f64() * 1e6 / steps.max(1) as f64;
    std::hint::black_box(sink);
    (per_step, stream.state_bytes())
}

fn bench(steps: usize) {
    println!("| model | parameters | fp32 file bytes | stream RAM bytes | µs/step (batch 1) |");
    println!("|---|---|---|---|---|");
    for (layers, hidden) in [(1, 64), (2, 128)] {
        let bytes = lstm_file(layers, hidden);
        let net = Network::from_safetensors(&bytes).expect("a valid file");
        let (per_step, state) = time_steps(&net, steps);
        println!(
            "| {layers}-layer LSTM {hidden} | {} | {} | {state} | {per_step:.2} |",
            net.parameters(),
            bytes.len(),
        );
    }
}
