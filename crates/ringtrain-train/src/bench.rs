//! The training-speed benchmark behind `ringtrain bench train`: full optimizer steps (forward,
//! backward, flat gradients, Adam, parameter reload) of a regression model on fixed random data,
//! the same work PyTorch's side-by-side script times (`bench/train_pytorch.py`).

use crate::error::TrainError;
use crate::learner::{Learner, NoHook};
use crate::optim::Optimizer;
use crate::task::{MseObjective, Targets};
use burn::prelude::*;
use burn::tensor::TensorData;
use rand::Rng;
use rand::SeedableRng;
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Inputs, Model};
use ringtrain_spec::{Activation, CellKind, ClipSpec, ModelSpec, OptimizerSpec};
use serde::Serialize;
use std::time::Instant;

/// What to time. The defaults are the standard config of DESIGN.md: 2 layers, input 32, hidden
/// 128, batch 64, sequence 50, Adam, MSE.
#[derive(Debug, Clone, Serialize)]
pub struct BenchConfig {
    /// Recurrent cell.
    pub cell: CellKind,
    /// Recurrent layers.
    pub layers: usize,
    /// Input features per step.
    pub input: usize,
    /// Hidden units.
    pub hidden: usize,
    /// Samples per step.
    pub batch: usize,
    /// Sequence length.
    pub seq: usize,
    /// Timed steps.
    pub steps: usize,
    /// Untimed warm-up steps.
    pub warmup: usize,
    /// Bidirectional layers.
    pub bidirectional: bool,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            cell: CellKind::Lstm,
            layers: 2,
            input: 32,
            hidden: 128,
            batch: 64,
            seq: 50,
            steps: 20,
            warmup: 3,
            bidirectional: false,
        }
    }
}

/// Timings of a benchmark run.
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    /// The configuration timed.
    pub config: BenchConfig,
    /// Trainable parameters.
    pub params: usize,
    /// Median milliseconds per optimizer step.
    pub median_ms: f64,
    /// Samples per second at the median step time.
    pub samples_per_sec: f64,
    /// Every timed step in milliseconds.
    pub step_ms: Vec<f64>,
}

/// Runs the benchmark on `device` (plain; autodiff is added here).
///
/// # Errors
/// Model construction or step errors (none expected for valid sizes).
pub fn bench_train(config: &BenchConfig, device: &Device) -> Result<BenchResult, TrainError> {
    let device = device.clone().autodiff();
    let spec = ModelSpec {
        cell: config.cell,
        activation: Activation::Tanh,
        layers: config.layers,
        hidden: config.hidden,
        bidirectional: config.bidirectional,
        dropout: 0.0,
        embedding_dim: 1,
        projection: None,
        conv: Vec::new(),
        attention: None,
    };
    let model = Model::new(
        &spec,
        InputKind::Numeric {
            features: config.input,
        },
        HeadKind::Regression { outputs: 1 },
        0,
        &device,
    )?;
    let params = ringtrain_models::flat::param_count(&model);
    let adam = OptimizerSpec::Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
    };
    let clip = ClipSpec {
        norm: None,
        value: None,
    };
    let mut learner = Learner::new(model, Optimizer::new(&adam, params), clip)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let (b, t, f) = (config.batch, config.seq, config.input);
    let x: Vec<f32> = (0..b * t * f)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let y: Vec<f32> = (0..b).map(|_| rng.random_range(-1.0..1.0)).collect();
    let x = Tensor::<3>::from_data(TensorData::new(x, [b, t, f]), &device);
    let y = Tensor::<2>::from_data(TensorData::new(y, [b, 1]), &device);
    let mask = Tensor::<2>::ones([b, t], &device);
    let ctx = ForwardCtx::eval();
    let mut step_ms = Vec::with_capacity(config.steps);
    for i in 0..config.warmup + config.steps {
        let batch = Batch {
            inputs: Inputs::Numeric(x.clone()),
            mask: mask.clone(),
        };
        let started = Instant::now();
        learner.step(
            &MseObjective,
            batch,
            Targets::Regression(y.clone()),
            &ctx,
            1e-3,
            &mut NoHook,
            (i as u64 + 1, 0),
        )?;
        if i >= config.warmup {
            step_ms.push(started.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut sorted = step_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let median_ms = if sorted.is_empty() {
        f64::NAN
    } else if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    Ok(BenchResult {
        config: config.clone(),
        params,
        median_ms,
        samples_per_sec: b as f64 / (median_ms / 1e3),
        step_ms,
    })
}
