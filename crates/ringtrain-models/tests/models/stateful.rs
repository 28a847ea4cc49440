//! Carried recurrent state (truncated BPTT): a token sequence fed in two chunks, the second
//! starting from the first's final state, gives the outputs and final state of one run over the
//! whole sequence; the kernel and the burn-ops path agree on outputs, states and the gradients
//! of a chunk that starts from a non-zero state; those gradients match finite differences.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use ringtrain_models::{
    Batch, ForwardCtx, HeadKind, InputKind, Inputs, Model, RecurrentImpl, RecurrentState, flat,
};

use crate::*;

const VOCAB: usize = 9;

fn lm(cell: ringtrain_spec::CellKind, act: ringtrain_spec::Activation, device: &Device) -> Model {
    let s = spec(cell, act, 2, 5, false);
    Model::new(
        &s,
        InputKind::Tokens { vocab: VOCAB },
        HeadKind::NextToken { vocab: VOCAB },
        17,
        device,
    )
    .expect("valid language model")
}

fn ids(batch: usize, time: usize) -> Vec<i64> {
    values(batch * time, 23)
        .iter()
        .map(|v| ((v + 1.0) * 4.4) as i64 % VOCAB as i64)
        .collect()
}

/// Steps `range` of every row of a `[batch, time]` id matrix.
fn token_batch(all: &[i64], time: usize, range: std::ops::Range<usize>, device: &Device) -> Batch {
    let batch = all.len() / time;
    let sub: Vec<i64> = (0..batch)
        .flat_map(|b| all[b * time + range.start..b * time + range.end].to_vec())
        .collect();
    let t = range.len();
    Batch {
        inputs: Inputs::Tokens(Tensor::<2, Int>::from_data(
            TensorData::new(sub, [batch, t]),
            device,
        )),
        mask: Tensor::ones([batch, t], device),
    }
}

fn states(s: &RecurrentState) -> Vec<f32> {
    s.layers
        .iter()
        .flatten()
        .flat_map(|c| c.h.iter().chain(c.c.iter().flatten()).copied())
        .collect()
}

/// Logits of a whole run and of the same steps fed as `[0, cut)` then `[cut, time)`, rows
/// rearranged to the whole run's `b·T + t` order; then both final states.
fn whole_and_chunked(
    model: &Model,
    all: &[i64],
    time: usize,
    cut: usize,
    device: &Device,
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let batch = all.len() / time;
    let (whole, s_whole) = model
        .forward_with_state(token_batch(all, time, 0..time, device), None, &EVAL)
        .unwrap();
    let (a, s_a) = model
        .forward_with_state(token_batch(all, time, 0..cut, device), None, &EVAL)
        .unwrap();
    let (b, s_b) = model
        .forward_with_state(token_batch(all, time, cut..time, device), Some(&s_a), &EVAL)
        .unwrap();
    let (a, b) = (vec2(a), vec2(b));
    let mut joined = Vec::with_capacity(a.len() + b.len());
    for row in 0..batch {
        joined.extend_from_slice(&a[row * cut * VOCAB..(row + 1) * cut * VOCAB]);
        let rest = time - cut;
        joined.extend_from_slice(&b[row * rest * VOCAB..(row + 1) * rest * VOCAB]);
    }
    (vec2(whole), joined, states(&s_whole), states(&s_b))
}

#[test]
fn two_chunks_with_carried_state_equal_one_run_on_both_paths() {
    let device = Device::flex();
    let (batch, time, cut) = (3, 9, 4);
    let all = ids(batch, time);
    for (cell, act, label) in CELLS {
        let kernel = lm(cell, act, &device);
        let ops = kernel.clone().with_recurrent_impl(RecurrentImpl::BurnOps);
        let (kw, kc, ks_w, ks_c) = whole_and_chunked(&kernel, &all, time, cut, &device);
        let (ow, oc, os_w, os_c) = whole_and_chunked(&ops, &all, time, cut, &device);
        assert_close(&format!("{label} kernel: chunked logits"), &kc, &kw, 1e-5);
        assert_close(
            &format!("{label} kernel: chunked state"),
            &ks_c,
            &ks_w,
            1e-5,
        );
        assert_close(&format!("{label} burn-ops: chunked logits"), &oc, &ow, 1e-5);
        assert_close(
            &format!("{label} burn-ops: chunked state"),
            &os_c,
            &os_w,
            1e-5,
        );
        assert_close(
            &format!("{label}: kernel vs burn-ops logits"),
            &kw,
            &ow,
            1e-5,
        );
        assert_close(
            &format!("{label}: kernel vs burn-ops state"),
            &ks_w,
            &os_w,
            1e-5,
        );
        // Without a state the stateful pass is the plain forward pass.
        let plain = vec2(kernel.forward(token_batch(&all, time, 0..time, &device), &EVAL));
        assert_close(&format!("{label}: forward"), &kw, &plain, 0.0);
        // An explicit zero state is no state; the carried one changes the outputs.
        let (fresh, _) = kernel
            .forward_with_state(token_batch(&all, time, cut..time, &device), None, &EVAL)
            .unwrap();
        let (carried, _) = kernel
            .forward_with_state(
                token_batch(&all, time, cut..time, &device),
                Some(&kernel.zero_state(batch)),
                &EVAL,
            )
            .unwrap();
        let fresh = vec2(fresh);
        assert_close(
            &format!("{label}: zero state = no state"),
            &vec2(carried),
            &fresh,
            0.0,
        );
        let (_, first) = kernel
            .forward_with_state(token_batch(&all, time, 0..cut, &device), None, &EVAL)
            .unwrap();
        let (second, _) = kernel
            .forward_with_state(
                token_batch(&all, time, cut..time, &device),
                Some(&first),
                &EVAL,
            )
            .unwrap();
        assert!(
            max_diff(&vec2(second), &fresh) > 1e-3,
            "{label}: the carried state changed nothing"
        );
    }
}

/// Loss `Σ logits · r` of the chunk `[cut, time)` started from `state`, and its parameter
/// gradient.
fn chunk_loss(
    model: &Model,
    all: &[i64],
    time: usize,
    cut: usize,
    state: &RecurrentState,
    device: &Device,
) -> (f32, Vec<f32>) {
    let (y, _) = model
        .forward_with_state(
            token_batch(all, time, cut..time, device),
            Some(state),
            &ForwardCtx::eval(),
        )
        .unwrap();
    let r = tensor2(y.dims(), 31, device);
    let loss = (y * r).sum();
    let value = loss.clone().into_scalar::<f32>();
    let grads = GradientsParams::from_grads(loss.backward(), model);
    (value, flat::flatten_grads(model, &grads))
}

#[test]
fn gradients_from_a_carried_state_agree_across_paths_and_with_finite_differences() {
    let device = Device::flex().autodiff();
    let (batch, time, cut) = (2, 7, 3);
    let all = ids(batch, time);
    for (cell, act, label) in CELLS {
        let kernel = lm(cell, act, &device);
        let ops = kernel.clone().with_recurrent_impl(RecurrentImpl::BurnOps);
        // A non-zero state, as the first chunk leaves it.
        let (_, state) = kernel
            .forward_with_state(token_batch(&all, time, 0..cut, &device), None, &EVAL)
            .unwrap();
        assert!(max_abs(&states(&state)) > 1e-2, "{label}: state is ~0");
        let (_, gk) = chunk_loss(&kernel, &all, time, cut, &state, &device);
        let (_, go) = chunk_loss(&ops, &all, time, cut, &state, &device);
        assert_close(
            &format!("{label}: kernel vs burn-ops gradients"),
            &gk,
            &go,
            1e-4,
        );
        // Central differences on the kernel for a spread of parameters (embedding, both
        // recurrent layers' input and recurrent weights, head), in f32 with a wide step.
        let params = flat::flatten_params(&kernel);
        let eps = 1e-2f32;
        let mut worst = 0.0f32;
        for i in (0..params.len()).step_by(params.len() / 40 + 1) {
            let at = |delta: f32| {
                let mut p = params.clone();
                p[i] += delta;
                let m = flat::load_params(kernel.clone(), &p).unwrap();
                chunk_loss(&m, &all, time, cut, &state, &device).0
            };
            let fd = (at(eps) - at(-eps)) / (2.0 * eps);
            let err = (fd - gk[i]).abs() / gk[i].abs().max(1.0);
            worst = worst.max(err);
            assert!(
                err < 2e-2,
                "{label}: parameter {i}: finite difference {fd} vs gradient {}",
                gk[i]
            );
        }
        eprintln!("{label}: worst relative finite-difference error {worst:e}");
    }
}
