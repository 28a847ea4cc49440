//! ringtrain-infer against the training crates: models built by `ringtrain_models`, exported
//! with `ringtrain_train::export`, loaded by the runtime. Over 1,000 steps the whole-sequence
//! forecast matches burn's within 1e-5 for every cell, 1–3 layers, uni- and bidirectional,
//! with and without an input projection; the stream stepped 1,000 times matches both; stepping
//! allocates nothing after warm-up (a counting global allocator watches); and what the runtime
//! does not run is refused by name.

use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_infer::{InferError, Network, Stream};
use ringtrain_models::{Batch, ForwardCtx, HeadKind, InputKind, Inputs, Model, flat};
use ringtrain_spec::{Activation, CellKind, ConvActivation, ConvSpec, ModelSpec};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashMap;

/// Counts allocations per thread (tests run on threads of their own).
struct Counting;

thread_local! {
    // const-initialized: reading it never allocates, so the allocator may use it.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

// SAFETY: forwards to the system allocator unchanged; only counts calls.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on as is.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const FEATURES: usize = 3;
const OUTPUTS: usize = 2;
const STEPS: usize = 1000;

fn spec(
    cell: CellKind,
    activation: Activation,
    layers: usize,
    bi: bool,
    projection: Option<usize>,
) -> ModelSpec {
    ModelSpec {
        cell,
        activation,
        layers,
        hidden: 6,
        bidirectional: bi,
        dropout: 0.0,
        embedding_dim: 4,
        projection,
        conv: Vec::new(),
        attention: None,
    }
}

fn export(model: &Model, activation: Activation) -> Vec<u8> {
    let act = match activation {
        Activation::Tanh => "tanh",
        Activation::Relu => "relu",
    };
    let metadata = HashMap::from([(
        "ringtrain.spec".to_string(),
        format!(r#"{{"model": {{"activation": "{act}"}}, "task": {{"kind": "forecast"}}}}"#),
    )]);
    let params = flat::flatten_params(model);
    ringtrain_train::export::serialize(model, &params, metadata, std::path::Path::new("m"))
        .unwrap()
        .bytes
}

fn burn_forecast(model: &Model, x: &[f32], steps: usize) -> Vec<f32> {
    let device = Device::flex();
    let batch = Batch {
        inputs: Inputs::Numeric(Tensor::<3>::from_data(
            TensorData::new(x[..steps * FEATURES].to_vec(), [1, steps, FEATURES]),
            &device,
        )),
        mask: Tensor::<2>::ones([1, steps], &device),
    };
    let ctx = ForwardCtx {
        train: false,
        dropout_seed: 0,
    };
    model
        .forward(batch, &ctx)
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn inputs() -> Vec<f32> {
    (0..STEPS * FEATURES)
        .map(|i| ((i as f32) * 0.017 + (i % 5) as f32).sin() * 0.9)
        .collect()
}

#[test]
fn runtime_matches_burn_over_1000_steps_and_streams_without_allocating() {
    let device = Device::flex();
    let x = inputs();
    let cells = [
        (CellKind::Rnn, Activation::Tanh),
        (CellKind::Rnn, Activation::Relu),
        (CellKind::Lstm, Activation::Tanh),
        (CellKind::Gru, Activation::Tanh),
    ];
    for (cell, activation) in cells {
        for layers in 1..=3 {
            for bi in [false, true] {
                for projection in [None, Some(5)] {
                    let what = format!(
                        "{cell:?}/{activation:?} layers={layers} bi={bi} projection={projection:?}"
                    );
                    let s = spec(cell, activation, layers, bi, projection);
                    let model = Model::new(
                        &s,
                        InputKind::Numeric { features: FEATURES },
                        HeadKind::Regression { outputs: OUTPUTS },
                        7,
                        &device,
                    )
                    .unwrap();
                    let net = Network::from_safetensors(&export(&model, activation)).unwrap();
                    assert_eq!(net.features(), FEATURES, "{what}");
                    assert_eq!(net.outputs(), OUTPUTS, "{what}");
                    assert_eq!(net.num_layers(), layers, "{what}");
                    assert_eq!(
                        net.parameters(),
                        flat::flatten_params(&model).len(),
                        "{what}"
                    );
                    let want = burn_forecast(&model, &x, STEPS);
                    let got = net.run(&x).unwrap();
                    let d = max_diff(&want, &got);
                    assert!(d <= 1e-5, "{what}: run differs from burn by {d:e}");
                    if bi {
                        assert!(matches!(Stream::new(&net), Err(InferError::Unsupported(_))));
                        continue;
                    }
                    let mut stream = Stream::new(&net).unwrap();
                    // Warm-up step, then no allocation for the remaining steps.
                    let last = stream.step(&x[..FEATURES]).unwrap().to_vec();
                    let first = burn_forecast(&model, &x, 1);
                    assert!(max_diff(&first, &last) <= 1e-5, "{what}: step 1");
                    let before = allocations();
                    let mut out = [0.0f32; OUTPUTS];
                    let mut at_100 = [0.0f32; OUTPUTS];
                    for (t, row) in x.chunks_exact(FEATURES).enumerate().skip(1) {
                        out.copy_from_slice(stream.step(row).unwrap());
                        if t == 99 {
                            at_100 = out;
                        }
                    }
                    let after = allocations();
                    assert!(
                        max_diff(&burn_forecast(&model, &x, 100), &at_100) <= 1e-5,
                        "{what}: step 100"
                    );
                    let d = max_diff(&want, &out);
                    assert!(d <= 1e-5, "{what}: stream differs from burn by {d:e}");
                    assert_eq!(
                        after,
                        before,
                        "{what}: {} allocations while stepping",
                        after - before
                    );
                }
            }
        }
    }
}

#[test]
fn what_the_runtime_does_not_run_is_refused_by_name() {
    let device = Device::flex();
    let mut s = spec(CellKind::Gru, Activation::Tanh, 1, false, None);
    s.conv = vec![ConvSpec {
        channels: 4,
        kernel: 3,
        stride: 1,
        activation: ConvActivation::Relu,
    }];
    let model = Model::new(
        &s,
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: OUTPUTS },
        1,
        &device,
    )
    .unwrap();
    let e = Network::from_safetensors(&export(&model, Activation::Tanh))
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("tensor \"conv0.") && e.contains("is not supported"),
        "{e}"
    );

    let plain = Model::new(
        &spec(CellKind::Gru, Activation::Tanh, 1, false, None),
        InputKind::Numeric { features: FEATURES },
        HeadKind::Regression { outputs: OUTPUTS },
        1,
        &device,
    )
    .unwrap();
    let bytes = export(&plain, Activation::Tanh);
    assert!(matches!(
        Network::from_safetensors(&bytes[..bytes.len() - 1]),
        Err(InferError::Format(_))
    ));
    let net = Network::from_safetensors(&bytes).unwrap();
    let e = Stream::new(&net)
        .unwrap()
        .step(&[0.0; 2])
        .map(|_| ())
        .unwrap_err();
    assert_eq!(e.to_string(), "step: expected 3 values, got 2");
    let e = net.run(&[0.0; 4]).unwrap_err();
    assert!(e.to_string().starts_with("sequence: expected"), "{e}");
}

#[test]
fn an_int8_export_computes_what_its_dequantized_weights_compute() {
    use ringtrain_train::export::{Precision, fake_quantize_int8, serialize_with};
    let device = Device::flex();
    let x = inputs();
    for (cell, layers, bi) in [(CellKind::Lstm, 2, false), (CellKind::Gru, 1, true)] {
        let s = spec(cell, Activation::Tanh, layers, bi, Some(5));
        let s = ModelSpec { hidden: 32, ..s };
        let model = Model::new(
            &s,
            InputKind::Numeric { features: FEATURES },
            HeadKind::Regression { outputs: OUTPUTS },
            5,
            &device,
        )
        .unwrap();
        let params = flat::flatten_params(&model);
        let path = std::path::Path::new("m");
        let f32_file =
            serialize_with(&model, &params, HashMap::new(), Precision::F32, path).unwrap();
        let int8_file =
            serialize_with(&model, &params, HashMap::new(), Precision::Int8, path).unwrap();
        let ratio = f32_file.bytes.len() as f64 / int8_file.bytes.len() as f64;
        // Small matrices pay 4 bytes of scale per row and keep f32 biases: 2.9x here (the
        // examples' ratios are in BENCHMARKS.md).
        assert!(ratio > 2.5, "{cell:?}: int8 only {ratio:.2}x smaller");
        let mut q = params.clone();
        fake_quantize_int8(&model, &mut q).unwrap();
        let dequantized = flat::load_params(model, &q).unwrap();
        let want = burn_forecast(&dequantized, &x, STEPS);
        let net = Network::from_safetensors(&int8_file.bytes).unwrap();
        let f32_net = Network::from_safetensors(&f32_file.bytes).unwrap();
        // The matrices stay int8 in RAM.
        let ram = f32_net.weight_bytes() as f64 / net.weight_bytes() as f64;
        assert!(
            ram > 2.5,
            "{cell:?}: int8 weights take only {ram:.2}x less RAM"
        );
        let got = net.run(&x).unwrap();
        let d = max_diff(&want, &got);
        assert!(
            d <= 1e-5,
            "{cell:?}: int8 runtime differs from its dequantized weights by {d:e}"
        );
    }
}
