//! Per-step latency of an ONNX export in tract, for bench/edge_latency.sh: runs the graph on
//! one step (`[1, 1, features]`, batch 1) `STEPS` times after 1,000 warm-up runs and prints the
//! microseconds per run. The exported graph starts from a zero state each run, so a run is the
//! arithmetic of one streaming step (one cell update per layer plus the head).
//!
//! `cargo run -p ringtrain-train --example tract_step -- MODEL.onnx FEATURES STEPS`

// The example's output is its interface.
#![allow(clippy::print_stdout)]

use std::time::Instant;
use tract_onnx::prelude::{DatumExt, Framework, InferenceModelExt, IntoTValue, Tensor, tvec};
use tract_onnx::tract_core::model::IntoRunnable;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, features, steps] = args.as_slice() else {
        return Err("usage: tract_step MODEL.onnx FEATURES STEPS".into());
    };
    let (features, steps): (usize, usize) = (features.parse()?, steps.parse()?);
    let model = tract_onnx::onnx()
        .model_for_path(path)?
        .with_input_fact(0, f32::fact([1, 1, features]).into())?
        .into_optimized()?
        .into_runnable()?;
    let inputs: Vec<Tensor> = (0..64)
        .map(|i| {
            let x: Vec<f32> = (0..features)
                .map(|f| ((i * features + f) as f32 * 0.01).sin())
                .collect();
            Tensor::from_shape(&[1, 1, features], &x)
        })
        .collect::<Result<_, _>>()?;
    for i in 0..1000 {
        model.run(tvec![inputs[i % inputs.len()].clone().into_tvalue()])?;
    }
    let start = Instant::now();
    for i in 0..steps {
        let out = model.run(tvec![inputs[i % inputs.len()].clone().into_tvalue()])?;
        std::hint::black_box(out);
    }
    let per_step = start.elapsed().as_secs_f64() * 1e6 / steps.max(1) as f64;
    println!("{per_step:.3} us/step ({path})");
    Ok(())
}
