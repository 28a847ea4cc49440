//! Training-step speed of our fused recurrent layers vs burn-nn's modules on the standard config
//! (2 layers, input 32, hidden 128, batch 64, sequence 50, Adam, MSE), flex backend.
//!
//! Run with one thread: `RAYON_NUM_THREADS=1 cargo run --release -p ringtrain-models --example
//! bench_cells [-- lstm|gru|rnn ...] [--steps N]`.

#![allow(clippy::print_stdout)]

use std::time::Instant;

use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use ringtrain_models::{
    Batch, ForwardCtx, HeadKind, InputKind, Inputs, Model, RecurrentImpl, loss,
};
use ringtrain_spec::{Activation, CellKind, ModelSpec};

const BATCH: usize = 64;
const SEQ: usize = 50;
const FEATURES: usize = 32;

/// Median seconds per step: (total, forward, backward, optimizer).
fn bench(cell: CellKind, imp: RecurrentImpl, steps: usize) -> [f64; 4] {
    let device = Device::flex().autodiff();
    let spec = ModelSpec {
        cell,
        activation: Activation::Tanh,
        layers: 2,
        hidden: 128,
        bidirectional: false,
        dropout: 0.0,
        embedding_dim: 64,
        projection: None,
        conv: Vec::new(),
        attention: None,
    };
    let mut model = Model::new(
        &spec,
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: 1 },
        7,
        &device,
    )
    .expect("standard config is valid")
    .with_recurrent_impl(imp);
    let mut optim = AdamConfig::new().init();
    let x = Tensor::<3>::random(
        [BATCH, SEQ, FEATURES],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let y = Tensor::<2>::random([BATCH, 1], Distribution::Normal(0.0, 1.0), &device);
    let mask = Tensor::<2>::ones([BATCH, SEQ], &device);
    let ctx = ForwardCtx {
        train: true,
        dropout_seed: 0,
    };
    let mut times: [Vec<f64>; 4] = Default::default();
    for step in 0..steps + 2 {
        let start = Instant::now();
        let batch = Batch {
            inputs: Inputs::Numeric(x.clone()),
            mask: mask.clone(),
        };
        let pred = model.forward(batch, &ctx);
        let l = loss::mse(pred, y.clone());
        // flex is eager; reading the loss only makes sure nothing is left pending.
        let _ = l.to_data();
        let t_fwd = start.elapsed().as_secs_f64();
        let grads = GradientsParams::from_grads(l.backward(), &model);
        let t_bwd = start.elapsed().as_secs_f64();
        model = optim.step(1e-3, model, grads);
        let t_all = start.elapsed().as_secs_f64();
        if step >= 2 {
            for (v, t) in times
                .iter_mut()
                .zip([t_all, t_fwd, t_bwd - t_fwd, t_all - t_bwd])
            {
                v.push(t);
            }
        }
    }
    times.map(|mut v| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let steps = args
        .iter()
        .position(|a| a == "--steps")
        .and_then(|i| args.get(i + 1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let mut cells: Vec<CellKind> = args
        .iter()
        .filter_map(|a| match a.as_str() {
            "lstm" => Some(CellKind::Lstm),
            "gru" => Some(CellKind::Gru),
            "rnn" => Some(CellKind::Rnn),
            _ => None,
        })
        .collect();
    if cells.is_empty() {
        cells = vec![CellKind::Lstm, CellKind::Gru, CellKind::Rnn];
    }
    println!(
        "cell  impl     ms/step  samples/s   fwd ms  bwd ms  adam ms   (medians of {steps} steps)"
    );
    for cell in cells {
        for (name, imp) in [
            ("kernel", RecurrentImpl::Kernel),
            ("burn-ops", RecurrentImpl::BurnOps),
            ("burn-nn", RecurrentImpl::BurnNnReference),
        ] {
            let [s, f, b, o] = bench(cell, imp, steps);
            println!(
                "{:<5} {:<8} {:>7.1} {:>10.0} {:>8.1} {:>7.1} {:>8.1}",
                format!("{cell:?}").to_lowercase(),
                name,
                s * 1e3,
                BATCH as f64 / s,
                f * 1e3,
                b * 1e3,
                o * 1e3
            );
        }
    }
}
