//! Each optimizer against values worked out by hand from PyTorch's update rules (the arithmetic
//! is in the comments; the longer decimals were evaluated in f64), plus checkpoint round trips.

use super::*;

/// Runs `spec` from `p0` over the gradient sequence and returns the parameters after each step.
fn run(spec: OptimizerSpec, p0: &[f32], grads: &[[f32; 2]], lr: f32) -> Vec<Vec<f32>> {
    let mut opt = Optimizer::new(&spec, p0.len());
    let mut p = p0.to_vec();
    grads
        .iter()
        .map(|g| {
            opt.step(&mut p, g, lr).expect("lengths match");
            p.clone()
        })
        .collect()
}

/// f32 arithmetic against f64 hand values: equal to a few ulps of the magnitude involved.
fn assert_close(got: &[Vec<f32>], want: &[[f64; 2]]) {
    assert_eq!(got.len(), want.len());
    for (step, (g, w)) in got.iter().zip(want).enumerate() {
        for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
            let tol = 2e-6 * w.abs().max(1.0);
            assert!(
                (f64::from(g) - w).abs() <= tol,
                "step {} element {i}: got {g}, want {w}",
                step + 1
            );
        }
    }
}

fn sgd(momentum: f64, nesterov: bool, weight_decay: f64) -> OptimizerSpec {
    OptimizerSpec::Sgd {
        lr: 1.0,
        momentum,
        nesterov,
        weight_decay,
    }
}

const P0: [f32; 2] = [1.0, -2.0];

#[test]
fn sgd_plain_is_p_minus_lr_g() {
    // lr 0.1: p1 = [1 - 0.1*0.5, -2 - 0.1*0.25] = [0.95, -2.025]
    //         p2 = [0.95 - 0.1*(-0.5), -2.025 - 0.1*1.0] = [1.0, -2.125]
    let got = run(sgd(0.0, false, 0.0), &P0, &[[0.5, 0.25], [-0.5, 1.0]], 0.1);
    assert_close(&got, &[[0.95, -2.025], [1.0, -2.125]]);
}

#[test]
fn sgd_momentum_with_l2_starts_buffer_at_grad() {
    // momentum 0.9, wd 0.1, lr 0.1.
    // step 1: g' = g + 0.1 p = [0.5 + 0.1, 0.25 - 0.2] = [0.6, 0.05]; buf = g' (not 0.9*0 + g')
    //         p = [1 - 0.06, -2 - 0.005] = [0.94, -2.005]
    // step 2: g' = [-0.5 + 0.094, 1.0 - 0.2005] = [-0.406, 0.7995]
    //         buf = 0.9 [0.6, 0.05] + g' = [0.134, 0.8445]
    //         p = [0.94 - 0.0134, -2.005 - 0.08445] = [0.9266, -2.08945]
    let got = run(sgd(0.9, false, 0.1), &P0, &[[0.5, 0.25], [-0.5, 1.0]], 0.1);
    assert_close(&got, &[[0.94, -2.005], [0.9266, -2.08945]]);
}

#[test]
fn sgd_nesterov_steps_along_g_plus_momentum_buf() {
    // momentum 0.9, wd 0.1, lr 0.1, Nesterov: d = g' + 0.9 buf.
    // step 1: g' = [0.6, 0.05]; buf = [0.6, 0.05]; d = [0.6 + 0.54, 0.05 + 0.045] = [1.14, 0.095]
    //         p = [1 - 0.114, -2 - 0.0095] = [0.886, -2.0095]
    // step 2: g' = [-0.5 + 0.0886, 1.0 - 0.20095] = [-0.4114, 0.79905]
    //         buf = [0.54 - 0.4114, 0.045 + 0.79905] = [0.1286, 0.84405]
    //         d = g' + 0.9 buf = [-0.4114 + 0.11574, 0.79905 + 0.759645] = [-0.29566, 1.558695]
    //         p = [0.886 + 0.029566, -2.0095 - 0.1558695] = [0.915566, -2.1653695]
    let got = run(sgd(0.9, true, 0.1), &P0, &[[0.5, 0.25], [-0.5, 1.0]], 0.1);
    assert_close(&got, &[[0.886, -2.0095], [0.915566, -2.1653695]]);
}

#[test]
fn rmsprop_adds_eps_after_the_square_root() {
    // alpha 0.75, eps 0.1 (large, so its placement shows), lr 0.1, g = [0.4, -2.0] twice.
    // step 1: v = 0.25 g² = [0.04, 1.0]; sqrt(v) + eps = [0.3, 1.1]
    //         p = [1 - 0.1*0.4/0.3, -2 + 0.1*2/1.1] = [0.8666667, -1.8181818]
    //         (eps inside the root would give sqrt(0.14) = 0.374 instead of 0.3)
    // step 2: v = 0.75 [0.04, 1.0] + 0.25 [0.16, 4.0] = [0.07, 1.75]
    //         sqrt(v) + eps = [0.3645751, 1.4228757]
    //         p = [0.8666667 - 0.04/0.3645751, -1.8181818 + 0.2/1.4228757]
    //           = [0.7569499, -1.6776214]
    let spec = OptimizerSpec::Rmsprop {
        lr: 1.0,
        alpha: 0.75,
        eps: 0.1,
        momentum: 0.0,
        weight_decay: 0.0,
    };
    let got = run(spec, &P0, &[[0.4, -2.0], [0.4, -2.0]], 0.1);
    assert_close(
        &got,
        &[
            [0.8666666666666667, -1.8181818181818181],
            [0.756949912595694, -1.6776213980056922],
        ],
    );
}

#[test]
fn rmsprop_momentum_and_l2() {
    // alpha 0.75, eps 0.1, momentum 0.5, wd 0.5, lr 0.1; buffer starts at zero.
    // step 1: g' = g + 0.5 p = [0.4 + 0.5, -2.0 - 1.0] = [0.9, -3.0]
    //         v = 0.25 g'² = [0.2025, 2.25]; sqrt(v) + eps = [0.55, 1.6]
    //         buf = 0.5*0 + g'/avg = [1.6363636, -1.875]
    //         p = [1 - 0.16363636, -2 + 0.1875] = [0.8363636, -1.8125]
    // step 2 (g = [-0.6, 1.0]): g' = [-0.6 + 0.4181818, 1.0 - 0.90625] = [-0.1818182, 0.09375]
    //         v = 0.75 [0.2025, 2.25] + 0.25 g'² = [0.1601395, 1.6896973]
    //         buf = 0.5 buf + g'/(sqrt(v) + 0.1) = [0.4546722, -0.8705301]
    //         p = p - 0.1 buf = [0.7908964, -1.7254470]
    let spec = OptimizerSpec::Rmsprop {
        lr: 1.0,
        alpha: 0.75,
        eps: 0.1,
        momentum: 0.5,
        weight_decay: 0.5,
    };
    let got = run(spec, &P0, &[[0.4, -2.0], [-0.6, 1.0]], 0.1);
    assert_close(
        &got,
        &[
            [0.8363636363636364, -1.8125],
            [0.7908964196503498, -1.7254469855765233],
        ],
    );
}

fn adam_spec(weight_decay: f64, decoupled: bool) -> OptimizerSpec {
    let (lr, beta1, beta2, eps) = (1.0, 0.9, 0.999, 1e-8);
    if decoupled {
        OptimizerSpec::Adamw {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
    } else {
        OptimizerSpec::Adam {
            lr,
            beta1,
            beta2,
            eps,
            weight_decay,
        }
    }
}

const ADAM_GRADS: [[f32; 2]; 3] = [[0.5, -0.25], [0.5, 0.5], [-1.0, 0.5]];

#[test]
fn adam_bias_correction() {
    // lr 0.1, b1 0.9, b2 0.999, eps 1e-8.
    // step 1: m = 0.1 g, v = 0.001 g²; m̂ = g, v̂ = g² → p -= 0.1 g/(|g| + 1e-8) ≈ 0.1 sign(g)
    //         p = [0.9, -1.9]
    // step 2, element 0 (g 0.5, 0.5): m = 0.045 + 0.05 = 0.095, v = 0.00024975 + 0.00025
    //         = 0.00049975; bc1 = 1 - 0.81 = 0.19, bc2 = 1 - 0.998001 = 0.001999
    //         v̂ = 0.00049975/0.001999 = 0.25 → denom 0.5; m̂ = 0.5 → p = 0.9 - 0.1 = 0.8
    // step 2, element 1 (g -0.25, 0.5): m = -0.0225 + 0.05 = 0.0275,
    //         v = 0.0000624375 + 0.00025 = 0.0003124375; m̂ = 0.144737, sqrt(v̂) = 0.395344
    //         p = -1.9 - 0.1*0.144737/0.395344 = -1.9366104
    // step 3 (f64 evaluation of the same rule): [0.8075649, -2.0003000]
    let got = run(adam_spec(0.0, false), &P0, &ADAM_GRADS, 0.1);
    assert_close(
        &got,
        &[
            [0.900000002, -1.9000000039999998],
            [0.8000000040000006, -1.9366103557775463],
            [0.8075649369687123, -2.0003000062643133],
        ],
    );
}

#[test]
fn adam_weight_decay_is_l2_in_the_gradient() {
    // wd 0.5 enters the moments: step 1 g' = g + 0.5 p = [0.5 + 0.5, -0.25 - 1.0] = [1.0, -1.25],
    // still p -= 0.1 sign(g') → [0.9, -1.9]; step 2 g' = [0.5 + 0.45, 0.5 - 0.95] = [0.95, -0.45]
    // m = [0.09 + 0.095, -0.1125 - 0.045] = [0.185, -0.1575], v = [0.0019015, 0.00176344]
    // p = [0.9 - 0.1*(0.185/0.19)/sqrt(0.0019015/0.001999), ...] = [0.8001665, -1.8117422]
    let got = run(adam_spec(0.5, false), &P0, &ADAM_GRADS, 0.1);
    assert_close(
        &got,
        &[
            [0.900000001, -1.9000000008],
            [0.8001664876318763, -1.8117421568837997],
            [0.7549026199274562, -1.7278202454957843],
        ],
    );
}

#[test]
fn adamw_decays_parameters_before_the_adam_update() {
    // wd 0.5, lr 0.1: p *= 1 - 0.05 first, moments see the raw gradient (same m, v as plain Adam).
    // step 1: p = [0.95 - 0.1, -1.9 + 0.1] = [0.85, -1.8]
    // step 2: p = [0.85*0.95 - 0.1, -1.8*0.95 - 0.0366104] = [0.7075, -1.7466104]
    // step 3: p = [0.7075*0.95 + 0.0075649, -1.7466104*0.95 - 0.0636896] = [0.6796899, -1.7229695]
    let got = run(adam_spec(0.5, true), &P0, &ADAM_GRADS, 0.1);
    assert_close(
        &got,
        &[
            [0.8500000019999999, -1.8000000039999997],
            [0.7075000039000006, -1.746610355577546],
            [0.6796899366737122, -1.7229694882854354],
        ],
    );
}

fn all_specs() -> Vec<OptimizerSpec> {
    vec![
        sgd(0.0, false, 0.01),
        sgd(0.9, true, 0.01),
        OptimizerSpec::Rmsprop {
            lr: 1.0,
            alpha: 0.99,
            eps: 1e-8,
            momentum: 0.9,
            weight_decay: 0.01,
        },
        adam_spec(0.01, false),
        adam_spec(0.01, true),
    ]
}

/// A deterministic, varied gradient for step `s`.
fn grad_at(s: usize, n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| ((i * 7 + s * 13) % 11) as f32 / 5.0 - 1.0)
        .collect()
}

#[test]
fn state_round_trip_through_json_continues_bit_identically() {
    let n = 37; // not a multiple of any vector width, so the loop tails run too
    for spec in all_specs() {
        let p0: Vec<f32> = (0..n).map(|i| (i as f32 - 18.0) / 10.0).collect();
        let mut straight = Optimizer::new(&spec, n);
        let mut p_straight = p0.clone();
        let mut resumed = Optimizer::new(&spec, n);
        let mut p_resumed = p0;
        for s in 0..5 {
            let lr = 0.01 * (s + 1) as f32;
            straight
                .step(&mut p_straight, &grad_at(s, n), lr)
                .expect("lengths match");
            if s == 1 {
                let json = serde_json::to_string(resumed.state()).expect("plain data");
                let state: OptimizerState = serde_json::from_str(&json).expect("own output");
                resumed = Optimizer::from_state(&spec, n, state).expect("same spec");
            }
            resumed
                .step(&mut p_resumed, &grad_at(s, n), lr)
                .expect("lengths match");
        }
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&p_straight), bits(&p_resumed), "{spec:?}");
        assert_eq!(straight.state(), resumed.state(), "{spec:?}");
        assert_eq!(resumed.step_count(), 5);
    }
}

#[test]
fn state_serializes_non_finite_values_exactly() {
    let mut opt = Optimizer::new(&adam_spec(0.0, false), 3);
    let mut p = [1.0f32, 2.0, 3.0];
    // A NaN and an ∞ gradient poison the moments; JSON has no literal for either.
    opt.step(&mut p, &[f32::NAN, f32::INFINITY, 0.1], 0.1)
        .expect("lengths match");
    let json = serde_json::to_string(opt.state()).expect("plain data");
    let back: OptimizerState = serde_json::from_str(&json).expect("own output");
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&back.exp_avg), bits(&opt.state().exp_avg));
    assert_eq!(bits(&back.exp_avg_sq), bits(&opt.state().exp_avg_sq));
    assert!(back.exp_avg[0].is_nan() && back.exp_avg_sq[1] == f32::INFINITY);
}

#[test]
fn state_holds_only_the_buffers_pytorch_keeps() {
    let lens = |spec: OptimizerSpec| {
        let st = Optimizer::new(&spec, 4).into_state();
        (
            st.momentum_buffer.len(),
            st.exp_avg.len(),
            st.exp_avg_sq.len(),
        )
    };
    assert_eq!(lens(sgd(0.0, false, 0.0)), (0, 0, 0));
    assert_eq!(lens(sgd(0.5, false, 0.0)), (4, 0, 0));
    let rms = |momentum| OptimizerSpec::Rmsprop {
        lr: 1.0,
        alpha: 0.99,
        eps: 1e-8,
        momentum,
        weight_decay: 0.0,
    };
    assert_eq!(lens(rms(0.0)), (0, 0, 4));
    assert_eq!(lens(rms(0.9)), (4, 0, 4));
    assert_eq!(lens(adam_spec(0.0, false)), (0, 4, 4));
    assert_eq!(lens(adam_spec(0.0, true)), (0, 4, 4));
}

#[test]
fn step_rejects_wrong_lengths_without_touching_anything() {
    let mut opt = Optimizer::new(&adam_spec(0.0, false), 3);
    let mut p = vec![1.0f32; 3];
    let err = opt.step(&mut p, &[0.5; 2], 0.1).unwrap_err();
    assert_eq!(
        err,
        OptimError::LengthMismatch {
            buffer: "grads",
            expected: 3,
            got: 2
        }
    );
    assert_eq!(
        err.to_string(),
        "optimizer step: grads has 2 elements but the optimizer was built for 3 parameters"
    );
    let err = opt.step(&mut [1.0; 4], &[0.5; 3], 0.1).unwrap_err();
    assert_eq!(
        err,
        OptimError::LengthMismatch {
            buffer: "params",
            expected: 3,
            got: 4
        }
    );
    assert_eq!(p, vec![1.0; 3]);
    assert_eq!(opt.step_count(), 0);
}

#[test]
fn from_state_rejects_a_state_that_does_not_fit() {
    let adam = Optimizer::new(&adam_spec(0.0, false), 3).into_state();
    let err = Optimizer::from_state(&sgd(0.9, false, 0.0), 3, adam.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "optimizer state is for adam but the spec asks for sgd"
    );
    let err = Optimizer::from_state(&adam_spec(0.0, false), 4, adam.clone()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "optimizer state is for 3 parameters but the model has 4"
    );
    let mut truncated = adam;
    truncated.exp_avg_sq.pop();
    let err = Optimizer::from_state(&adam_spec(0.0, false), 3, truncated).unwrap_err();
    assert_eq!(
        err.to_string(),
        "optimizer state buffer `exp_avg_sq` has 2 elements, expected 3"
    );
    // Saved without momentum, restored with it: the buffer is missing, not silently zeroed.
    let plain = Optimizer::new(&sgd(0.0, false, 0.0), 3).into_state();
    let err = Optimizer::from_state(&sgd(0.9, false, 0.0), 3, plain).unwrap_err();
    assert_eq!(
        err,
        OptimError::BufferLength {
            buffer: "momentum_buffer",
            expected: 3,
            got: 0
        }
    );
}

/// Segments: each one steps exactly as an optimizer over that slice alone with `lr × scale`,
/// a frozen one (scale 0) keeps its parameters and state, and one segment of scale 1 is
/// `step` bit for bit.
#[test]
fn segments_step_like_separate_optimizers_with_scaled_rates() {
    let spec = OptimizerSpec::Adamw {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.1,
    };
    let p0 = [0.5f32, -1.0, 2.0, 0.25, -0.75, 1.5];
    let grads = [
        [0.3f32, -0.2, 0.1, 0.4, -0.5, 0.6],
        [0.1, 0.2, -0.3, 0.0, 0.5, -0.1],
    ];
    let mut whole = Optimizer::new(&spec, 6);
    let mut p = p0.to_vec();
    let mut plain = Optimizer::new(&spec, 6);
    let mut q = p0.to_vec();
    let (mut head, mut tail) = (Optimizer::new(&spec, 2), Optimizer::new(&spec, 2));
    let (mut ph, mut pt) = (p0[..2].to_vec(), p0[4..].to_vec());
    for g in &grads {
        whole
            .step_segments(&mut p, g, 0.1, &[(0..2, 0.5), (2..4, 0.0), (4..6, 1.0)])
            .unwrap();
        plain.step_segments(&mut q, g, 0.1, &[(0..6, 1.0)]).unwrap();
        head.step(&mut ph, &g[..2], 0.05).unwrap();
        tail.step(&mut pt, &g[4..], 0.1).unwrap();
    }
    assert_eq!(&p[..2], ph.as_slice());
    assert_eq!(&p[2..4], &p0[2..4], "a frozen segment does not move");
    assert_eq!(&p[4..], pt.as_slice());
    assert_eq!(&whole.state().exp_avg[2..4], &[0.0, 0.0]);
    assert_eq!(whole.step_count(), 2);
    let mut reference = Optimizer::new(&spec, 6);
    let mut r = p0.to_vec();
    for g in &grads {
        reference.step(&mut r, g, 0.1).unwrap();
    }
    assert_eq!(q, r);
    assert_eq!(
        whole.step_segments(&mut p, &grads[0], 0.1, &[(4..7, 1.0)]),
        Err(OptimError::SliceOutOfRange {
            start: 4,
            end: 7,
            n_params: 6
        })
    );
}
