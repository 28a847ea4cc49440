//! A model cut into two stages with `forward_range` gives the unsplit outputs and, with the
//! boundary recipe of BURN.md, the unsplit gradients — dropout included.

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use ringtrain_models::{Batch, Boundary, ForwardCtx, HeadKind, InputKind, Inputs, Model, flat};
use ringtrain_spec::{CellKind, Pooling};

use crate::*;

const LENGTHS: [usize; 3] = [5, 2, 4];
const TIME: usize = 5;

fn input(device: &Device) -> Boundary {
    let ids: Vec<i64> = (0..LENGTHS.len() * TIME)
        .map(|i| 1 + (i * 7 % 11) as i64)
        .collect();
    Batch {
        inputs: Inputs::Tokens(tokens(ids, [LENGTHS.len(), TIME], device)),
        mask: mask(&LENGTHS, TIME, device),
    }
    .into()
}

#[test]
fn split_forward_and_backward_equal_unsplit() {
    let device = Device::flex().autodiff();
    for (cell, bi) in [
        (CellKind::Gru, true),
        (CellKind::Lstm, false),
        (CellKind::Lstm, true),
    ] {
        let mut s = spec(cell, ringtrain_spec::Activation::Tanh, 3, 6, bi);
        s.dropout = 0.3;
        let model = Model::new(
            &s,
            InputKind::Tokens { vocab: 12 },
            HeadKind::Classes {
                classes: 3,
                pooling: Pooling::Mean,
            },
            8,
            &device,
        )
        .unwrap();
        let n = model.num_layers();
        assert_eq!(n, 5, "embedding + 3 recurrent + head");
        let ctx = ForwardCtx {
            train: true,
            dropout_seed: 77,
        };
        let r = tensor2([LENGTHS.len(), 3], 51, &device);

        let y = out(model.forward_range(0..n, input(&device), &ctx).unwrap());
        let whole_out = vec2(y.clone());
        let whole = flat::flatten_grads(
            &model,
            &GradientsParams::from_grads((y * r.clone()).sum().backward(), &model),
        );

        for k in 1..n {
            let case = format!("{cell:?} bi={bi} split at {k}");
            let (x, mask) = seq(model.forward_range(0..k, input(&device), &ctx).unwrap());
            // Downstream stage: the received activation is a fresh leaf.
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
            // Upstream stage: backward of <output, upstream gradient>.
            let gx = Tensor::<3>::from_data(gx.into_data(), &device);
            let up = flat::flatten_grads(
                &model,
                &GradientsParams::from_grads((x * gx).sum().backward(), &model),
            );
            let split: Vec<f32> = up.iter().zip(&down).map(|(a, b)| a + b).collect();
            assert_close(&case, &split, &whole, 1e-5);
        }
        // Without dropout the training forward would differ: the masks really are drawn.
        let y_eval = vec2(
            model
                .forward_range(0..n, input(&device), &EVAL)
                .map(out)
                .unwrap(),
        );
        assert!(
            max_diff(&y_eval, &whole_out) > 1e-6,
            "dropout is active in training mode"
        );
    }
}
