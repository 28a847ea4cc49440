//! `[model]` and `[task]`.

use super::{Checker, Kind};
use crate::raw::*;
use crate::types::*;

const CELLS: &[(&str, CellKind)] = &[
    ("rnn", CellKind::Rnn),
    ("lstm", CellKind::Lstm),
    ("gru", CellKind::Gru),
];
const ACTIVATIONS: &[(&str, Activation)] =
    &[("tanh", Activation::Tanh), ("relu", Activation::Relu)];
const LOSSES: &[(&str, ForecastLoss)] = &[("mse", ForecastLoss::Mse), ("mae", ForecastLoss::Mae)];
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
        None => {}
    }
    ModelSpec {
        cell,
        activation,
        layers,
        hidden,
        bidirectional: m.bidirectional.unwrap_or(false),
        dropout,
        embedding_dim,
        projection,
    }
}

pub(super) fn task(c: &mut Checker, t: &RawTask, kind: Option<Kind>) -> Option<TaskSpec> {
    match kind? {
        Kind::Forecast => {
            let why = "only for task.kind = \"classify\"";
            c.forbid("task.pooling", &t.pooling, why);
            c.forbid("task.class_weights", &t.class_weights, why);
            Some(TaskSpec::Forecast {
                horizon: c.int("task.horizon", t.horizon, 1, 1, 100_000),
                loss: c.choice("task.loss", t.loss.as_deref(), ForecastLoss::Mse, LOSSES),
                season: t
                    .season
                    .map(|s| c.int("task.season", Some(s), 1, 1, 1_000_000)),
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
            })
        }
    }
}
