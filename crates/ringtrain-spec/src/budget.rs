//! The resource budget of a validated spec: a pure estimate of what training it will allocate
//! (parameters with their gradients and optimizer state, activations for one batch × sequence,
//! vocabulary), compared with the spec's `[limits]` before anything is allocated. The estimate is
//! deliberately rough and on the high side (the global batch, f32 everywhere, saved activations
//! and their gradients); its job is to refuse a spec that would take a machine down, not to
//! predict memory to the megabyte. This is the one place the estimate is computed: validation,
//! the worker's own ceiling and checkpoint loading all call [`check_budget`].

use crate::error::FieldError;
use crate::types::*;

/// Bytes per parameter while training: the value, its gradient and up to two optimizer moments
/// (Adam), all f32.
const BYTES_PER_PARAMETER: f64 = 16.0;
/// Bytes per activation value: f32, kept for the backward pass plus its gradient.
const BYTES_PER_ACTIVATION: f64 = 8.0;

/// What a spec is estimated to need.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Budget {
    /// Model parameters (f64 so that absurd specs saturate instead of overflowing).
    pub parameters: f64,
    /// Activation values for one batch of one sequence (forward, kept for backward).
    pub activations: f64,
    /// Estimated training memory in bytes: parameters × 16 + activations × 8.
    pub memory_bytes: f64,
    /// Largest vocabulary the data section allows (`data.max_vocab`; 0 for numeric series).
    pub vocab: u64,
    /// Samples per batch the estimate assumes (`train.batch_size`, the global batch).
    pub batch: usize,
    /// Longest input sequence the estimate assumes (window, max_len, bptt, source length).
    pub sequence: usize,
}

/// Estimates what training `spec` needs. Pure; never panics (every product is taken in f64).
pub fn estimate(spec: &JobSpec) -> Budget {
    let m = &spec.model;
    let b = spec.train.batch_size as f64;
    // Vocabulary, input sequence, input width, target length and the input block's parameters
    // (embedding table, or the numeric projection).
    let (vocab, mut seq, input_width, target_len, input_params) = match &spec.task {
        TaskSpec::Forecast { series: s, .. } => {
            let width = m.projection.unwrap_or(s.features.len());
            let params = m
                .projection
                .map_or(0.0, |p| (s.features.len() as f64 + 1.0) * p as f64);
            (0u64, s.window, width, 0usize, params)
        }
        TaskSpec::Classify { text: t, .. } => {
            let params = t.max_vocab as f64 * m.embedding_dim as f64;
            (t.max_vocab as u64, t.max_len, m.embedding_dim, 0, params)
        }
        TaskSpec::Seq2seq { pairs: p, .. } => (
            p.max_vocab as u64,
            p.max_source_len,
            m.embedding_dim,
            p.max_target_len,
            p.max_vocab as f64 * m.embedding_dim as f64,
        ),
        TaskSpec::LanguageModel { bptt, corpus: c } => (
            c.max_vocab as u64,
            *bptt,
            m.embedding_dim,
            0,
            c.max_vocab as f64 * m.embedding_dim as f64,
        ),
    };
    let v = vocab as f64;
    let mut params = input_params;
    let mut acts = 0.0f64;
    acts += b * seq as f64 * input_width as f64;
    // Conv1d layers: weights in × out × kernel, activations include the unfolded input.
    let mut width = input_width as f64;
    for c in &m.conv {
        let (ch, k) = (c.channels as f64, c.kernel as f64);
        params += width * ch * k + ch;
        acts += b * seq as f64 * (width * k + 2.0 * ch);
        seq = seq.div_ceil(c.stride.max(1));
        width = ch;
    }
    // Recurrent layers: gates × hidden × (input + hidden + biases) per direction; the kernel
    // keeps every step's gates, cell and output.
    let dirs = if m.bidirectional { 2.0 } else { 1.0 };
    let (h, g) = (m.hidden as f64, m.cell.gates() as f64);
    let s = seq as f64;
    for _ in 0..m.layers {
        params += dirs * g * h * (width + h + 2.0);
        acts += b * s * dirs * h * (2.0 * g + 3.0);
        width = dirs * h;
    }
    // Attention over the recurrent outputs: projections, score matrices seq², feed-forward.
    if let Some(a) = &m.attention {
        let ff = a.ff_hidden as f64;
        params += 4.0 * width * width + 4.0 * width;
        acts += b * a.heads as f64 * s * s * 2.0 + b * s * width * 6.0;
        if a.kind == AttentionKind::Transformer {
            params += 2.0 * width * ff + ff + 5.0 * width;
            acts += b * s * ff * 2.0;
        }
    }
    // Head (or the seq2seq decoder).
    match &spec.task {
        TaskSpec::Forecast {
            horizon, series, ..
        } => {
            let outs = series.targets.len() as f64 * *horizon as f64;
            params += (width + 1.0) * outs;
            acts += b * outs;
        }
        TaskSpec::Classify { text, .. } => {
            let classes = text.labels.as_ref().map_or(1024, Vec::len) as f64;
            params += (width + 1.0) * classes;
            acts += b * s * width + b * classes;
        }
        TaskSpec::LanguageModel { .. } => {
            params += (width + 1.0) * v;
            // Logits and their softmax for every step.
            acts += b * s * v * 2.0;
        }
        TaskSpec::Seq2seq { .. } => {
            let t = target_len as f64;
            let e = m.embedding_dim as f64;
            params += v * e + g * h * (e + width + h + 2.0) + width * h + (h + 1.0) * v;
            acts += b * t * (2.0 * v + 2.0 * g * h + 2.0 * s + width);
        }
    }
    Budget {
        parameters: params,
        activations: acts,
        memory_bytes: params * BYTES_PER_PARAMETER + acts * BYTES_PER_ACTIVATION,
        vocab,
        batch: spec.train.batch_size,
        sequence: seq,
    }
}

/// Checks `spec` against `limits` (normally `spec.limits`; a worker passes the lower of the
/// spec's and its own). Every exceeded limit is one [`FieldError`] naming the limit's key, the
/// estimate and the limit.
pub fn check_budget(spec: &JobSpec, limits: &LimitsSpec) -> Vec<FieldError> {
    let est = estimate(spec);
    let mut errors = Vec::new();
    if est.vocab > limits.max_vocab {
        errors.push(FieldError {
            path: "data.max_vocab".into(),
            value: est.vocab.to_string(),
            message: format!(
                "exceeds limits.max_vocab = {} (raise limits.max_vocab if the machine has the memory)",
                limits.max_vocab
            ),
        });
    }
    if est.parameters > limits.max_parameters as f64 {
        errors.push(FieldError {
            path: "limits.max_parameters".into(),
            value: format!("estimate {} parameters", count(est.parameters)),
            message: format!(
                "the model is estimated at {} parameters, above the limit of {}; shrink \
                 model.hidden / model.layers / model.conv / data.max_vocab or raise \
                 limits.max_parameters",
                count(est.parameters),
                count(limits.max_parameters as f64)
            ),
        });
    }
    if est.memory_bytes > limits.max_memory_bytes as f64 {
        errors.push(FieldError {
            path: "limits.max_memory_mb".into(),
            value: format!("estimate {}", bytes(est.memory_bytes)),
            message: format!(
                "training is estimated to need {} ({} parameters × 16 bytes + {} activation \
                 values × 8 bytes for batch {} × sequence {}), above the limit of {}; shrink the \
                 model, train.batch_size or the sequence, or raise limits.max_memory_mb",
                bytes(est.memory_bytes),
                count(est.parameters),
                count(est.activations),
                est.batch,
                est.sequence,
                bytes(limits.max_memory_bytes as f64)
            ),
        });
    }
    errors
}

/// `1.5 G`, `250.0 M`, `12.3 k` or the plain number.
fn count(x: f64) -> String {
    if x >= 1e9 {
        format!("{:.1} G", x / 1e9)
    } else if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e4 {
        format!("{:.1} k", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// `12.0 GiB`, `300.0 MiB` or bytes.
fn bytes(x: f64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    if x >= GIB {
        format!("{:.1} GiB", x / GIB)
    } else if x >= MIB {
        format!("{:.1} MiB", x / MIB)
    } else {
        format!("{x:.0} bytes")
    }
}
