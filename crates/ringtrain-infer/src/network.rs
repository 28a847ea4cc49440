//! Loading a model from a ringtrain safetensors export and running it over a whole sequence.

use crate::anomaly::Residuals;
use crate::cell::{CellKind, Direction, Matrix, affine};
use crate::error::InferError;
use crate::scaling::Scaling;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use safetensors::{Dtype, SafeTensors};

/// A forecaster: optional input projection, recurrent stack, linear head on the last step.
#[derive(Debug, Clone)]
pub struct Network {
    pub(crate) cell: CellKind,
    pub(crate) features: usize,
    /// `(W [P, features], b [P])`.
    pub(crate) projection: Option<(Matrix, Vec<f32>)>,
    /// Per layer, one direction or (forward, backward).
    pub(crate) layers: Vec<Vec<Direction>>,
    pub(crate) hidden: usize,
    pub(crate) head_w: Matrix,
    pub(crate) head_b: Vec<f32>,
    pub(crate) scaling: Option<Scaling>,
    pub(crate) residuals: Option<Residuals>,
}

/// The tensor `name` as `f32` values, checked to be `F32` and of `shape`.
fn tensor(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Vec<f32>, InferError> {
    match matrix(st, name, shape)? {
        Matrix::F32(v) => Ok(v),
        Matrix::I8 { .. } => Err(InferError::Tensor {
            name: name.to_string(),
            reason: "dtype I8, expected F32 (only matrices are int8 in an int8 export)".into(),
        }),
    }
}

/// The matrix `name`, checked to be of `shape` and either `F32` or (an int8 export) `I8` with
/// its per-row scales in `{name}.scale`, kept as int8.
fn matrix(st: &SafeTensors, name: &str, shape: &[usize]) -> Result<Matrix, InferError> {
    let view = st
        .tensor(name)
        .map_err(|_| InferError::Missing(name.to_string()))?;
    let bad = |reason: String| InferError::Tensor {
        name: name.to_string(),
        reason,
    };
    if view.shape() != shape {
        return Err(bad(format!("shape {:?}, expected {shape:?}", view.shape())));
    }
    match (view.dtype(), shape) {
        (Dtype::F32, _) => Ok(Matrix::F32(
            view.data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        )),
        (Dtype::I8, &[rows, _]) if rows > 0 => Ok(Matrix::I8 {
            q: view
                .data()
                .iter()
                .map(|b| i8::from_le_bytes([*b]))
                .collect(),
            scales: tensor(st, &format!("{name}.scale"), &[rows])?,
        }),
        (other, _) => Err(bad(format!(
            "dtype {other}, expected F32 (or I8 with per-row scales for a matrix)"
        ))),
    }
}

/// The shape of tensor `name`, if it is there.
fn shape_of(st: &SafeTensors, name: &str) -> Option<Vec<usize>> {
    st.tensor(name).ok().map(|v| v.shape().to_vec())
}

/// What the `ringtrain.spec` metadata says about the parts this runtime cares about.
struct SpecFacts {
    relu: bool,
    forecast_mode: Option<String>,
}

fn spec_facts(json: Option<&String>) -> Result<SpecFacts, InferError> {
    let Some(json) = json else {
        // A file from elsewhere: an Elman RNN is taken to use tanh, PyTorch's default.
        return Ok(SpecFacts {
            relu: false,
            forecast_mode: None,
        });
    };
    let v: serde_json::Value = serde_json::from_str(json)
        .map_err(|e| InferError::Metadata(format!("ringtrain.spec: {e}")))?;
    let kind = v
        .pointer("/task/kind")
        .and_then(|k| k.as_str())
        .unwrap_or("forecast");
    if kind != "forecast" {
        return Err(InferError::Unsupported(format!("task kind {kind:?}")));
    }
    if v.pointer("/model/conv")
        .and_then(|c| c.as_array())
        .is_some_and(|c| !c.is_empty())
    {
        return Err(InferError::Unsupported("model.conv".into()));
    }
    if v.pointer("/model/attention").is_some_and(|a| !a.is_null()) {
        return Err(InferError::Unsupported("model.attention".into()));
    }
    let relu = v.pointer("/model/activation").and_then(|a| a.as_str()) == Some("relu");
    let forecast_mode = v
        .pointer("/data/kind/Series/forecast_mode")
        .and_then(|m| m.as_str())
        .map(String::from);
    Ok(SpecFacts {
        relu,
        forecast_mode,
    })
}

impl Network {
    /// Reads a safetensors export.
    ///
    /// # Errors
    /// [`InferError::Format`] for bytes the safetensors reader refuses; [`InferError::Missing`]
    /// / [`InferError::Tensor`] for a tensor that is absent or of the wrong dtype or shape;
    /// [`InferError::Unsupported`] naming the first tensor or setting outside what this runtime
    /// runs; [`InferError::Metadata`] for unreadable `ringtrain.spec`, `ringtrain.fitted` or
    /// `ringtrain.residuals` metadata.
    pub fn from_safetensors(bytes: &[u8]) -> Result<Network, InferError> {
        let (_, metadata) = SafeTensors::read_metadata(bytes).map_err(InferError::Format)?;
        let st = SafeTensors::deserialize(bytes).map_err(InferError::Format)?;
        let mut names = st.names();
        names.sort_unstable();
        if let Some(other) = names.iter().find(|n| {
            !(n.starts_with("rnn.")
                || n.starts_with("projection.")
                || n.starts_with("head.linear."))
        }) {
            return Err(InferError::Unsupported(format!("tensor {other:?}")));
        }
        let meta = metadata.metadata().as_ref();
        let facts = spec_facts(meta.and_then(|m| m.get("ringtrain.spec")))?;
        let scaling = match meta.and_then(|m| m.get("ringtrain.fitted")) {
            Some(fitted) => Scaling::parse(fitted, facts.forecast_mode.as_deref())?,
            None => None,
        };
        let residuals = meta
            .and_then(|m| m.get("ringtrain.residuals"))
            .map(|json| Residuals::parse(json))
            .transpose()?;
        let (gh, in0) = match shape_of(&st, "rnn.weight_ih_l0").as_deref() {
            Some(&[gh, input]) => (gh, input),
            Some(other) => {
                return Err(InferError::Tensor {
                    name: "rnn.weight_ih_l0".into(),
                    reason: format!("shape {other:?}, expected [G·H, in]"),
                });
            }
            None => return Err(InferError::Missing("rnn.weight_ih_l0".into())),
        };
        let hidden = match shape_of(&st, "rnn.weight_hh_l0").as_deref() {
            Some(&[_, h]) if h > 0 => h,
            _ => {
                return Err(InferError::Missing(
                    "rnn.weight_hh_l0 of shape [G·H, H]".into(),
                ));
            }
        };
        let cell = match (gh / hidden, gh % hidden, facts.relu) {
            (1, 0, false) => CellKind::RnnTanh,
            (1, 0, true) => CellKind::RnnRelu,
            (3, 0, _) => CellKind::Gru,
            (4, 0, _) => CellKind::Lstm,
            _ => {
                return Err(InferError::Tensor {
                    name: "rnn.weight_ih_l0".into(),
                    reason: format!(
                        "{gh} rows for hidden size {hidden}: not 1, 3 or 4 gate blocks (rnn, gru, lstm)"
                    ),
                });
            }
        };
        let bidirectional = shape_of(&st, "rnn.weight_ih_l0_reverse").is_some();
        let dirs = if bidirectional { 2 } else { 1 };
        let mut layers = Vec::new();
        let mut input = in0;
        while shape_of(&st, &format!("rnn.weight_ih_l{}", layers.len())).is_some() {
            let l = layers.len();
            let mut directions = Vec::with_capacity(dirs);
            for suffix in &["", "_reverse"][..dirs] {
                let key = |what: &str| format!("rnn.{what}_l{l}{suffix}");
                directions.push(Direction {
                    input,
                    hidden,
                    w_ih: matrix(&st, &key("weight_ih"), &[gh, input])?,
                    w_hh: matrix(&st, &key("weight_hh"), &[gh, hidden])?,
                    b_ih: tensor(&st, &key("bias_ih"), &[gh])?,
                    b_hh: tensor(&st, &key("bias_hh"), &[gh])?,
                });
            }
            layers.push(directions);
            input = hidden * dirs;
        }
        let (features, projection) = match shape_of(&st, "projection.weight").as_deref() {
            None => (in0, None),
            Some(&[p, f]) if p == in0 => (
                f,
                Some((
                    matrix(&st, "projection.weight", &[in0, f])?,
                    tensor(&st, "projection.bias", &[in0])?,
                )),
            ),
            Some(other) => {
                return Err(InferError::Tensor {
                    name: "projection.weight".into(),
                    reason: format!("shape {other:?}, expected [{in0}, features]"),
                });
            }
        };
        if features == 0 {
            return Err(InferError::Tensor {
                name: "rnn.weight_ih_l0".into(),
                reason: "the model reads 0 values per step".into(),
            });
        }
        let outputs = match shape_of(&st, "head.linear.weight").as_deref() {
            Some(&[o, _]) => o,
            _ => {
                return Err(InferError::Missing(
                    "head.linear.weight of shape [out, in]".into(),
                ));
            }
        };
        let head_w = matrix(&st, "head.linear.weight", &[outputs, input])?;
        let head_b = tensor(&st, "head.linear.bias", &[outputs])?;
        Ok(Network {
            cell,
            features,
            projection,
            layers,
            hidden,
            head_w,
            head_b,
            scaling,
            residuals,
        })
    }

    /// The normalizer of a ringtrain export (`None` for a file without one).
    pub fn scaling(&self) -> Option<&Scaling> {
        self.scaling.as_ref()
    }

    /// The one-step-ahead validation residuals stored at export (`ringtrain.residuals`), which
    /// a [`crate::Detector`] scores rows against; `None` when the export has none.
    pub fn residuals(&self) -> Option<&Residuals> {
        self.residuals.as_ref()
    }

    /// The cell type.
    pub fn cell(&self) -> CellKind {
        self.cell
    }

    /// Values per input step.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Values per forecast (horizon × targets).
    pub fn outputs(&self) -> usize {
        self.head_b.len()
    }

    /// Number of recurrent layers.
    pub fn num_layers(&self) -> usize {
        self.layers.len()
    }

    /// Hidden units per direction.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Whether the layers run in both directions.
    pub fn bidirectional(&self) -> bool {
        self.layers.first().is_some_and(|l| l.len() == 2)
    }

    /// Number of parameters.
    pub fn parameters(&self) -> usize {
        let proj = self
            .projection
            .as_ref()
            .map_or(0, |(w, b)| w.len() + b.len());
        let rnn: usize = self
            .layers
            .iter()
            .flatten()
            .map(|d| d.w_ih.len() + d.w_hh.len() + d.b_ih.len() + d.b_hh.len())
            .sum();
        proj + rnn + self.head_w.len() + self.head_b.len()
    }

    /// Bytes of weights it holds in RAM (an int8 export's matrices stay int8).
    pub fn weight_bytes(&self) -> usize {
        let proj = self
            .projection
            .as_ref()
            .map_or(0, |(w, b)| w.bytes() + b.len() * 4);
        let rnn: usize = self
            .layers
            .iter()
            .flatten()
            .map(|d| d.w_ih.bytes() + d.w_hh.bytes() + (d.b_ih.len() + d.b_hh.len()) * 4)
            .sum();
        proj + rnn + self.head_w.bytes() + self.head_b.len() * 4
    }

    /// The input width of the first recurrent layer.
    pub(crate) fn recurrent_input(&self) -> usize {
        self.layers
            .first()
            .and_then(|l| l.first())
            .map_or(0, |d| d.input)
    }

    /// `x` through the projection (or copied) into `out`.
    pub(crate) fn project(&self, x: &[f32], out: &mut [f32]) {
        match &self.projection {
            Some((w, b)) => affine(w, b, x, out),
            None => out.copy_from_slice(x),
        }
    }

    /// The forecast from one whole sequence `xs` (`[T, features]`, row-major, `T ≥ 1`), read
    /// at its last step (a backward direction contributes its state after reading the whole
    /// sequence, as in training).
    ///
    /// # Errors
    /// [`InferError::Input`] when `xs` is empty or not a whole number of steps.
    pub fn run(&self, xs: &[f32]) -> Result<Vec<f32>, InferError> {
        let f = self.features;
        if xs.is_empty() || !xs.len().is_multiple_of(f) {
            return Err(InferError::Input {
                what: "sequence",
                expected: (xs.len() / f).max(1) * f,
                got: xs.len(),
            });
        }
        let steps = xs.len() / f;
        let width = self.recurrent_input();
        let mut seq = vec![0.0f32; steps * width];
        for (x, out) in xs.chunks_exact(f).zip(seq.chunks_exact_mut(width)) {
            self.project(x, out);
        }
        let h = self.hidden;
        let mut gi = vec![0.0f32; self.cell.gates() * h];
        let mut gh = vec![0.0f32; self.cell.gates() * h];
        let mut last = Vec::new();
        for directions in &self.layers {
            let dirs = directions.len();
            let input = directions[0].input;
            let mut next = vec![0.0f32; steps * h * dirs];
            for (d, dir) in directions.iter().enumerate() {
                let mut state = vec![0.0f32; h];
                let mut c = vec![0.0f32; h];
                let order: Vec<usize> = match d {
                    0 => (0..steps).collect(),
                    _ => (0..steps).rev().collect(),
                };
                for t in order {
                    let x = &seq[t * input..(t + 1) * input];
                    dir.step(self.cell, x, &mut state, &mut c, &mut gi, &mut gh);
                    next[(t * dirs + d) * h..][..h].copy_from_slice(&state);
                }
            }
            last = match dirs {
                1 => next[(steps - 1) * h..].to_vec(),
                _ => {
                    let mut l = next[(steps - 1) * 2 * h..][..h].to_vec();
                    l.extend_from_slice(&next[h..2 * h]);
                    l
                }
            };
            seq = next;
        }
        let mut out = vec![0.0f32; self.outputs()];
        affine(&self.head_w, &self.head_b, &last, &mut out);
        Ok(out)
    }
}
