//! Hybrid layers (Conv1d front-end, self-attention and Transformer block): gradients against
//! finite differences, padding invariance (with strides that shorten sequences), stage splits,
//! layer descriptions, seeded initialization, training-mode dropout and model-side errors.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_models::{
    Batch, Boundary, BoundaryShape, ForwardCtx, HeadKind, InputKind, Inputs, Model, RecurrentImpl,
    flat,
};
use ringtrain_spec::{
    Activation, AttentionKind, AttentionSpec, CellKind, ConvActivation, ConvSpec, ModelSpec,
    Pooling,
};

use crate::*;

fn conv(channels: usize, kernel: usize, stride: usize, activation: ConvActivation) -> ConvSpec {
    ConvSpec {
        channels,
        kernel,
        stride,
        activation,
    }
}

fn attention(kind: AttentionKind, heads: usize, dropout: f64) -> AttentionSpec {
    AttentionSpec {
        kind,
        heads,
        dropout,
        ff_hidden: if kind == AttentionKind::Transformer {
            7
        } else {
            0
        },
    }
}

/// The hybrid variants every test sweeps: (label, spec).
fn variants() -> Vec<(&'static str, ModelSpec)> {
    let base = |cell, bi| spec(cell, Activation::Tanh, 1, 4, bi);
    let mut out = Vec::new();
    let mut s = base(CellKind::Gru, false);
    s.conv = vec![conv(5, 3, 1, ConvActivation::Tanh)];
    out.push(("conv k3", s));
    let mut s = base(CellKind::Lstm, true);
    s.conv = vec![
        conv(4, 2, 2, ConvActivation::Tanh),
        conv(3, 4, 3, ConvActivation::None),
    ];
    out.push(("conv k2/s2 + k4/s3", s));
    let mut s = base(CellKind::Gru, true);
    s.attention = Some(attention(AttentionKind::SelfAttention, 2, 0.0));
    out.push(("self-attention", s));
    let mut s = base(CellKind::Lstm, false);
    s.attention = Some(attention(AttentionKind::Transformer, 2, 0.0));
    out.push(("transformer", s));
    let mut s = base(CellKind::Rnn, false);
    s.conv = vec![conv(4, 3, 2, ConvActivation::Tanh)];
    s.attention = Some(attention(AttentionKind::Transformer, 1, 0.0));
    out.push(("conv s2 + transformer", s));
    out
}

// ---------------------------------------------------------------- gradients

const FEATURES: usize = 3;
const GC_BATCH: usize = 2;
const GC_TIME: usize = 7;
const GC_LENGTHS: [usize; GC_BATCH] = [7, 4];

/// Sequence output (before the head) and head output on the fixed padded batch.
fn gc_outputs(model: &Model, device: &Device) -> (Tensor<3>, Tensor<2>) {
    let n = model.num_layers();
    let x = tensor3([GC_BATCH, GC_TIME, FEATURES], 60, device);
    let m = mask(&GC_LENGTHS, GC_TIME, device);
    let (s, m) = seq(model
        .forward_range(0..n - 1, Boundary::Seq { x, mask: m }, &EVAL)
        .unwrap());
    let y = out(model
        .forward_range(
            n - 1..n,
            Boundary::Seq {
                x: s.clone(),
                mask: m,
            },
            &EVAL,
        )
        .unwrap());
    (s, y)
}

fn gc_weights(seq_len: usize, outs: usize) -> (Vec<f32>, Vec<f32>) {
    (values(seq_len, 61), values(outs, 62))
}

fn host_loss(model: &Model, device: &Device) -> f64 {
    let (s, y) = gc_outputs(model, device);
    let (s, y) = (vec3(s), vec2(y));
    let (w1, w2) = gc_weights(s.len(), y.len());
    let dot = |a: &[f32], b: &[f32]| {
        a.iter()
            .zip(b)
            .map(|(x, y)| *x as f64 * *y as f64)
            .sum::<f64>()
    };
    dot(&s, &w1) + dot(&y, &w2)
}

fn gradcheck(label: &str, spec: &ModelSpec) {
    let ad = Device::flex().autodiff();
    let plain = Device::flex();
    let model = numeric_model(spec, FEATURES, 2, 13, &ad);
    let (s, y) = gc_outputs(&model, &ad);
    let (sd, yd) = (s.dims(), y.dims());
    let (w1, w2) = gc_weights(sd.iter().product(), yd.iter().product());
    let loss = (s * Tensor::<3>::from_data(TensorData::new(w1, sd), &ad)).sum()
        + (y * Tensor::<2>::from_data(TensorData::new(w2, yd), &ad)).sum();
    let grads = flat::flatten_grads(
        &model,
        &GradientsParams::from_grads(loss.backward(), &model),
    );
    let base = numeric_model(spec, FEATURES, 2, 13, &plain);
    let theta = flat::flatten_params(&base);
    assert_eq!(theta, flat::flatten_params(&model), "{label}: same seed");
    let mut worst = 0.0f64;
    for i in 0..theta.len() {
        let fd_at = |eps: f32| {
            let mut p = theta.clone();
            p[i] = theta[i] + eps;
            let up = host_loss(&flat::load_params(base.clone(), &p).unwrap(), &plain);
            p[i] = theta[i] - eps;
            let down = host_loss(&flat::load_params(base.clone(), &p).unwrap(), &plain);
            (up - down) / (2.0 * eps as f64)
        };
        let g = grads[i] as f64;
        // A ReLU (conv activation, feed-forward) can sit within eps of its kink, where the
        // central difference straddles it: then the smaller step decides (measured: a
        // Transformer output bias read 15.44 at eps 3e-3, 14.531 at 1e-3 and below, autodiff
        // 14.531).
        let fd = [3e-3f32, 1e-3]
            .into_iter()
            .map(fd_at)
            .min_by(|a, b| (a - g).abs().total_cmp(&(b - g).abs()))
            .unwrap_or(f64::NAN);
        let err = (fd - g).abs();
        worst = worst.max(err);
        assert!(
            err <= 1e-3 + 1e-2 * g.abs(),
            "{label}: parameter {i}: finite difference {fd} vs autodiff {g}"
        );
    }
    assert!(max_abs(&grads) > 1e-2, "{label}: gradients are not all ~0");
    eprintln!(
        "{label}: {} parameters, worst |fd - grad| = {worst:e}",
        theta.len()
    );
}

#[test]
fn conv_gradients_match_finite_differences() {
    for (label, s) in variants().iter().filter(|(_, s)| s.attention.is_none()) {
        gradcheck(label, s);
    }
}

#[test]
fn attention_gradients_match_finite_differences() {
    for (label, s) in variants().iter().filter(|(_, s)| s.attention.is_some()) {
        gradcheck(label, s);
    }
}

// ---------------------------------------------------------------- padding

const LENGTHS: [usize; 4] = [9, 5, 2, 1];
const TIME: usize = 9;
const VOCAB: usize = 10;

fn heads() -> Vec<HeadKind> {
    let mut h = vec![HeadKind::Regression { outputs: 2 }];
    for pooling in [Pooling::Last, Pooling::Mean, Pooling::Max] {
        h.push(HeadKind::Classes {
            classes: 3,
            pooling,
        });
    }
    h
}

/// Valid output steps of a sequence of `len` steps after the model's strided convolutions.
fn valid_after(spec: &ModelSpec, len: usize) -> usize {
    spec.conv.iter().fold(len, |l, c| l.div_ceil(c.stride))
}

fn numeric_padding_case(model: &Model, spec: &ModelSpec, case: &str, device: &Device) {
    // Padded positions hold garbage on purpose.
    let all = values(LENGTHS.len() * TIME * FEATURES, 71);
    let x = Tensor::<3>::from_data(
        TensorData::new(all.clone(), [LENGTHS.len(), TIME, FEATURES]),
        device,
    );
    let n = model.num_layers();
    let together = vec2(model.forward(
        Batch {
            inputs: Inputs::Numeric(x.clone()),
            mask: mask(&LENGTHS, TIME, device),
        },
        &EVAL,
    ));
    let (seq_all, mask_all) = seq(model
        .forward_range(
            0..n - 1,
            Boundary::Seq {
                x,
                mask: mask(&LENGTHS, TIME, device),
            },
            &EVAL,
        )
        .unwrap());
    assert_eq!(
        vec2(mask_all.clone()),
        vec2(model.mask_at(n - 1, mask(&LENGTHS, TIME, device)).unwrap()),
        "{case}: mask_at predicts the boundary mask"
    );
    let t_out = valid_after(spec, TIME);
    assert_eq!(seq_all.dims()[1], t_out, "{case}: strided length");
    let out_lengths: Vec<usize> = LENGTHS.iter().map(|&l| valid_after(spec, l)).collect();
    assert_eq!(
        vec2(mask_all),
        vec2(mask(&out_lengths, t_out, device)),
        "{case}: the mask follows the strides"
    );
    let seq_all = vec3(seq_all);
    let width = seq_all.len() / (LENGTHS.len() * t_out);
    let outs = together.len() / LENGTHS.len();
    for (i, &len) in LENGTHS.iter().enumerate() {
        let row = &all[i * TIME * FEATURES..(i * TIME + len) * FEATURES];
        let xi = Tensor::<3>::from_data(TensorData::new(row.to_vec(), [1, len, FEATURES]), device);
        let alone = vec2(model.forward(
            Batch {
                inputs: Inputs::Numeric(xi.clone()),
                mask: mask(&[len], len, device),
            },
            &EVAL,
        ));
        let d = max_diff(&alone, &together[i * outs..(i + 1) * outs]);
        assert!(
            d <= 2e-6,
            "{case}: sample {i} (length {len}) differs by {d:e} when padded"
        );
        let (si, _) = seq(model
            .forward_range(
                0..n - 1,
                Boundary::Seq {
                    x: xi,
                    mask: mask(&[len], len, device),
                },
                &EVAL,
            )
            .unwrap());
        let si = vec3(si);
        let valid = out_lengths[i];
        assert_eq!(si.len(), valid * width, "{case}: sample {i} alone length");
        let padded = &seq_all[i * t_out * width..(i + 1) * t_out * width];
        let d = max_diff(&si, &padded[..valid * width]);
        assert!(
            d <= 2e-6,
            "{case}: sample {i} sequence output differs by {d:e}"
        );
        assert!(
            padded[valid * width..].iter().all(|v| *v == 0.0),
            "{case}: padded steps output zero"
        );
    }
}

fn token_padding_case(model: &Model, case: &str, device: &Device) {
    // Padded positions hold non-pad ids on purpose.
    let ids: Vec<i64> = values(LENGTHS.len() * TIME, 72)
        .iter()
        .map(|v| 1 + ((v + 1.0) * 4.4) as i64 % (VOCAB as i64 - 1))
        .collect();
    let together = vec2(model.forward(
        Batch {
            inputs: Inputs::Tokens(tokens(ids.clone(), [LENGTHS.len(), TIME], device)),
            mask: mask(&LENGTHS, TIME, device),
        },
        &EVAL,
    ));
    let outs = together.len() / LENGTHS.len();
    for (i, &len) in LENGTHS.iter().enumerate() {
        let row = ids[i * TIME..i * TIME + len].to_vec();
        let alone = vec2(model.forward(
            Batch {
                inputs: Inputs::Tokens(tokens(row, [1, len], device)),
                mask: mask(&[len], len, device),
            },
            &EVAL,
        ));
        let d = max_diff(&alone, &together[i * outs..(i + 1) * outs]);
        assert!(
            d <= 2e-6,
            "{case}: sample {i} (length {len}) differs by {d:e} when padded"
        );
    }
}

#[test]
fn padding_never_changes_a_hybrid_result() {
    let device = Device::flex();
    for (label, s) in variants() {
        for head in heads() {
            let case = format!("{label} {head:?}");
            let m = Model::new(
                &s,
                InputKind::Numeric { features: FEATURES },
                head,
                4,
                &device,
            )
            .unwrap();
            numeric_padding_case(&m, &s, &format!("numeric {case}"), &device);
            let m = Model::new(&s, InputKind::Tokens { vocab: VOCAB }, head, 4, &device).unwrap();
            token_padding_case(&m, &format!("tokens {case}"), &device);
        }
    }
}

// ---------------------------------------------------------------- stages, dropout

fn token_input(device: &Device) -> Boundary {
    let lengths = [7, 3, 6];
    let ids: Vec<i64> = (0..lengths.len() * 7)
        .map(|i| 1 + (i * 5 % 9) as i64)
        .collect();
    Batch {
        inputs: Inputs::Tokens(tokens(ids, [lengths.len(), 7], device)),
        mask: mask(&lengths, 7, device),
    }
    .into()
}

#[test]
fn hybrid_split_forward_and_backward_equal_unsplit_with_dropout() {
    let device = Device::flex().autodiff();
    let mut s = spec(CellKind::Gru, Activation::Tanh, 2, 4, true);
    s.dropout = 0.2;
    s.conv = vec![
        conv(5, 3, 1, ConvActivation::Relu),
        conv(4, 2, 2, ConvActivation::Tanh),
    ];
    s.attention = Some(attention(AttentionKind::Transformer, 2, 0.25));
    let model = Model::new(
        &s,
        InputKind::Tokens { vocab: 10 },
        HeadKind::Classes {
            classes: 3,
            pooling: Pooling::Last,
        },
        8,
        &device,
    )
    .unwrap();
    let n = model.num_layers();
    assert_eq!(
        n, 7,
        "embedding + 2 conv + 2 recurrent + transformer + head"
    );
    assert_eq!(n, ringtrain_spec::layer_count(&s, &classify_task()));
    let ctx = ForwardCtx {
        train: true,
        dropout_seed: 99,
    };
    let r = tensor2([3, 3], 52, &device);
    let y = out(model
        .forward_range(0..n, token_input(&device), &ctx)
        .unwrap());
    let whole_out = vec2(y.clone());
    let whole = flat::flatten_grads(
        &model,
        &GradientsParams::from_grads((y * r.clone()).sum().backward(), &model),
    );
    for k in 1..n {
        let case = format!("split at {k}");
        let (x, mask) = seq(model
            .forward_range(0..k, token_input(&device), &ctx)
            .unwrap());
        let Boundary::Tokens {
            mask: input_mask, ..
        } = token_input(&device)
        else {
            panic!("token input")
        };
        assert_eq!(
            vec2(model.mask_at(k, input_mask).unwrap()),
            vec2(mask.clone()),
            "{case}: mask_at predicts the boundary mask"
        );
        let received = Tensor::<3>::from_data(x.to_data(), &device).require_grad();
        let y = out(model
            .forward_range(
                k..n,
                Boundary::Seq {
                    x: received.clone(),
                    mask,
                },
                &ctx,
            )
            .unwrap());
        assert_eq!(vec2(y.clone()), whole_out, "{case}: outputs");
        let mut g2 = (y * r.clone()).sum().backward();
        let gx = received.grad_remove(&mut g2).expect("boundary gradient");
        let down = flat::flatten_grads(&model, &GradientsParams::from_grads(g2, &model));
        let gx = Tensor::<3>::from_data(gx.into_data(), &device);
        let up = flat::flatten_grads(
            &model,
            &GradientsParams::from_grads((x * gx).sum().backward(), &model),
        );
        let split: Vec<f32> = up.iter().zip(&down).map(|(a, b)| a + b).collect();
        assert_close(&case, &split, &whole, 1e-5);
    }
    // The attention dropout masks are really drawn, and are a function of the seed alone.
    let again = vec2(out(model
        .forward_range(0..n, token_input(&device), &ctx)
        .unwrap()));
    assert_eq!(again, whole_out, "same seed, same masks");
    let other = ForwardCtx {
        train: true,
        dropout_seed: 100,
    };
    let y_other = vec2(out(model
        .forward_range(0..n, token_input(&device), &other)
        .unwrap()));
    assert!(
        max_diff(&y_other, &whole_out) > 1e-6,
        "another seed drops others"
    );
    let y_eval = vec2(out(model
        .forward_range(0..n, token_input(&device), &EVAL)
        .unwrap()));
    assert!(
        max_diff(&y_eval, &whole_out) > 1e-6,
        "dropout active in training"
    );
}

fn classify_task() -> ringtrain_spec::TaskSpec {
    ringtrain_spec::TaskSpec::Classify {
        pooling: Pooling::Last,
        class_weights: Vec::new(),
        text: ringtrain_spec::TextSpec {
            text_column: "text".into(),
            label_column: "label".into(),
            tokenizer: ringtrain_spec::TokenizerKind::Word,
            lowercase: true,
            min_freq: 1,
            max_vocab: 10,
            max_len: 8,
            labels: None,
        },
    }
}

#[test]
fn attention_dropout_alone_is_drawn_per_seed() {
    // Dropout only inside the attention block (none between recurrent layers).
    let device = Device::flex();
    let mut s = spec(CellKind::Lstm, Activation::Tanh, 1, 4, false);
    s.attention = Some(attention(AttentionKind::SelfAttention, 2, 0.5));
    let m = Model::new(
        &s,
        InputKind::Tokens { vocab: 10 },
        HeadKind::Classes {
            classes: 2,
            pooling: Pooling::Mean,
        },
        1,
        &device,
    )
    .unwrap();
    let run = |seed| {
        let ctx = ForwardCtx {
            train: true,
            dropout_seed: seed,
        };
        vec2(out(m
            .forward_range(0..4, token_input(&device), &ctx)
            .unwrap()))
    };
    assert_eq!(run(5), run(5));
    assert!(max_diff(&run(5), &run(6)) > 1e-6);
    let eval = vec2(out(m
        .forward_range(0..4, token_input(&device), &EVAL)
        .unwrap()));
    assert!(max_diff(&run(5), &eval) > 1e-6);
}

// ---------------------------------------------------------------- description, init, errors

#[test]
fn hybrid_layer_infos_and_seeded_parameters() {
    let device = Device::flex();
    let mut s = spec(CellKind::Lstm, Activation::Tanh, 1, 4, true);
    s.projection = Some(5);
    s.conv = vec![
        conv(6, 3, 1, ConvActivation::Relu),
        conv(7, 2, 2, ConvActivation::None),
    ];
    s.attention = Some(attention(AttentionKind::Transformer, 4, 0.0));
    let m = Model::new(
        &s,
        InputKind::Numeric { features: 3 },
        HeadKind::Regression { outputs: 2 },
        0,
        &device,
    )
    .unwrap();
    let infos = m.layer_infos();
    let names: Vec<&str> = infos.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "projection",
            "conv0",
            "conv1",
            "bilstm0",
            "transformer",
            "head"
        ]
    );
    assert_eq!(infos[1].input, BoundaryShape::Seq { features: 5 });
    assert_eq!(infos[1].output, BoundaryShape::Seq { features: 6 });
    assert_eq!(infos[2].output, BoundaryShape::Seq { features: 7 });
    assert_eq!(infos[3].input, BoundaryShape::Seq { features: 7 });
    assert_eq!(infos[4].input, BoundaryShape::Seq { features: 8 });
    assert_eq!(infos[4].output, BoundaryShape::Seq { features: 8 });
    for w in infos.windows(2) {
        assert_eq!(w[0].output, w[1].input, "layers chain");
    }
    // conv: channels x in x kernel + channels
    assert_eq!(infos[1].params, 6 * 5 * 3 + 6);
    assert_eq!(infos[2].params, 7 * 6 * 2 + 7);
    // in_proj 8x24 + 16 (query and value biases), out_proj 8x8+8, ff 8x7+7 and 7x8+8, two
    // norms 2x8
    assert_eq!(
        infos[4].params,
        8 * 24 + 16 + 8 * 8 + 8 + 8 * 7 + 7 + 7 * 8 + 8 + 32
    );
    assert_eq!(
        infos.iter().map(|i| i.params).sum::<usize>(),
        flat::param_count(&m)
    );
    let build = |seed| {
        flat::flatten_params(
            &Model::new(
                &s,
                InputKind::Numeric { features: 3 },
                HeadKind::Regression { outputs: 2 },
                seed,
                &device,
            )
            .unwrap(),
        )
    };
    assert_eq!(build(3), build(3), "same seed, same parameters");
    assert_ne!(build(3), build(4), "another seed, other parameters");
    // A plain model's parameters are a prefix-compatible draw: adding the hybrids never
    // changes the values drawn before them (the projection comes first).
    let mut plain = s.clone();
    plain.conv.clear();
    plain.attention = None;
    let p = flat::flatten_params(
        &Model::new(
            &plain,
            InputKind::Numeric { features: 3 },
            HeadKind::Regression { outputs: 2 },
            3,
            &device,
        )
        .unwrap(),
    );
    assert_eq!(p[..3 * 5 + 5], build(3)[..3 * 5 + 5]);
}

#[test]
fn recurrent_impl_switch_keeps_hybrid_layers() {
    let device = Device::flex();
    let (_, s) = variants().remove(4);
    let m = numeric_model(&s, FEATURES, 2, 6, &device);
    let x = tensor3([3, TIME, FEATURES], 80, &device);
    let run = |m: &Model| {
        vec2(m.forward(
            Batch {
                inputs: Inputs::Numeric(x.clone()),
                mask: mask(&[9, 4, 6], TIME, &device),
            },
            &EVAL,
        ))
    };
    let kernel = run(&m);
    let before = flat::flatten_params(&m);
    let m = m.with_recurrent_impl(RecurrentImpl::BurnOps);
    assert_eq!(flat::flatten_params(&m), before);
    assert_close("burn-ops path", &run(&m), &kernel, 1e-5);
    let m = m.with_recurrent_impl(RecurrentImpl::BurnNnReference);
    assert_close("burn-nn reference", &run(&m), &kernel, 1e-5);
}

#[test]
fn bad_hybrid_settings_are_typed_errors() {
    let device = Device::flex();
    let build = |s: &ModelSpec| {
        Model::new(
            s,
            InputKind::Numeric { features: 3 },
            HeadKind::Regression { outputs: 1 },
            0,
            &device,
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let mut s = spec(CellKind::Gru, Activation::Tanh, 1, 6, false);
    s.conv = vec![
        conv(4, 3, 1, ConvActivation::Relu),
        conv(4, 0, 1, ConvActivation::Relu),
    ];
    assert_eq!(
        build(&s),
        Err("invalid model: model.conv[1].kernel = 0: at least 1".into())
    );
    s.conv.clear();
    s.attention = Some(attention(AttentionKind::SelfAttention, 4, 0.0));
    assert_eq!(
        build(&s),
        Err(
            "invalid model: model.attention.heads = 4: must divide the recurrent output width 6"
                .into()
        )
    );
    s.attention = Some(AttentionSpec {
        ff_hidden: 0,
        ..attention(AttentionKind::Transformer, 3, 0.0)
    });
    assert_eq!(
        build(&s),
        Err(
            "invalid model: model.attention.ff_hidden = 0: at least 1 for the transformer block"
                .into()
        )
    );
}
