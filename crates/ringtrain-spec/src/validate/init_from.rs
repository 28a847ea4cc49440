//! `[init_from]`: which checkpoint a run starts from and how the taken layers train. Whether
//! the named layers exist and fit is only known once both models are built; the trainer checks
//! that and names `init_from.layers[i]` the same way.

use super::Checker;
use crate::raw::RawInitFrom;
use crate::types::{InitFormat, InitFrom};
use std::path::PathBuf;

/// Most entries of `init_from.layers` (a model has at most a few dozen layers).
const MAX_LAYERS: usize = 256;
/// Longest layer name accepted (the model's names are short: `bilstm12`, `transformer`).
const MAX_LAYER_NAME: usize = 64;

/// Validates `[init_from]` for a run of `epochs` epochs.
pub(super) fn init_from(
    c: &mut Checker,
    raw: Option<&RawInitFrom>,
    epochs: u32,
) -> Option<InitFrom> {
    let raw = raw?;
    let checkpoint = match raw.checkpoint.as_deref() {
        None => {
            c.err(
                "init_from.checkpoint",
                "(missing)",
                "required: a checkpoint file or run directory to take the weights from",
            );
            String::new()
        }
        Some("") => {
            c.err("init_from.checkpoint", "\"\"", "must be a non-empty path");
            String::new()
        }
        Some(p) => p.to_string(),
    };
    let inferred = if checkpoint.ends_with(".safetensors") {
        InitFormat::Safetensors
    } else {
        InitFormat::Ringtrain
    };
    let format = c.choice(
        "init_from.format",
        raw.format.as_deref(),
        inferred,
        &[
            ("ringtrain", InitFormat::Ringtrain),
            ("safetensors", InitFormat::Safetensors),
        ],
    );
    let layers = raw.layers.as_ref().map(|names| {
        if names.is_empty() {
            c.err(
                "init_from.layers",
                "[]",
                "must name at least one layer (omit the key to take every layer both models have)",
            );
        }
        if names.len() > MAX_LAYERS {
            c.err(
                "init_from.layers",
                format!("{} entries", names.len()),
                format!("must have at most {MAX_LAYERS} entries"),
            );
        }
        for (i, name) in names.iter().enumerate().take(MAX_LAYERS) {
            let path = format!("init_from.layers[{i}]");
            if name.is_empty()
                || name.len() > MAX_LAYER_NAME
                || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            {
                c.err(
                    &path,
                    format!("{name:?}"),
                    format!(
                        "must be a layer name such as embedding, lstm0, bigru1, conv0, attention or head \
                         (1..={MAX_LAYER_NAME} letters, digits or '_')"
                    ),
                );
            } else if names[..i].contains(name) {
                c.err(&path, format!("{name:?}"), "is listed twice");
            }
        }
        names.clone()
    });
    let freeze_epochs = c.int(
        "init_from.freeze_epochs",
        raw.freeze_epochs,
        0,
        0,
        i64::from(epochs),
    ) as u32;
    let lr_scale = c.float(
        "init_from.lr_scale",
        raw.lr_scale,
        1.0,
        |x| x > 0.0 && x <= 10.0,
        "in (0, 10] (the learning-rate multiplier of the taken layers)",
    );
    Some(InitFrom {
        checkpoint: PathBuf::from(checkpoint),
        format,
        layers,
        freeze_epochs,
        lr_scale,
    })
}
