//! Safetensors in PyTorch's layout: `ringtrain export --format safetensors` writes a trained
//! model so that a PyTorch user can load its recurrent stack into one `nn.LSTM` / `nn.GRU` /
//! `nn.RNN` with `load_state_dict`, and `init_from.format = "safetensors"` reads such a file —
//! ringtrain's own export or one written from PyTorch — back into a run ([`TorchFile`]).
//!
//! Names and layouts (the contract a PyTorch user codes against):
//!
//! - Recurrent layer `k` (0 = first) is layer `k` of one PyTorch module named `rnn`:
//!   `rnn.weight_ih_l{k}` `[G·H, in]`, `rnn.weight_hh_l{k}` `[G·H, H]`, `rnn.bias_ih_l{k}` and
//!   `rnn.bias_hh_l{k}` `[G·H]`, with the suffix `_reverse` for the backward direction of a
//!   bidirectional layer. Gate blocks are in PyTorch's order (LSTM i, f, g, o; GRU r, z, n with
//!   the recurrent bias inside the reset product), which is ringtrain's own, so only the
//!   matrices are transposed (ringtrain keeps `[in, G·H]`).
//! - Every other tensor is `{layer}.{field path}`: `embedding.weight` `[vocab, dim]`
//!   (`nn.Embedding`), `projection.weight` / `.bias`, `conv{i}.weight` `[C, in, K]` / `.bias`
//!   (`nn.Conv1d`), `head.linear.weight` / `.bias`, `attention.…`, `decoder.…`. Every burn
//!   `Linear` weight is written transposed to PyTorch's `[out, in]` (`nn.Linear`); other
//!   tensors keep ringtrain's layout.
//! - `__metadata__`: `ringtrain.format` (this layout's version, [`FORMAT`]), `ringtrain.spec`
//!   (the job spec, JSON), `ringtrain.fitted` (the normalizer or vocabulary, JSON) and
//!   `ringtrain.layers` (the layer names, comma-separated).
//!
//! Everything read is untrusted: the file's length is bounded by the run's
//! `limits.max_parameters` before it is read, the safetensors reader checks the header and
//! every tensor's offsets, and each tensor's dtype and shape are checked against the model
//! before a value is copied.

use crate::checkpoint::Checkpoint;
pub use crate::error::ExportError;
use crate::layout::LayerParams;
pub use crate::layout::{TorchTensor, torch_layout};
use burn::prelude::Device;
use ringtrain_data::Fitted;
use ringtrain_models::{Layer, Model};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Version of the layout described in the module documentation, stored as `ringtrain.format`.
pub const FORMAT: &str = "1";

/// Bytes beyond the tensors that a file read for `init_from` may have (the vocabulary of a
/// large text model is the biggest part of its metadata).
pub const METADATA_ALLOWANCE: u64 = 16 << 20;

/// Writes `values` (row-major `rows × cols`) transposed into `out`.
fn push_transposed(out: &mut Vec<f32>, values: &[f32], rows: usize, cols: usize) {
    out.reserve(values.len());
    for c in 0..cols {
        out.extend((0..rows).map(|r| values[r * cols + c]));
    }
}

/// What [`to_safetensors`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct Exported {
    /// The file's bytes.
    pub bytes: Vec<u8>,
    /// Number of tensors.
    pub tensors: usize,
    /// Number of parameters.
    pub parameters: usize,
    /// Input width of the first recurrent layer (`input_size` of the PyTorch module).
    pub recurrent_input: usize,
}

/// The model in `ckpt` as a safetensors file in the PyTorch layout.
///
/// # Errors
/// [`crate::TrainError`] when the checkpoint's model cannot be rebuilt from its spec or its
/// parameter count does not match; [`ExportError::Format`] if the writer refuses (a header
/// over its 100 MB limit).
pub fn to_safetensors(
    ckpt: &Checkpoint,
    precision: Precision,
    extra: HashMap<String, String>,
    path: &Path,
    device: &Device,
) -> Result<Exported, crate::TrainError> {
    let model = crate::inference::skeleton(ckpt, device)?;
    let metadata = metadata(ckpt, extra, path)?;
    serialize_with(&model, &ckpt.params, metadata, precision, path)
}

/// Metadata key of the one-step-ahead validation residuals ([`ResidualStats`] as JSON).
pub const RESIDUALS_KEY: &str = "ringtrain.residuals";

/// The one-step-ahead residuals (actual − forecast, original units) of a forecaster over one
/// split, per target: what `ringtrain-infer --anomaly K` scores new rows against.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResidualStats {
    /// The split measured (`val`, or `test` for a run without a validation split).
    pub split: String,
    /// Samples measured.
    pub samples: u64,
    /// Mean residual per target.
    pub mean: Vec<f64>,
    /// Standard deviation per target (sample deviation, floored at a tiny positive value so
    /// that a perfect fit still scores finite residuals).
    pub std: Vec<f64>,
}

/// The statistics of the first forecast step in `report` (a forecaster's evaluation holding
/// its forecasts and targets, `[samples, horizon × targets]`, step 1 first); `None` when the
/// report has no forecasts or fewer than 2 samples.
pub fn residual_stats(
    report: &crate::evaluate::EvalReport,
    targets: usize,
) -> Option<ResidualStats> {
    let (forecast, actual) = report.forecasts.as_ref()?;
    let samples = report.samples;
    if samples < 2 || targets == 0 || forecast.len() != actual.len() {
        return None;
    }
    let outputs = forecast.len() / samples;
    if outputs < targets || outputs * samples != forecast.len() {
        return None;
    }
    let residual = |s: usize, j: usize| {
        f64::from(actual[s * outputs + j]) - f64::from(forecast[s * outputs + j])
    };
    let n = samples as f64;
    let mean: Vec<f64> = (0..targets)
        .map(|j| (0..samples).map(|s| residual(s, j)).sum::<f64>() / n)
        .collect();
    let std = (0..targets)
        .map(|j| {
            let var = (0..samples)
                .map(|s| (residual(s, j) - mean[j]).powi(2))
                .sum::<f64>()
                / (n - 1.0);
            var.sqrt().max(1e-12 * (1.0 + mean[j].abs()))
        })
        .collect();
    Some(ResidualStats {
        split: crate::report::split_name(report.split).to_string(),
        samples: samples as u64,
        mean,
        std,
    })
}

/// The metadata every export of `ckpt` carries — `ringtrain.spec` (the job spec) and
/// `ringtrain.fitted` (the normalizer or vocabulary), both JSON — plus `extra`.
pub(crate) fn metadata(
    ckpt: &Checkpoint,
    extra: HashMap<String, String>,
    path: &Path,
) -> Result<HashMap<String, String>, ExportError> {
    let json = |what: &str, v: Result<String, serde_json::Error>| {
        v.map_err(|e| ExportError::Metadata {
            path: path.to_path_buf(),
            reason: format!("{what}: {e}"),
        })
    };
    let mut metadata = extra;
    metadata.insert(
        "ringtrain.spec".to_string(),
        json("spec", serde_json::to_string(&ckpt.header.spec))?,
    );
    metadata.insert(
        "ringtrain.fitted".to_string(),
        json("fitted", serde_json::to_string(&ckpt.header.fitted))?,
    );
    Ok(metadata)
}

/// `ckpt`'s parameters replaced by their int8 round trip ([`fake_quantize_int8`]).
///
/// # Errors
/// As [`to_safetensors`] for a checkpoint whose model cannot be rebuilt.
pub fn fake_quantize_checkpoint(
    ckpt: &mut Checkpoint,
    device: &Device,
) -> Result<(), crate::TrainError> {
    let model = crate::inference::skeleton(ckpt, device)?;
    fake_quantize_int8(&model, &mut ckpt.params)
}

/// How an export stores its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Every tensor `F32` (loadable by PyTorch and by `init_from`).
    F32,
    /// Every tensor of two or more dimensions as `I8` with one `F32` scale per output channel
    /// (its first dimension in the file) under `{key}.scale`; vectors stay `F32`. For the
    /// device runtime (`ringtrain-infer`), which keeps the matrices as int8 in RAM.
    Int8,
}

/// Per-output-channel symmetric int8 of `values` (a tensor in file layout whose first
/// dimension has `rows` channels): `scale_r = max|w_r| / 127` (1 for an all-zero or
/// non-finite row), `q = round(w / scale_r)` clamped to `±127`. Each value is off by at most
/// half its row's scale.
pub fn quantize_rows(values: &[f32], rows: usize) -> (Vec<i8>, Vec<f32>) {
    let cols = values.len().checked_div(rows).unwrap_or(0).max(1);
    let mut q = Vec::with_capacity(values.len());
    let mut scales = Vec::with_capacity(rows);
    for row in values.chunks(cols) {
        let max = row.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        let scale = if max > 0.0 && max.is_finite() {
            max / 127.0
        } else {
            1.0
        };
        scales.push(scale);
        q.extend(
            row.iter()
                .map(|v| (v / scale).round().clamp(-127.0, 127.0) as i8),
        );
    }
    (q, scales)
}

/// `t`'s values from the flat buffer in file layout.
pub(crate) fn file_values(t: &TorchTensor, params: &[f32]) -> Vec<f32> {
    let values = &params[t.range.clone()];
    let mut data = Vec::with_capacity(values.len());
    match (t.transposed, t.shape.as_slice()) {
        (true, [rows, cols]) => push_transposed(&mut data, values, *rows, *cols),
        _ => data.extend_from_slice(values),
    }
    data
}

/// `model`'s [`torch_layout`], checked to cover exactly `params`.
pub(crate) fn checked_layout(
    model: &Model,
    params: &[f32],
) -> Result<Vec<TorchTensor>, crate::TrainError> {
    let layout = torch_layout(model);
    let total = layout.last().map_or(0, |t| t.range.end);
    if total != params.len() {
        return Err(ringtrain_models::ModelError::ParamCount {
            expected: total,
            got: params.len(),
        }
        .into());
    }
    Ok(layout)
}

/// Replaces `params` (the flat buffer of `model`) by what an int8 export of it holds once
/// dequantized, so that evaluating the result measures what int8 costs
/// (`ringtrain eval --quantize int8`).
///
/// # Errors
/// [`ringtrain_models::ModelError::ParamCount`] when `params` is not `model`'s size.
pub fn fake_quantize_int8(model: &Model, params: &mut [f32]) -> Result<(), crate::TrainError> {
    let layout = checked_layout(model, params)?;
    for t in layout.iter().filter(|t| t.shape.len() >= 2) {
        let rows = t.file_shape()[0];
        let (q, scales) = quantize_rows(&file_values(t, params), rows);
        let cols = q.len().checked_div(rows).unwrap_or(0).max(1);
        let back: Vec<f32> = q
            .iter()
            .enumerate()
            .map(|(i, v)| f32::from(*v) * scales[i / cols])
            .collect();
        let dst = &mut params[t.range.clone()];
        match (t.transposed, t.shape.as_slice()) {
            // The file holds the transpose: transposing back restores ringtrain's layout.
            (true, [rows, cols]) => {
                let mut restored = Vec::with_capacity(back.len());
                push_transposed(&mut restored, &back, *cols, *rows);
                dst.copy_from_slice(&restored);
            }
            _ => dst.copy_from_slice(&back),
        }
    }
    Ok(())
}

/// [`serialize_with`] at [`Precision::F32`].
///
/// # Errors
/// As [`serialize_with`].
pub fn serialize(
    model: &Model,
    params: &[f32],
    metadata: HashMap<String, String>,
    path: &Path,
) -> Result<Exported, crate::TrainError> {
    serialize_with(model, params, metadata, Precision::F32, path)
}

/// `params` (the flat buffer of `model`) as a safetensors file in the PyTorch layout at
/// `precision`, with `metadata` plus `ringtrain.format`, `ringtrain.precision` (`f32` or
/// `int8`) and `ringtrain.layers`; `path` only names the file in errors.
///
/// # Errors
/// [`ringtrain_models::ModelError::ParamCount`] when `params` is not `model`'s size;
/// [`ExportError::Format`] if the writer refuses (a header over its 100 MB limit).
pub fn serialize_with(
    model: &Model,
    params: &[f32],
    mut metadata: HashMap<String, String>,
    precision: Precision,
    path: &Path,
) -> Result<Exported, crate::TrainError> {
    let layout = checked_layout(model, params)?;
    let mut buffers = Vec::with_capacity(layout.len());
    for t in &layout {
        let data = file_values(t, params);
        let shape = t.file_shape();
        let f32_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        match (precision, shape.len() >= 2) {
            (Precision::Int8, true) => {
                let (q, scales) = quantize_rows(&data, shape[0]);
                let bytes = q.iter().map(|v| v.to_le_bytes()[0]).collect();
                buffers.push((
                    format!("{}.scale", t.name),
                    vec![shape[0]],
                    Dtype::F32,
                    f32_bytes(&scales),
                ));
                buffers.push((t.name.clone(), shape, Dtype::I8, bytes));
            }
            (Precision::Int8, false) | (Precision::F32, _) => {
                buffers.push((t.name.clone(), shape, Dtype::F32, f32_bytes(&data)));
            }
        }
    }
    let format_error = |source| ExportError::Format {
        path: path.to_path_buf(),
        source,
    };
    let views = buffers
        .iter()
        .map(|(name, shape, dtype, bytes)| {
            safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(format_error)?;
    metadata.insert("ringtrain.format".to_string(), FORMAT.to_string());
    metadata.insert(
        "ringtrain.precision".to_string(),
        match precision {
            Precision::F32 => "f32",
            Precision::Int8 => "int8",
        }
        .to_string(),
    );
    metadata.insert(
        "ringtrain.layers".to_string(),
        model
            .layers()
            .iter()
            .map(Layer::name)
            .collect::<Vec<_>>()
            .join(","),
    );
    let bytes = safetensors::serialize(views, Some(metadata)).map_err(format_error)?;
    let recurrent_input = layout
        .iter()
        .find(|t| t.name == "rnn.weight_ih_l0")
        .and_then(|t| t.shape.first().copied())
        .unwrap_or(0);
    Ok(Exported {
        bytes,
        tensors: layout.len(),
        parameters: params.len(),
        recurrent_input,
    })
}

/// A safetensors file opened for `init_from`: its tensors by key, as `f32`, and the fitted
/// state a ringtrain export stores.
#[derive(Debug)]
pub struct TorchFile {
    path: PathBuf,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
    fitted: Option<Fitted>,
}

fn to_f32(dtype: Dtype, data: &[u8]) -> Option<Vec<f32>> {
    let half = |bits: fn(u16) -> f32| {
        data.chunks_exact(2)
            .map(|b| bits(u16::from_le_bytes([b[0], b[1]])))
            .collect()
    };
    Some(match dtype {
        Dtype::F32 => data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F64 => data
            .chunks_exact(8)
            .map(|b| {
                let mut a = [0u8; 8];
                a.copy_from_slice(b);
                f64::from_le_bytes(a) as f32
            })
            .collect(),
        Dtype::BF16 => half(|b| f32::from_bits(u32::from(b) << 16)),
        Dtype::F16 => half(f16_to_f32),
        _ => return None,
    })
}

/// IEEE half to single precision (exact: every half value is a single value).
fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h >> 15) << 31;
    let exp = u32::from((h >> 10) & 0x1f);
    let frac = u32::from(h & 0x3ff);
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // Subnormal half: frac · 2^-24, a normal single.
        (0, f) => {
            let v = f as f32 * 2f32.powi(-24);
            return if sign == 0 { v } else { -v };
        }
        (0x1f, 0) => sign | 0x7f80_0000,
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 127 - 15) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

impl TorchFile {
    /// Reads the safetensors file at `path`, refusing one longer than `max_parameters` `f32`
    /// values plus a metadata allowance before reading it.
    ///
    /// # Errors
    /// [`ExportError::Io`], [`ExportError::TooLarge`], [`ExportError::Format`] for a file the
    /// safetensors reader refuses, [`ExportError::Dtype`] for a non-float tensor and
    /// [`ExportError::Metadata`] for unreadable `ringtrain.fitted` metadata.
    pub fn open(path: &Path, max_parameters: u64) -> Result<TorchFile, ExportError> {
        let io = |source| ExportError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let bytes = file.metadata().map_err(io)?.len();
        let ceiling = max_parameters
            .saturating_mul(8)
            .saturating_add(METADATA_ALLOWANCE);
        if bytes > ceiling {
            return Err(ExportError::TooLarge {
                path: path.to_path_buf(),
                bytes,
                max_parameters,
                allowance: METADATA_ALLOWANCE,
            });
        }
        let mut buffer = Vec::with_capacity(bytes as usize);
        // `take` keeps a file that grows while it is read within the checked length.
        file.take(ceiling).read_to_end(&mut buffer).map_err(io)?;
        let format = |source| ExportError::Format {
            path: path.to_path_buf(),
            source,
        };
        let (_, metadata) = SafeTensors::read_metadata(&buffer).map_err(format)?;
        let st = SafeTensors::deserialize(&buffer).map_err(format)?;
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let values = to_f32(view.dtype(), view.data()).ok_or_else(|| ExportError::Dtype {
                path: path.to_path_buf(),
                name: name.clone(),
                dtype: view.dtype().to_string(),
            })?;
            tensors.insert(name, (view.shape().to_vec(), values));
        }
        let fitted =
            match metadata
                .metadata()
                .as_ref()
                .and_then(|m| m.get("ringtrain.fitted"))
            {
                Some(json) => Some(serde_json::from_str::<Fitted>(json).map_err(|e| {
                    ExportError::Metadata {
                        path: path.to_path_buf(),
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
        Ok(TorchFile {
            path: path.to_path_buf(),
            tensors,
            fitted,
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the file has a tensor named `key`.
    pub fn has(&self, key: &str) -> bool {
        self.tensors.contains_key(key)
    }

    /// The normalizer or vocabulary of a ringtrain export (`None` for a file from elsewhere).
    pub fn fitted(&self) -> Option<&Fitted> {
        self.fitted.as_ref()
    }

    /// The layers of `model` that the file has, laid out like a checkpoint of `model`: each
    /// layer's tensors in ringtrain's orientation and visit order, with the file's shapes (a
    /// shape that differs from the model's is left for the caller's check to report). A layer
    /// none of whose keys are in the file is left out.
    ///
    /// # Errors
    /// [`ExportError::PartialLayer`] when a layer has some of its keys in the file but not all.
    pub fn layers_for(&self, model: &Model) -> Result<(Vec<LayerParams>, Vec<f32>), ExportError> {
        let layout = torch_layout(model);
        let mut layers = Vec::new();
        let mut params = Vec::new();
        let mut i = 0;
        while i < layout.len() {
            let name = &layout[i].layer;
            let end = layout[i..]
                .iter()
                .position(|t| &t.layer != name)
                .map_or(layout.len(), |n| i + n);
            let group = &layout[i..end];
            i = end;
            let present: Vec<_> = group
                .iter()
                .filter(|t| self.tensors.contains_key(&t.name))
                .collect();
            if present.is_empty() {
                continue;
            }
            if let Some(missing) = group.iter().find(|t| !self.tensors.contains_key(&t.name)) {
                return Err(ExportError::PartialLayer {
                    path: self.path.clone(),
                    layer: name.clone(),
                    present: present[0].name.clone(),
                    missing: missing.name.clone(),
                    hint: if missing.name.ends_with("_reverse") {
                        "unidirectional layer in the file where this model's is bidirectional?"
                    } else {
                        "file from another model, or a model without biases?"
                    },
                });
            }
            let start = params.len();
            let mut shapes = Vec::with_capacity(group.len());
            for t in group {
                let Some((shape, values)) = self.tensors.get(&t.name) else {
                    continue;
                };
                match (t.transposed, shape.as_slice()) {
                    (true, [rows, cols]) => {
                        push_transposed(&mut params, values, *rows, *cols);
                        shapes.push(vec![*cols, *rows]);
                    }
                    _ => {
                        params.extend_from_slice(values);
                        shapes.push(shape.clone());
                    }
                }
            }
            layers.push(LayerParams {
                name: name.clone(),
                shapes,
                range: start..params.len(),
            });
        }
        Ok((layers, params))
    }
}
