//! The raw serde form of a job spec, exactly as written in TOML or JSON. Unknown keys are
//! rejected here; enumerated values are kept as strings so that validation can name the bad
//! value and list the allowed ones (serde's own message would not name the field path).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Top level of a spec document.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSpec {
    /// `name`
    pub name: Option<String>,
    /// `seed`
    pub seed: Option<u64>,
    /// `[model]`
    pub model: Option<RawModel>,
    /// `[task]`
    pub task: Option<RawTask>,
    /// `[data]`
    pub data: Option<RawData>,
    /// `[train]`
    #[serde(default)]
    pub train: RawTrain,
    /// `[parallel]`
    #[serde(default)]
    pub parallel: RawParallel,
    /// `[checkpoint]`
    #[serde(default)]
    pub checkpoint: RawCheckpoint,
    /// `[limits]`
    #[serde(default)]
    pub limits: RawLimits,
    /// `[init_from]`
    pub init_from: Option<RawInitFrom>,
}

/// `[init_from]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawInitFrom {
    /// `init_from.checkpoint`: a checkpoint file or run directory
    pub checkpoint: Option<String>,
    /// `init_from.format`: ringtrain
    pub format: Option<String>,
    /// `init_from.layers`: layer names
    pub layers: Option<Vec<String>>,
    /// `init_from.freeze_epochs`
    pub freeze_epochs: Option<i64>,
    /// `init_from.lr_scale`
    pub lr_scale: Option<f64>,
}

/// `[model]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    /// `model.cell`: rnn | lstm | gru
    pub cell: Option<String>,
    /// `model.activation`: tanh | relu
    pub activation: Option<String>,
    /// `model.layers`
    pub layers: Option<i64>,
    /// `model.hidden`
    pub hidden: Option<i64>,
    /// `model.bidirectional`
    pub bidirectional: Option<bool>,
    /// `model.dropout`
    pub dropout: Option<f64>,
    /// `model.embedding_dim`
    pub embedding_dim: Option<i64>,
    /// `model.projection`
    pub projection: Option<i64>,
    /// `model.conv`: Conv1d layers between the input block and the recurrent layers
    pub conv: Option<Vec<RawConv>>,
    /// `model.attention`: self-attention or a Transformer encoder block after the recurrent
    /// layers
    pub attention: Option<RawAttention>,
}

/// One entry of `model.conv`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConv {
    /// `model.conv[i].channels`
    pub channels: Option<i64>,
    /// `model.conv[i].kernel`
    pub kernel: Option<i64>,
    /// `model.conv[i].stride`
    pub stride: Option<i64>,
    /// `model.conv[i].activation`: relu | tanh | none
    pub activation: Option<String>,
}

/// `model.attention`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAttention {
    /// `model.attention.kind`: self | transformer
    pub kind: Option<String>,
    /// `model.attention.heads`
    pub heads: Option<i64>,
    /// `model.attention.dropout`
    pub dropout: Option<f64>,
    /// `model.attention.ff_hidden` (transformer)
    pub ff_hidden: Option<i64>,
}

/// `[task]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    /// `task.kind`: forecast | classify | language_model | seq2seq
    pub kind: Option<String>,
    /// `task.horizon` (forecast)
    pub horizon: Option<i64>,
    /// `task.loss` (forecast): mse | mae
    pub loss: Option<String>,
    /// `task.season` (forecast)
    pub season: Option<i64>,
    /// `task.pooling` (classify): last | mean | max
    pub pooling: Option<String>,
    /// `task.class_weights` (classify): label → weight
    pub class_weights: Option<BTreeMap<String, f64>>,
    /// `task.attention` (seq2seq): bahdanau | luong_dot | luong_general
    pub attention: Option<String>,
    /// `task.teacher_forcing` (seq2seq): ratio in [0, 1]
    pub teacher_forcing: Option<f64>,
    /// `task.beam_width` (seq2seq)
    pub beam_width: Option<i64>,
    /// `task.length_penalty` (seq2seq): alpha >= 0
    pub length_penalty: Option<f64>,
    /// `task.bptt` (language_model): tokens per truncated-BPTT chunk
    pub bptt: Option<i64>,
}

/// `data.split`: either `[train, val, test]` or a table.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(untagged)]
pub enum RawSplit {
    /// `[0.8, 0.1, 0.1]`
    List(Vec<f64>),
    /// `{ train = 0.8, val = 0.1, test = 0.1 }`
    Table {
        /// training fraction
        train: f64,
        /// validation fraction
        #[serde(default)]
        val: f64,
        /// test fraction
        #[serde(default)]
        test: f64,
    },
}

/// `[data]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawData {
    /// `data.path`
    pub path: Option<String>,
    /// `data.format`: csv | tsv | jsonl | text
    pub format: Option<String>,
    /// `data.split`
    pub split: Option<RawSplit>,
    /// `data.features` (forecast)
    pub features: Option<Vec<String>>,
    /// `data.targets` (forecast)
    pub targets: Option<Vec<String>>,
    /// `data.window` (forecast)
    pub window: Option<i64>,
    /// `data.stride` (forecast)
    pub stride: Option<i64>,
    /// `data.normalize` (forecast): none | zscore | minmax
    pub normalize: Option<String>,
    /// `data.forecast_mode` (forecast): level | delta
    pub forecast_mode: Option<String>,
    /// `data.scale_targets` (forecast): standardize the model's targets on the training split
    pub scale_targets: Option<bool>,
    /// `data.text_column` (classify)
    pub text_column: Option<String>,
    /// `data.label_column` (classify)
    pub label_column: Option<String>,
    /// `data.tokenizer` (classify): char | word
    pub tokenizer: Option<String>,
    /// `data.lowercase` (classify)
    pub lowercase: Option<bool>,
    /// `data.min_freq` (classify)
    pub min_freq: Option<i64>,
    /// `data.max_vocab` (classify)
    pub max_vocab: Option<i64>,
    /// `data.max_len` (classify)
    pub max_len: Option<i64>,
    /// `data.labels` (classify)
    pub labels: Option<Vec<String>>,
    /// `data.source_column` (seq2seq)
    pub source_column: Option<String>,
    /// `data.target_column` (seq2seq)
    pub target_column: Option<String>,
    /// `data.max_source_len` (seq2seq)
    pub max_source_len: Option<i64>,
    /// `data.max_target_len` (seq2seq)
    pub max_target_len: Option<i64>,
}

/// `[train]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTrain {
    /// `train.epochs`
    pub epochs: Option<i64>,
    /// `train.batch_size`
    pub batch_size: Option<i64>,
    /// `train.max_steps`
    pub max_steps: Option<i64>,
    /// `train.threads`
    pub threads: Option<i64>,
    /// `[train.optimizer]`
    #[serde(default)]
    pub optimizer: RawOptimizer,
    /// `[train.schedule]`
    #[serde(default)]
    pub schedule: RawSchedule,
    /// `[train.clip]`
    #[serde(default)]
    pub clip: RawClip,
    /// `[train.early_stopping]`
    pub early_stopping: Option<RawEarlyStopping>,
}

/// `[train.optimizer]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawOptimizer {
    /// `train.optimizer.kind`: sgd | rmsprop | adam | adamw
    pub kind: Option<String>,
    /// `train.optimizer.lr`
    pub lr: Option<f64>,
    /// `train.optimizer.momentum` (sgd, rmsprop)
    pub momentum: Option<f64>,
    /// `train.optimizer.nesterov` (sgd)
    pub nesterov: Option<bool>,
    /// `train.optimizer.weight_decay`
    pub weight_decay: Option<f64>,
    /// `train.optimizer.alpha` (rmsprop)
    pub alpha: Option<f64>,
    /// `train.optimizer.eps` (rmsprop, adam, adamw)
    pub eps: Option<f64>,
    /// `train.optimizer.beta1` (adam, adamw)
    pub beta1: Option<f64>,
    /// `train.optimizer.beta2` (adam, adamw)
    pub beta2: Option<f64>,
}

/// `[train.schedule]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSchedule {
    /// `train.schedule.kind`: constant | step | cosine
    pub kind: Option<String>,
    /// `train.schedule.warmup_steps`
    pub warmup_steps: Option<i64>,
    /// `train.schedule.step_size` (step)
    pub step_size: Option<i64>,
    /// `train.schedule.gamma` (step)
    pub gamma: Option<f64>,
    /// `train.schedule.min_lr` (cosine)
    pub min_lr: Option<f64>,
}

/// `[train.clip]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClip {
    /// `train.clip.norm`
    pub norm: Option<f64>,
    /// `train.clip.value`
    pub value: Option<f64>,
}

/// `[train.early_stopping]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawEarlyStopping {
    /// `train.early_stopping.metric`
    pub metric: Option<String>,
    /// `train.early_stopping.patience`
    pub patience: Option<i64>,
    /// `train.early_stopping.min_delta`
    pub min_delta: Option<f64>,
}

/// `[parallel]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawParallel {
    /// `parallel.data`
    pub data: Option<i64>,
    /// `parallel.pipeline`
    pub pipeline: Option<i64>,
    /// `parallel.microbatches`
    pub microbatches: Option<i64>,
    /// `parallel.schedule`: gpipe | 1f1b
    pub schedule: Option<String>,
    /// `parallel.stages`
    pub stages: Option<Vec<Vec<i64>>>,
    /// `parallel.fusion_mb` (MiB, may be fractional; 0 disables fusion)
    pub fusion_mb: Option<f64>,
    /// `parallel.elastic`
    pub elastic: Option<RawElastic>,
}

/// `[parallel.elastic]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawElastic {
    /// `parallel.elastic.min`
    pub min: Option<i64>,
    /// `parallel.elastic.max`
    pub max: Option<i64>,
    /// `parallel.elastic.commit_every`
    pub commit_every: Option<i64>,
}

/// `[checkpoint]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheckpoint {
    /// `checkpoint.dir`
    pub dir: Option<String>,
    /// `checkpoint.every_steps`
    pub every_steps: Option<i64>,
    /// `checkpoint.max_restarts`
    pub max_restarts: Option<i64>,
    /// `checkpoint.record_samples`
    pub record_samples: Option<bool>,
}

/// `[limits]`
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// `limits.max_parameters`
    pub max_parameters: Option<i64>,
    /// `limits.max_memory_mb` (MiB)
    pub max_memory_mb: Option<i64>,
    /// `limits.max_vocab`
    pub max_vocab: Option<i64>,
    /// `limits.max_data_mb` (MiB)
    pub max_data_mb: Option<i64>,
}
