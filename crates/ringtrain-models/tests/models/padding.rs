//! A sequence padded inside a longer batch gives the same outputs as the sequence alone, for
//! every cell, both directions, every pooling and both input kinds; padded steps output zero.

use burn::tensor::{Device, Tensor, TensorData};
use ringtrain_models::{Batch, Boundary, HeadKind, InputKind, Inputs, Model};
use ringtrain_spec::Pooling;

use crate::*;

const LENGTHS: [usize; 3] = [6, 3, 1];
const TIME: usize = 6;
const FEATURES: usize = 4;
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

/// Numeric batch whose padded positions hold garbage (non-zero) values on purpose.
fn numeric_case(model: &Model, case: &str, device: &Device) {
    let all = values(LENGTHS.len() * TIME * FEATURES, 31);
    let x = Tensor::<3>::from_data(
        TensorData::new(all.clone(), [LENGTHS.len(), TIME, FEATURES]),
        device,
    );
    let batch = Batch {
        inputs: Inputs::Numeric(x.clone()),
        mask: mask(&LENGTHS, TIME, device),
    };
    let together = vec2(model.forward(batch, &EVAL));
    let n = model.num_layers();
    let (seq_all, _) = seq(model
        .forward_range(
            0..n - 1,
            Boundary::Seq {
                x,
                mask: mask(&LENGTHS, TIME, device),
            },
            &EVAL,
        )
        .unwrap());
    let seq_all = vec3(seq_all);
    let width = seq_all.len() / (LENGTHS.len() * TIME);
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
            d <= 1e-6,
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
        let padded = &seq_all[i * TIME * width..(i + 1) * TIME * width];
        let d = max_diff(&si, &padded[..len * width]);
        assert!(
            d <= 1e-6,
            "{case}: sample {i} sequence output differs by {d:e}"
        );
        assert!(
            padded[len * width..].iter().all(|v| *v == 0.0),
            "{case}: padded steps output zero"
        );
    }
}

/// Token batch whose padded positions hold non-pad ids on purpose.
fn token_case(model: &Model, case: &str, device: &Device) {
    let ids: Vec<i64> = values(LENGTHS.len() * TIME, 41)
        .iter()
        .map(|v| 1 + ((v + 1.0) * 4.4) as i64 % (VOCAB as i64 - 1))
        .collect();
    let batch = Batch {
        inputs: Inputs::Tokens(tokens(ids.clone(), [LENGTHS.len(), TIME], device)),
        mask: mask(&LENGTHS, TIME, device),
    };
    let together = vec2(model.forward(batch, &EVAL));
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
            d <= 1e-6,
            "{case}: sample {i} (length {len}) differs by {d:e} when padded"
        );
    }
}

#[test]
fn padding_never_changes_a_result() {
    let device = Device::flex();
    for (cell, act, label) in CELLS {
        for bi in [false, true] {
            for head in heads() {
                let case = format!("{label} bi={bi} {head:?}");
                let s = spec(cell, act, 2, 5, bi);
                let m = Model::new(
                    &s,
                    InputKind::Numeric { features: FEATURES },
                    head,
                    4,
                    &device,
                )
                .unwrap();
                numeric_case(&m, &format!("numeric {case}"), &device);
                let m =
                    Model::new(&s, InputKind::Tokens { vocab: VOCAB }, head, 4, &device).unwrap();
                token_case(&m, &format!("tokens {case}"), &device);
            }
        }
    }
}
