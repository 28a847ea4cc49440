//! Using a trained model without its training data: rebuild the model a checkpoint describes
//! (input block and head follow from the fitted normalizer or vocabulary), forecast past the end
//! of a series, classify text.

use crate::checkpoint::Checkpoint;
use crate::error::TrainError;
use crate::tensors::{numeric_batch, to_vec, token_batch};
use burn::prelude::*;
use ringtrain_data::{Fitted, PredictInput, TextBatch};
use ringtrain_models::{ForwardCtx, Model, flat};
use ringtrain_spec::TaskSpec;

/// Rebuilds the checkpoint's model with its trained parameters on `device`.
///
/// # Errors
/// [`TrainError::Model`] when the parameters do not fit the architecture, or
/// [`TrainError::KindMismatch`] when the fitted state is not the task's (a corrupt or foreign
/// checkpoint).
pub fn load_model(ckpt: &Checkpoint, device: &Device) -> Result<Model, TrainError> {
    Ok(flat::load_params(skeleton(ckpt, device)?, &ckpt.params)?)
}

/// The architecture the checkpoint describes, with its seeded initial weights rather than the
/// trained ones: what the exports need to lay out `ckpt.params`.
///
/// # Errors
/// As [`load_model`], except the parameter count, which is not checked here.
pub(crate) fn skeleton(ckpt: &Checkpoint, device: &Device) -> Result<Model, TrainError> {
    let (input, head) = crate::task::model_shape(ckpt)?;
    let spec = &ckpt.header.spec;
    Ok(Model::new(&spec.model, input, head, spec.seed, device)?)
}

/// Forecasts the next `horizon` steps after `input`, in original units, `[horizon][targets]`.
///
/// # Errors
/// [`TrainError::Input`] when the window does not match the model.
pub fn forecast(
    model: &Model,
    ckpt: &Checkpoint,
    input: PredictInput,
    device: &Device,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let Fitted::Series(normalizer) = &ckpt.header.fitted else {
        return Err(TrainError::Input(
            "this checkpoint is a classifier, not a forecaster".into(),
        ));
    };
    let TaskSpec::Forecast {
        horizon,
        season,
        series,
        ..
    } = &ckpt.header.spec.task
    else {
        return Err(TrainError::Input(
            "this checkpoint is not a forecaster (task.kind = \"forecast\")".into(),
        ));
    };
    let (mode, horizon, season) = (series.forecast_mode, *horizon, *season);
    // Delta-mode outputs are changes from the last observed (or last season's) value.
    let offsets = input.offsets(mode, season, horizon);
    let batch = numeric_batch(input.x, 1, input.window, input.features, device);
    let mut y = to_vec(model.forward(batch, &ForwardCtx::eval()));
    let targets = normalizer.targets.len().max(1);
    normalizer.outputs_to_original(&mut y, &offsets);
    Ok(y.chunks(targets).map(<[f32]>::to_vec).collect())
}

/// Class probabilities of each text, `[texts][classes]` (softmax of the logits).
///
/// # Errors
/// [`TrainError::Input`] when the checkpoint is not a classifier.
pub fn classify(
    model: &Model,
    ckpt: &Checkpoint,
    texts: &[String],
    device: &Device,
) -> Result<Vec<Vec<f32>>, TrainError> {
    let Fitted::Text { vocab, labels } = &ckpt.header.fitted else {
        return Err(TrainError::Input(
            "this checkpoint is a forecaster, not a classifier".into(),
        ));
    };
    let mut out = Vec::with_capacity(texts.len());
    for chunk in texts.chunks(64) {
        let seqs: Vec<Vec<u32>> = chunk.iter().map(|t| vocab.encode(t)).collect();
        let batch = token_batch(TextBatch::new(&seqs, Vec::new()), device);
        let logits = to_vec(model.forward(batch, &ForwardCtx::eval()));
        for row in logits.chunks(labels.len()) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exp: Vec<f32> = row.iter().map(|&v| (v - max).exp()).collect();
            let sum: f32 = exp.iter().sum();
            out.push(exp.iter().map(|e| e / sum).collect());
        }
    }
    Ok(out)
}
