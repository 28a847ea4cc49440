//! Flat parameter/gradient buffers, seeds, layer descriptions and shape errors.

use burn::module::{Module, ModuleVisitor, Param, list_param_ids};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use ringtrain_models::{
    Batch, Boundary, BoundaryShape, HeadKind, InputKind, Inputs, Model, ModelError, flat,
};
use ringtrain_spec::{Activation, CellKind, Pooling};

use crate::*;

#[test]
fn flat_round_trip_is_exact_and_keeps_ids_and_trainability() {
    let device = Device::flex().autodiff();
    let s = spec(CellKind::Lstm, Activation::Tanh, 2, 5, true);
    let a = numeric_model(&s, 3, 2, 1, &device);
    let b = numeric_model(&s, 3, 2, 2, &device);
    let flat_a = flat::flatten_params(&a);
    assert_eq!(flat_a.len(), flat::param_count(&a));
    let ids_b = list_param_ids(&b);
    let b = flat::load_params(b, &flat_a).unwrap();
    assert_eq!(flat::flatten_params(&b), flat_a, "values bit-identical");
    assert_eq!(list_param_ids(&b), ids_b, "ids kept");

    // Still trainable: every parameter gets a non-zero gradient after loading.
    let x = tensor3([2, 4, 3], 3, &device);
    let y = b.forward(
        Batch {
            inputs: Inputs::Numeric(x),
            mask: mask(&[4, 3], 4, &device),
        },
        &EVAL,
    );
    let grads = GradientsParams::from_grads(y.sum().backward(), &b);
    struct All<'a>(&'a GradientsParams, Vec<f32>, usize);
    impl ModuleVisitor for All<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = self
                .0
                .get::<D>(p.id)
                .expect("every parameter has a gradient");
            self.1
                .extend(g.into_data().convert::<f32>().try_to_vec::<f32>().unwrap());
            self.2 += 1;
        }
    }
    let mut all = All(&grads, Vec::new(), 0);
    b.visit(&mut all);
    assert_eq!(all.2, ids_b.len());
    assert_eq!(
        flat::flatten_grads(&b, &grads),
        all.1,
        "flat grads follow visit order"
    );
    assert!(max_abs(&all.1) > 0.0);

    match flat::load_params(b, &flat_a[1..]) {
        Err(ModelError::ParamCount { expected, got }) => {
            assert_eq!((expected, got), (flat_a.len(), flat_a.len() - 1))
        }
        other => panic!("expected a count error, got {other:?}"),
    }
}

#[test]
fn flatten_grads_fills_zeros_for_missing_parameters() {
    let device = Device::flex().autodiff();
    let s = spec(CellKind::Gru, Activation::Tanh, 2, 4, false);
    let m = numeric_model(&s, 3, 2, 1, &device);
    // Only the last two layers take part: the first recurrent layer gets no gradient.
    let x = tensor3([2, 3, 4], 5, &device);
    let y = out(m
        .forward_range(
            1..3,
            Boundary::Seq {
                x,
                mask: mask(&[3, 3], 3, &device),
            },
            &EVAL,
        )
        .unwrap());
    let g = flat::flatten_grads(&m, &GradientsParams::from_grads(y.sum().backward(), &m));
    let first = m.layer_infos()[0].params;
    assert!(g[..first].iter().all(|v| *v == 0.0));
    assert!(max_abs(&g[first..]) > 0.0);
}

#[test]
fn same_seed_same_parameters_different_seed_different() {
    let device = Device::flex();
    for (cell, act, label) in CELLS {
        let s = spec(cell, act, 2, 6, true);
        let tok = |seed| {
            Model::new(
                &s,
                InputKind::Tokens { vocab: 9 },
                HeadKind::Classes {
                    classes: 2,
                    pooling: Pooling::Max,
                },
                seed,
                &device,
            )
            .unwrap()
        };
        assert_eq!(
            flat::flatten_params(&tok(5)),
            flat::flatten_params(&tok(5)),
            "{label}"
        );
        assert_ne!(
            flat::flatten_params(&tok(5)),
            flat::flatten_params(&tok(6)),
            "{label}"
        );
        let mut p = s.clone();
        p.projection = Some(3);
        let a = Model::new(
            &p,
            InputKind::Numeric { features: 2 },
            HeadKind::Regression { outputs: 1 },
            5,
            &device,
        )
        .unwrap();
        let b = Model::new(
            &p,
            InputKind::Numeric { features: 2 },
            HeadKind::Regression { outputs: 1 },
            5,
            &device,
        )
        .unwrap();
        assert_eq!(
            flat::flatten_params(&a),
            flat::flatten_params(&b),
            "{label}"
        );
        // Embedding row 0 (<pad>) is zero.
        let e = flat::flatten_params(&tok(5));
        assert!(e[..s.embedding_dim].iter().all(|v| *v == 0.0));
        assert!(
            e[s.embedding_dim..2 * s.embedding_dim]
                .iter()
                .any(|v| *v != 0.0)
        );
    }
}

#[test]
fn layer_infos_describe_every_boundary() {
    let device = Device::flex();
    let mut s = spec(CellKind::Lstm, Activation::Tanh, 2, 8, true);
    s.projection = Some(6);
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
    assert_eq!(names, ["projection", "bilstm0", "bilstm1", "head"]);
    assert_eq!(infos[0].input, BoundaryShape::Seq { features: 3 });
    assert_eq!(infos[0].output, BoundaryShape::Seq { features: 6 });
    assert_eq!(infos[1].output, BoundaryShape::Seq { features: 16 });
    assert_eq!(infos[2].input, BoundaryShape::Seq { features: 16 });
    assert_eq!(infos[3].output, BoundaryShape::Out { width: 2 });
    // lstm: 2 directions x (in*4H + H*4H + 2*4H)
    assert_eq!(infos[1].params, 2 * (6 * 32 + 8 * 32 + 64));
    assert_eq!(infos[3].params, 16 * 2 + 2);
    assert_eq!(
        infos.iter().map(|i| i.params).sum::<usize>(),
        flat::param_count(&m)
    );
    for w in infos.windows(2) {
        assert_eq!(w[0].output, w[1].input, "layers chain");
    }

    let s = spec(CellKind::Gru, Activation::Tanh, 1, 4, false);
    let t = Model::new(
        &s,
        InputKind::Tokens { vocab: 7 },
        HeadKind::Classes {
            classes: 2,
            pooling: Pooling::Last,
        },
        0,
        &device,
    )
    .unwrap();
    let infos = t.layer_infos();
    assert_eq!(infos[0].name, "embedding");
    assert_eq!(infos[0].input, BoundaryShape::Tokens);
    assert_eq!(infos[0].params, 7 * 6);
    assert_eq!(infos[1].name, "gru0");
}

#[test]
fn shape_errors_name_the_layer() {
    let device = Device::flex();
    let s = spec(CellKind::Lstm, Activation::Tanh, 2, 4, false);
    let m = numeric_model(&s, 3, 1, 0, &device);
    let bad = Boundary::Seq {
        x: tensor3([2, 3, 5], 1, &device),
        mask: mask(&[3, 3], 3, &device),
    };
    let err = m.forward_range(1..3, bad, &EVAL).unwrap_err();
    assert_eq!(
        err.to_string(),
        "layer 1 (lstm1) expects input seq [B, T, 4] but got seq [2, 3, 5] with mask [2, 3]"
    );
    let err = m
        .forward_range(2..2, Boundary::Out(tensor2([1, 1], 0, &device)), &EVAL)
        .unwrap_err();
    assert_eq!(
        err,
        ModelError::Range {
            start: 2,
            end: 2,
            layers: 3
        }
    );
    assert!(
        m.forward_range(0..4, Boundary::Out(tensor2([1, 1], 0, &device)), &EVAL)
            .is_err()
    );
    let tokens_in = Batch {
        inputs: Inputs::Tokens(tokens(vec![1, 2], [1, 2], &device)),
        mask: mask(&[2], 2, &device),
    };
    let err = m.try_forward(tokens_in, &EVAL).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("layer 0 (lstm0) expects input seq [B, T, 3] but got tokens"),
        "{err}"
    );

    let mut zero = s.clone();
    zero.hidden = 0;
    let err = Model::new(
        &zero,
        InputKind::Numeric { features: 3 },
        HeadKind::Regression { outputs: 1 },
        0,
        &device,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid model: model.hidden = 0: at least 1 unit"
    );
}
