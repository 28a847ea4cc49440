//! Per-step latency of an ONNX export in tract, for bench/edge_latency.sh: runs the graph on
//! one step (`[1, 1, features]`, batch 1) `STEPS` times after 1,000 warm-up runs and prints the
//! microseconds per run. A graph exported with `--onnx-state` (inputs `state_h{k}` /
//! `state_c{k}` of `[1, 1, HIDDEN]`) gets its state outputs fed back, so it streams like a
//! device; a graph without state inputs starts from zeros every run.
//!
//! `cargo run -p ringtrain-train --example tract_step -- MODEL.onnx FEATURES HIDDEN STEPS`

// The example's output is its interface.
#![allow(clippy::print_stdout)]

use std::time::Instant;
use tract_onnx::prelude::{
    DatumExt, Framework, InferenceModelExt, IntoTValue, TValue, TVec, Tensor, tvec,
};
use tract_onnx::tract_core::model::IntoRunnable;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [path, features, hidden, steps] = args.as_slice() else {
        return Err("usage: tract_step MODEL.onnx FEATURES HIDDEN STEPS".into());
    };
    let (features, hidden, steps): (usize, usize, usize) =
        (features.parse()?, hidden.parse()?, steps.parse()?);
    let mut model = tract_onnx::onnx().model_for_path(path)?;
    let states = model.inputs.len() - 1;
    model = model.with_input_fact(0, f32::fact([1, 1, features]).into())?;
    for i in 0..states {
        model = model.with_input_fact(i + 1, f32::fact([1, 1, hidden]).into())?;
    }
    let model = model.into_optimized()?.into_runnable()?;
    let inputs: Vec<Tensor> = (0..64)
        .map(|i| {
            let x: Vec<f32> = (0..features)
                .map(|f| ((i * features + f) as f32 * 0.01).sin())
                .collect();
            Tensor::from_shape(&[1, 1, features], &x)
        })
        .collect::<Result<_, _>>()?;
    let zeros = Tensor::from_shape(&[1, 1, hidden], &vec![0.0f32; hidden])?;
    let mut state: Vec<TValue> = (0..states).map(|_| zeros.clone().into_tvalue()).collect();
    let mut step = |i: usize| -> Result<(), Box<dyn std::error::Error>> {
        let mut feed: TVec<TValue> = tvec![inputs[i % inputs.len()].clone().into_tvalue()];
        feed.extend(state.drain(..));
        let mut out = model.run(feed)?;
        state = out.drain(1..).collect();
        std::hint::black_box(&out);
        Ok(())
    };
    for i in 0..1000 {
        step(i)?;
    }
    let start = Instant::now();
    for i in 0..steps {
        step(i)?;
    }
    let per_step = start.elapsed().as_secs_f64() * 1e6 / steps.max(1) as f64;
    println!("{per_step:.3} us/step ({path}, {states} state tensors carried)");
    Ok(())
}
