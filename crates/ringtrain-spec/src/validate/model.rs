//! `[model]` and `[task]`.

use super::{Checker, Kind};
use crate::error::FieldError;
use crate::raw::*;
use crate::types::*;

const CELLS: &[(&str, CellKind)] = &[
    ("rnn", CellKind::Rnn),
    ("lstm", CellKind::Lstm),
    ("gru", CellKind::Gru),
];
const ACTIVATIONS: &[(&str, Activation)] =
    &[("tanh", Activation::Tanh), ("relu", Activation::Relu)];
const CONV_ACTIVATIONS: &[(&str, ConvActivation)] = &[
    ("relu", ConvActivation::Relu),
    ("tanh", ConvActivation::Tanh),
    ("none", ConvActivation::None),
];
const ATTENTION_KINDS: &[(&str, AttentionKind)] = &[
    ("self", AttentionKind::SelfAttention),
    ("transformer", AttentionKind::Transformer),
];
const LOSSES: &[(&str, ForecastLoss)] = &[("mse", ForecastLoss::Mse), ("mae", ForecastLoss::Mae)];
const SEQ2SEQ_ATTENTIONS: &[(&str, Seq2seqAttention)] = &[
    ("bahdanau", Seq2seqAttention::Bahdanau),
    ("luong_dot", Seq2seqAttention::LuongDot),
    ("luong_general", Seq2seqAttention::LuongGeneral),
];
const POOLINGS: &[(&str, Pooling)] = &[
    ("last", Pooling::Last),
    ("mean", Pooling::Mean),
    ("max", Pooling::Max),
];

pub(super) fn model(c: &mut Checker, m: Option<&RawModel>, kind: Option<Kind>) -> ModelSpec {
    let default = RawModel::default();
    let m = match m {
        Some(m) => m,
        None => {
            c.err(
                "model",
                "(missing)",
                "required section: [model] with at least `cell`",
            );
            &default
        }
    };
    let cell = if m.cell.is_none() {
        c.err("model.cell", "(missing)", "required: rnn | lstm | gru");
        CellKind::Lstm
    } else {
        c.choice("model.cell", m.cell.as_deref(), CellKind::Lstm, CELLS)
    };
    let activation = c.choice(
        "model.activation",
        m.activation.as_deref(),
        Activation::Tanh,
        ACTIVATIONS,
    );
    if cell != CellKind::Rnn && m.activation.is_some() {
        c.forbid(
            "model.activation",
            &m.activation,
            "only the rnn cell has a configurable activation",
        );
    }
    let layers = c.int("model.layers", m.layers, 1, 1, 64);
    let hidden = c.int("model.hidden", m.hidden, 64, 1, 65_536);
    let dropout = c.float(
        "model.dropout",
        m.dropout,
        0.0,
        |x| (0.0..1.0).contains(&x),
        "a probability in [0, 1)",
    );
    let embedding_dim = c.int("model.embedding_dim", m.embedding_dim, 64, 1, 65_536);
    let projection = m
        .projection
        .map(|p| c.int("model.projection", Some(p), 1, 1, 65_536));
    match kind {
        Some(Kind::Forecast) => c.forbid(
            "model.embedding_dim",
            &m.embedding_dim,
            "forecast inputs are numeric; use model.projection",
        ),
        Some(Kind::Classify) => c.forbid(
            "model.projection",
            &m.projection,
            "classify inputs are tokens; use model.embedding_dim",
        ),
        Some(Kind::Seq2seq) => c.forbid(
            "model.projection",
            &m.projection,
            "seq2seq inputs are tokens; use model.embedding_dim",
        ),
        Some(Kind::LanguageModel) => c.forbid(
            "model.projection",
            &m.projection,
            "language model inputs are tokens; use model.embedding_dim",
        ),
        None => {}
    }
    let bidirectional = m.bidirectional.unwrap_or(false);
    let conv = m
        .conv
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, raw)| conv(c, i, raw))
        .collect();
    let width = hidden * if bidirectional { 2 } else { 1 };
    let attention = m.attention.as_ref().map(|a| attention(c, a, width));
    ModelSpec {
        cell,
        activation,
        layers,
        hidden,
        bidirectional,
        dropout,
        embedding_dim,
        projection,
        conv,
        attention,
    }
}

/// `model.conv[i]`.
fn conv(c: &mut Checker, i: usize, raw: &RawConv) -> ConvSpec {
    let path = |key: &str| format!("model.conv[{i}].{key}");
    if raw.channels.is_none() {
        c.err(
            &path("channels"),
            "(missing)",
            "required: output channels >= 1",
        );
    }
    if raw.kernel.is_none() {
        c.err(
            &path("kernel"),
            "(missing)",
            "required: kernel width in steps >= 1",
        );
    }
    let channels = c.int(&path("channels"), raw.channels, 1, 1, 65_536);
    let kernel = c.int(&path("kernel"), raw.kernel, 1, 1, 4096);
    let stride = c.int(&path("stride"), raw.stride, 1, 1, 4096);
    if stride > kernel {
        c.err(
            &path("stride"),
            stride,
            format!(
                "must be at most the kernel width {kernel} (a larger stride skips input steps)"
            ),
        );
    }
    let activation = c.choice(
        &path("activation"),
        raw.activation.as_deref(),
        ConvActivation::Relu,
        CONV_ACTIVATIONS,
    );
    ConvSpec {
        channels,
        kernel,
        stride: stride.min(kernel),
        activation,
    }
}

/// `model.attention`; `width` is the recurrent output width it attends over.
fn attention(c: &mut Checker, raw: &RawAttention, width: usize) -> AttentionSpec {
    if raw.kind.is_none() {
        c.err(
            "model.attention.kind",
            "(missing)",
            "required: self | transformer",
        );
    }
    let kind = c.choice(
        "model.attention.kind",
        raw.kind.as_deref(),
        AttentionKind::SelfAttention,
        ATTENTION_KINDS,
    );
    let heads = c.int("model.attention.heads", raw.heads, 1, 1, 4096);
    if !width.is_multiple_of(heads) {
        c.err(
            "model.attention.heads",
            heads,
            format!("must divide the recurrent output width {width} (model.hidden x directions)"),
        );
    }
    let dropout = c.float(
        "model.attention.dropout",
        raw.dropout,
        0.0,
        |x| (0.0..1.0).contains(&x),
        "a probability in [0, 1)",
    );
    let ff_hidden = match kind {
        AttentionKind::Transformer => c.int(
            "model.attention.ff_hidden",
            raw.ff_hidden,
            (4 * width).min(262_144) as i64,
            1,
            262_144,
        ),
        AttentionKind::SelfAttention => {
            c.forbid(
                "model.attention.ff_hidden",
                &raw.ff_hidden,
                "only the transformer block has a feed-forward layer",
            );
            0
        }
    };
    AttentionSpec {
        kind,
        heads,
        dropout,
        ff_hidden,
    }
}

/// `[task]` and, for its kind, the data preparation under `[data]` (`d`), which the kind's
/// [`TaskSpec`] variant carries. `None` when the kind is missing or unknown (already reported).
pub(super) fn task(
    c: &mut Checker,
    t: &RawTask,
    d: &RawData,
    kind: Option<Kind>,
) -> Option<TaskSpec> {
    if kind? != Kind::Seq2seq {
        let why = "only for task.kind = \"seq2seq\"";
        c.forbid("task.attention", &t.attention, why);
        c.forbid("task.teacher_forcing", &t.teacher_forcing, why);
        c.forbid("task.beam_width", &t.beam_width, why);
        c.forbid("task.length_penalty", &t.length_penalty, why);
    }
    match kind? {
        Kind::Forecast => {
            let why = "only for task.kind = \"classify\"";
            c.forbid("task.pooling", &t.pooling, why);
            c.forbid("task.class_weights", &t.class_weights, why);
            c.forbid(
                "task.bptt",
                &t.bptt,
                "only for task.kind = \"language_model\"",
            );
            Some(TaskSpec::Forecast {
                horizon: c.int("task.horizon", t.horizon, 1, 1, 100_000),
                loss: c.choice("task.loss", t.loss.as_deref(), ForecastLoss::Mse, LOSSES),
                season: t
                    .season
                    .map(|s| c.int("task.season", Some(s), 1, 1, 1_000_000)),
                series: super::data::series(c, d),
            })
        }
        Kind::Classify => {
            let why = "only for task.kind = \"forecast\"";
            c.forbid("task.horizon", &t.horizon, why);
            c.forbid(
                "task.loss",
                &t.loss,
                "classification always uses cross-entropy",
            );
            c.forbid("task.season", &t.season, why);
            c.forbid(
                "task.bptt",
                &t.bptt,
                "only for task.kind = \"language_model\"",
            );
            let mut class_weights = Vec::new();
            for (label, w) in t.class_weights.iter().flatten() {
                let path = format!("task.class_weights.{label}");
                class_weights.push((
                    label.clone(),
                    c.float(&path, Some(*w), 1.0, |x| x > 0.0, "a finite number > 0"),
                ));
            }
            Some(TaskSpec::Classify {
                pooling: c.choice(
                    "task.pooling",
                    t.pooling.as_deref(),
                    Pooling::Last,
                    POOLINGS,
                ),
                class_weights,
                text: super::data::text(c, d),
            })
        }
        Kind::Seq2seq => {
            c.forbid(
                "task.horizon",
                &t.horizon,
                "only for task.kind = \"forecast\"",
            );
            c.forbid(
                "task.loss",
                &t.loss,
                "seq2seq always uses token cross-entropy",
            );
            c.forbid(
                "task.season",
                &t.season,
                "only for task.kind = \"forecast\"",
            );
            c.forbid(
                "task.pooling",
                &t.pooling,
                "only for task.kind = \"classify\"",
            );
            c.forbid(
                "task.class_weights",
                &t.class_weights,
                "only for task.kind = \"classify\"",
            );
            Some(TaskSpec::Seq2seq {
                attention: c.choice(
                    "task.attention",
                    t.attention.as_deref(),
                    Seq2seqAttention::Bahdanau,
                    SEQ2SEQ_ATTENTIONS,
                ),
                teacher_forcing: c.float(
                    "task.teacher_forcing",
                    t.teacher_forcing,
                    1.0,
                    |x| (0.0..=1.0).contains(&x),
                    "a ratio in [0, 1]",
                ),
                beam_width: c.int("task.beam_width", t.beam_width, 1, 1, 1024),
                length_penalty: c.float(
                    "task.length_penalty",
                    t.length_penalty,
                    0.0,
                    |x| x >= 0.0,
                    "a finite number >= 0",
                ),
                pairs: super::data::pairs(c, d),
            })
        }
        Kind::LanguageModel => {
            let why = "not used by task.kind = \"language_model\"";
            c.forbid("task.horizon", &t.horizon, why);
            c.forbid(
                "task.loss",
                &t.loss,
                "a language model always uses per-token cross-entropy",
            );
            c.forbid("task.season", &t.season, why);
            c.forbid("task.pooling", &t.pooling, why);
            c.forbid("task.class_weights", &t.class_weights, why);
            Some(TaskSpec::LanguageModel {
                bptt: c.int("task.bptt", t.bptt, 64, 1, 100_000),
                corpus: super::data::corpus(c, d),
            })
        }
    }
}

/// The checks a causal kind ([`crate::TaskKind::causal`], a language model) needs beyond each
/// field's own range: every layer must be causal (a step may not read later steps, which are
/// the very tokens it predicts). Its pipeline refusal is checked with the pipeline.
pub(super) fn check_language_model(spec: &JobSpec) -> Vec<FieldError> {
    if !spec.task.kind().causal() {
        return Vec::new();
    }
    let mut errors = Vec::new();
    let mut err = |path: &str, value: String, message: &str| {
        errors.push(FieldError {
            path: path.into(),
            value,
            message: message.into(),
        })
    };
    if spec.model.bidirectional {
        err(
            "model.bidirectional",
            "true".into(),
            "must be false for a language model (the backward direction reads the tokens it predicts)",
        );
    }
    if !spec.model.conv.is_empty() {
        err(
            "model.conv",
            format!("{} layer(s)", spec.model.conv.len()),
            "not allowed for a language model (same-padded Conv1d reads later steps)",
        );
    }
    if spec.model.attention.is_some() {
        err(
            "model.attention",
            "(set)".into(),
            "not allowed for a language model (self-attention reads later steps)",
        );
    }
    errors
}

#[cfg(test)]
mod tests {
    use crate::{SpecFormat, layer_count, parse_str, types::*};

    fn parse(model: &str) -> JobSpec {
        let text =
            format!("[model]\n{model}\n[task]\nkind = \"classify\"\n[data]\npath = \"t.csv\"\n");
        match parse_str(&text, SpecFormat::Toml, "<t>", "t") {
            Ok(s) => s,
            Err(e) => panic!("{model}: {e}"),
        }
    }

    #[test]
    fn hybrid_defaults_and_layer_count() {
        let s = parse(
            "cell = \"gru\"\nhidden = 8\nbidirectional = true\nlayers = 2\n\
             conv = [{ channels = 4, kernel = 3 }, { channels = 6, kernel = 4, stride = 2, activation = \"none\" }]\n\
             attention = { kind = \"transformer\", heads = 4 }",
        );
        assert_eq!(
            s.model.conv,
            vec![
                ConvSpec {
                    channels: 4,
                    kernel: 3,
                    stride: 1,
                    activation: ConvActivation::Relu
                },
                ConvSpec {
                    channels: 6,
                    kernel: 4,
                    stride: 2,
                    activation: ConvActivation::None
                },
            ]
        );
        assert_eq!(
            s.model.attention,
            Some(AttentionSpec {
                kind: AttentionKind::Transformer,
                heads: 4,
                dropout: 0.0,
                ff_hidden: 64, // 4 x (8 hidden x 2 directions)
            })
        );
        // embedding + 2 conv + 2 recurrent + attention + head
        assert_eq!(layer_count(&s.model, &s.task), 7);
        let plain = parse("cell = \"gru\"");
        assert!(plain.model.conv.is_empty() && plain.model.attention.is_none());
        assert_eq!(layer_count(&plain.model, &plain.task), 3);
    }

    #[test]
    fn plain_models_serialize_without_hybrid_keys() {
        // Checkpoints written before hybrids existed compare their stored spec field by field.
        let plain = parse("cell = \"lstm\"");
        let json = serde_json::to_value(&plain.model).unwrap_or_default();
        assert!(json.get("conv").is_none() && json.get("attention").is_none());
        let back: ModelSpec = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, plain.model);
        let hybrid = parse(
            "cell = \"lstm\"\nattention = { kind = \"self\", heads = 2 }\nconv = [{ channels = 3, kernel = 5 }]",
        );
        let json = serde_json::to_string(&hybrid.model).unwrap_or_default();
        let back: ModelSpec = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, hybrid.model);
        assert!(json.contains("\"kind\":\"self\""), "{json}");
    }
}
