//! The spec's `layer_count` (used to validate pipeline stages) agrees with the layer list the
//! model crate actually builds, for every input block and head.

use burn::prelude::*;
use ringtrain_models::{HeadKind, InputKind, Model};
use ringtrain_spec::{SpecFormat, layer_count, parse_str};

#[test]
fn spec_layer_count_matches_the_built_model() {
    let cases = [
        ("forecast", "", 1),
        ("forecast", "projection = 8", 3),
        ("classify", "", 2),
        ("language_model", "", 2),
    ];
    for (kind, extra, layers) in cases {
        let data = if kind == "forecast" {
            "features = [\"a\"]\nwindow = 4"
        } else {
            ""
        };
        let file = if kind == "language_model" {
            "x.txt"
        } else {
            "x.csv"
        };
        let text = format!(
            "[model]\ncell = \"gru\"\nlayers = {layers}\n{extra}\n[task]\nkind = \"{kind}\"\n[data]\npath = \"{file}\"\n{data}\n"
        );
        let spec = parse_str(&text, SpecFormat::Toml, "<t>", "t").unwrap();
        let (input, head) = if kind == "forecast" {
            (
                InputKind::Numeric { features: 1 },
                HeadKind::Regression { outputs: 1 },
            )
        } else if kind == "language_model" {
            (
                InputKind::Tokens { vocab: 10 },
                HeadKind::NextToken { vocab: 10 },
            )
        } else {
            (
                InputKind::Tokens { vocab: 10 },
                HeadKind::Classes {
                    classes: 2,
                    pooling: ringtrain_spec::Pooling::Last,
                },
            )
        };
        let model = Model::new(&spec.model, input, head, 0, &Device::flex()).unwrap();
        assert_eq!(
            layer_count(&spec.model, &spec.task),
            model.num_layers(),
            "{kind} {extra} layers={layers}"
        );
    }
}

#[test]
fn seq2seq_layer_count_matches_the_built_model() {
    for (extra, attention) in [
        ("bidirectional = true", "bahdanau"),
        (
            "layers = 2\nconv = [{ channels = 4, kernel = 3 }]",
            "luong_dot",
        ),
        (
            "attention = { kind = \"self\", heads = 2 }",
            "luong_general",
        ),
    ] {
        let text = format!(
            "[model]\ncell = \"lstm\"\nhidden = 8\n{extra}\n[task]\nkind = \"seq2seq\"\n\
             attention = \"{attention}\"\n[data]\npath = \"x.tsv\"\n"
        );
        let spec = parse_str(&text, SpecFormat::Toml, "<t>", "t").unwrap();
        let head = HeadKind::Decoder(ringtrain_models::DecoderConfig {
            vocab: 9,
            attention: match attention {
                "bahdanau" => ringtrain_spec::Seq2seqAttention::Bahdanau,
                "luong_dot" => ringtrain_spec::Seq2seqAttention::LuongDot,
                _ => ringtrain_spec::Seq2seqAttention::LuongGeneral,
            },
            teacher_forcing: 1.0,
            bos: 2,
            eos: 3,
        });
        let model = Model::new(
            &spec.model,
            InputKind::Tokens { vocab: 10 },
            head,
            0,
            &Device::flex(),
        )
        .unwrap();
        assert_eq!(
            layer_count(&spec.model, &spec.task),
            model.num_layers(),
            "{extra} {attention}"
        );
        assert_eq!(
            model.layer_infos().last().map(|l| l.name.as_str()),
            Some("decoder")
        );
        assert!(model.decoder().is_some());
    }
}
