//! The validated job spec: the only form the rest of ringtrain sees. Every value here has passed
//! [`crate::validate()`], so consumers never re-check ranges (a learning rate is finite and positive,
//! a window is at least 1, fractions sum to 1, ...).

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A complete, validated training job.
///
/// Its serialized form (the resolved spec inside checkpoints) keeps the file layout: `task`
/// holds the task's own settings and `data` its path, format, split and, under `data.kind`, the
/// task's data settings; the private `wire` module converts, refusing a task paired with another
/// kind's data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(
    try_from = "crate::wire::JobSpecWire",
    into = "crate::wire::JobSpecWire"
)]
pub struct JobSpec {
    /// Human-readable name (defaults to the spec file's stem, or `job`).
    pub name: String,
    /// Seed for parameter initialization, shuffling, dropout and every other random choice.
    pub seed: u64,
    /// Network architecture.
    pub model: ModelSpec,
    /// What is predicted, how it is scored and how its samples are prepared.
    pub task: TaskSpec,
    /// Where the samples come from: file, format and split.
    pub data: DataSpec,
    /// Optimization loop.
    pub train: TrainSpec,
    /// How the job is spread over workers.
    pub parallel: ParallelSpec,
    /// When and where state is saved.
    pub checkpoint: CheckpointSpec,
    /// `[limits]`: the resource budget the spec was validated against (see
    /// [`crate::budget`]). Absent in checkpoints written before limits existed, which read as the
    /// defaults.
    pub limits: LimitsSpec,
    /// `[init_from]`: start from another run's weights (transfer learning, pretraining →
    /// fine-tuning) instead of the seeded initialization; `None` when absent. A resumed run
    /// continues from its own checkpoint and does not load them again.
    pub init_from: Option<InitFrom>,
}

impl JobSpec {
    /// Makes the spec's relative file paths (`data.path`, unless it names a `builtin:` dataset,
    /// and `checkpoint.dir`) absolute by joining them to `base` — the spec file's directory for
    /// `ringtrain train`, the job's `base_dir` on cluster workers — so that checkpoints record
    /// paths that `eval` and `predict` find from any working directory.
    pub fn resolve_paths(&mut self, base: &Path) {
        let builtin = self.data.path.to_string_lossy().starts_with("builtin:");
        if !builtin && self.data.path.is_relative() {
            self.data.path = base.join(&self.data.path);
        }
        if self.checkpoint.dir.is_relative() {
            self.checkpoint.dir = base.join(&self.checkpoint.dir);
        }
        if let Some(init) = &mut self.init_from
            && init.checkpoint.is_relative()
        {
            init.checkpoint = base.join(&init.checkpoint);
        }
    }
}

/// `[init_from]`: the weights a run starts from instead of its seeded initialization — some or
/// all layers of another model, matched by layer name (`embedding`, `projection`, `conv0`,
/// `lstm0`, `bigru1`, `attention`, `transformer`, `head`, `decoder`: the names a stage plan
/// prints), each shape-checked. A `language_model` checkpoint gives a `classify` model its
/// vocabulary with its embedding. Layers that are not taken keep their seeded initialization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InitFrom {
    /// The checkpoint file, or a run directory (its `best.ckpt`, else its `latest.ckpt`).
    /// Relative paths are resolved against the spec file's directory; a cluster worker reads it
    /// only inside its data or checkpoint roots.
    pub checkpoint: PathBuf,
    /// What `checkpoint` is.
    pub format: InitFormat,
    /// The layers to take, by name; `None`: every layer that both models have, except an
    /// output layer (`head`, `decoder`) whose shapes differ (a language model's next-token head
    /// is never a classifier's).
    pub layers: Option<Vec<String>>,
    /// Epochs (from the first) during which the taken layers are frozen: neither they nor
    /// their optimizer state change, so the new layers adapt to them first (0 = none).
    pub freeze_epochs: u32,
    /// Learning-rate multiplier of the taken layers once they train (discriminative
    /// fine-tuning, as in ULMFiT); `(0, 10]`, default 1.
    pub lr_scale: f64,
}

/// The file format of `init_from.checkpoint`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitFormat {
    /// A ringtrain checkpoint (`.ckpt`, or a run directory holding one).
    Ringtrain,
    /// A safetensors file in PyTorch's layout (`rnn.weight_ih_l0`, ...): `ringtrain export
    /// --format safetensors` output, or a PyTorch `state_dict` saved with the `safetensors`
    /// package under the same names. The default for a path ending in `.safetensors`.
    Safetensors,
}

/// Recurrent cell type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CellKind {
    /// Elman RNN, `h' = act(x W + h U + b)`.
    Rnn,
    /// Long short-term memory (gates i, f, g, o; PyTorch's gate order).
    Lstm,
    /// Gated recurrent unit (gates r, z, n; PyTorch's formulation with `r` applied after `U h`).
    Gru,
}

impl CellKind {
    /// Number of gate blocks stacked in the fused weight matrices (`[in, gates*hidden]`).
    pub fn gates(self) -> usize {
        match self {
            CellKind::Rnn => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }
}

/// Non-linearity of the simple RNN cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// Hyperbolic tangent (the default).
    Tanh,
    /// Rectified linear unit.
    Relu,
}

/// Architecture: input block → Conv1d layers → recurrent layers → attention block → head
/// (the Conv1d layers and the attention block are optional).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSpec {
    /// Recurrent cell of every layer.
    pub cell: CellKind,
    /// Activation of the `rnn` cell (ignored by `lstm`/`gru`, which have fixed non-linearities).
    pub activation: Activation,
    /// Number of stacked recurrent layers (≥ 1).
    pub layers: usize,
    /// Hidden units per direction (≥ 1).
    pub hidden: usize,
    /// Run each layer in both directions and concatenate (output width `2 * hidden`).
    pub bidirectional: bool,
    /// Dropout probability applied between recurrent layers during training, `[0, 1)`.
    pub dropout: f64,
    /// Width of the token embedding (classification only; ≥ 1).
    pub embedding_dim: usize,
    /// Optional linear projection of numeric features before the recurrent stack
    /// (forecasting only); `None` feeds the features to the first layer directly.
    pub projection: Option<usize>,
    /// Conv1d layers over the time axis between the input block and the recurrent layers, in
    /// order (empty: none). Omitted from the serialized form when empty, so specs and
    /// checkpoints written before hybrids existed read back unchanged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conv: Vec<ConvSpec>,
    /// Attention over the recurrent outputs, before the head (`None`: no attention).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<AttentionSpec>,
}

/// Non-linearity after a Conv1d layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConvActivation {
    /// Rectified linear unit (the default).
    Relu,
    /// Hyperbolic tangent.
    Tanh,
    /// No non-linearity (a linear filter).
    None,
}

/// One Conv1d layer over `[B, T, F]` sequences, time being the convolved axis.
///
/// Padding is "same"-style and fixed: `(kernel − 1) / 2` zero steps before the sequence and
/// `kernel / 2` after it, so output step `j` is centred on input step `j · stride` and a sequence
/// of `T` steps gives `ceil(T / stride)` steps. Steps past a sequence's end count as zeros, which
/// is why a padded sequence gives exactly its unpadded result, with `ceil(length / stride)`
/// valid steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ConvSpec {
    /// Output channels (features per output step, ≥ 1).
    pub channels: usize,
    /// Kernel width in steps (≥ 1).
    pub kernel: usize,
    /// Step between output positions, `1..=kernel` (a larger stride would skip input steps).
    pub stride: usize,
    /// Non-linearity applied to the output.
    pub activation: ConvActivation,
}

/// Which attention block follows the recurrent layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AttentionKind {
    /// Multi-head self-attention with a residual connection: `y = x + MHA(x)`.
    #[serde(rename = "self")]
    SelfAttention,
    /// A post-norm Transformer encoder block (PyTorch's `TransformerEncoderLayer` with
    /// `norm_first = false`, ReLU): `u = LN(x + MHA(x))`, `y = LN(u + FF(u))`.
    #[serde(rename = "transformer")]
    Transformer,
}

/// Multi-head attention over the recurrent outputs. Keys at padded steps are masked out, so
/// padding never changes the result at a valid step.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct AttentionSpec {
    /// Plain self-attention or a Transformer encoder block.
    pub kind: AttentionKind,
    /// Attention heads (≥ 1, dividing the recurrent output width).
    pub heads: usize,
    /// Dropout on the attention weights and on each residual branch during training, `[0, 1)`.
    pub dropout: f64,
    /// Width of the feed-forward layer of the Transformer block (≥ 1; 0 for `self`).
    pub ff_hidden: usize,
}

/// Loss used by a forecasting task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastLoss {
    /// Mean squared error.
    Mse,
    /// Mean absolute error.
    Mae,
}

/// How a classifier turns the per-step outputs into one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    /// Output at the last valid (unpadded) step; for bidirectional layers the backward half is
    /// taken at step 0, where it has read the whole sequence.
    Last,
    /// Mean over valid steps.
    Mean,
    /// Element-wise maximum over valid steps.
    Max,
}

/// The learning problem, each kind carrying the preparation of its own data (so a task cannot be
/// paired with another kind's data settings). The spec file keeps those settings under `[data]`.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskSpec {
    /// Windowed multivariate series → next `horizon` values of the target columns.
    Forecast {
        /// Number of future steps predicted (≥ 1).
        horizon: usize,
        /// Training loss.
        loss: ForecastLoss,
        /// Season length for the seasonal-naive baseline (e.g. 12 for monthly data); `None`
        /// reports only the naive (last value) baseline.
        season: Option<usize>,
        /// The series' columns, windows and scaling (`[data]`).
        series: SeriesSpec,
    },
    /// Token sequence → one of a fixed set of classes.
    Classify {
        /// Pooling over valid steps.
        pooling: Pooling,
        /// Per-class loss weights keyed by label; classes not listed weigh 1.
        class_weights: Vec<(String, f64)>,
        /// The text and label columns and the tokenizer (`[data]`).
        text: TextSpec,
    },
    /// Next-token language model over a text corpus, trained with truncated backpropagation
    /// through time: the hidden state is carried from one chunk of `bptt` tokens to the next
    /// (detached), so the model sees context longer than a chunk.
    LanguageModel {
        /// Tokens per training chunk, the truncation length of BPTT (≥ 1).
        bptt: usize,
        /// The corpus' tokenizer and vocabulary (`[data]`).
        corpus: CorpusSpec,
    },
    /// Source token sequence → target token sequence (translation): a recurrent encoder and an
    /// attentional recurrent decoder.
    Seq2seq {
        /// How the decoder attends over the encoder outputs.
        attention: Seq2seqAttention,
        /// Probability, per decoder step, of feeding the reference token (rather than the
        /// model's own greedy prediction) as the next input during training, `[0, 1]`.
        teacher_forcing: f64,
        /// Hypotheses kept by beam search at inference (1 = greedy decoding).
        beam_width: usize,
        /// Length normalization `α ≥ 0` of beam search: hypotheses are ranked by
        /// `log p / length^α` (0 = raw log-probability).
        length_penalty: f64,
        /// The source and target columns and the tokenizer (`[data]`).
        pairs: PairSpec,
    },
}

impl TaskSpec {
    /// The task's kind.
    pub fn kind(&self) -> TaskKind {
        match self {
            TaskSpec::Forecast { .. } => TaskKind::Forecast,
            TaskSpec::Classify { .. } => TaskKind::Classify,
            TaskSpec::LanguageModel { .. } => TaskKind::LanguageModel,
            TaskSpec::Seq2seq { .. } => TaskKind::Seq2seq,
        }
    }

    /// The kind's name as `task.kind` spells it.
    pub fn kind_name(&self) -> &'static str {
        self.kind().name()
    }
}

/// A task kind without its settings: its name and what it supports, declared here once for
/// validation and the trainer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaskKind {
    /// `forecast`.
    Forecast,
    /// `classify`.
    Classify,
    /// `seq2seq`.
    Seq2seq,
    /// `language_model`.
    LanguageModel,
}

impl TaskKind {
    /// Every kind, in the order messages list them.
    pub const ALL: [TaskKind; 4] = [
        TaskKind::Forecast,
        TaskKind::Classify,
        TaskKind::Seq2seq,
        TaskKind::LanguageModel,
    ];

    /// The name `task.kind` spells.
    pub fn name(self) -> &'static str {
        match self {
            TaskKind::Forecast => "forecast",
            TaskKind::Classify => "classify",
            TaskKind::Seq2seq => "seq2seq",
            TaskKind::LanguageModel => "language_model",
        }
    }

    /// The kind `task.kind = name` names.
    pub fn from_name(name: &str) -> Option<TaskKind> {
        TaskKind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// Why this kind cannot be cut into pipeline stages (`parallel.pipeline` must be 1), as
    /// validation says it; `None` when it can.
    pub fn pipeline_refusal(self) -> Option<&'static str> {
        match self {
            TaskKind::Forecast | TaskKind::Classify => None,
            // The decoder reads the encoder's whole output at every step and carries the
            // target inputs besides the stage boundary: it is not cut into pipeline stages.
            TaskKind::Seq2seq => {
                Some("must be 1 for task.kind = \"seq2seq\" (use parallel.data to scale)")
            }
            TaskKind::LanguageModel => Some(
                "must be 1 for a language model (the carried state is not passed between stages)",
            ),
        }
    }

    /// Whether every layer must be causal (no step reads later steps: no backward direction,
    /// no same-padded Conv1d, no self-attention), because the later steps are what it predicts.
    pub fn causal(self) -> bool {
        match self {
            TaskKind::Forecast | TaskKind::Classify | TaskKind::Seq2seq => false,
            TaskKind::LanguageModel => true,
        }
    }

    /// The metrics early stopping can monitor for this kind (an allow-list: the kind reports
    /// them in every validation).
    pub fn monitored_metrics(self) -> &'static [MonitorMetric] {
        match self {
            TaskKind::Forecast => &[
                MonitorMetric::ValLoss,
                MonitorMetric::ValRmse,
                MonitorMetric::ValMae,
            ],
            TaskKind::Classify => &[
                MonitorMetric::ValLoss,
                MonitorMetric::ValAccuracy,
                MonitorMetric::ValF1,
            ],
            TaskKind::Seq2seq => &[MonitorMetric::ValLoss, MonitorMetric::ValBleu],
            TaskKind::LanguageModel => &[MonitorMetric::ValLoss],
        }
    }
}

/// Attention of a sequence-to-sequence decoder over the encoder outputs `h_j`, from decoder
/// state `s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Seq2seqAttention {
    /// Additive (Bahdanau et al. 2015): `v · tanh(W s_{t-1} + U h_j)`, the context feeds the
    /// cell.
    Bahdanau,
    /// Multiplicative (Luong et al. 2015), dot: `s_t · h_j`.
    LuongDot,
    /// Multiplicative (Luong et al. 2015), general: `s_t · W h_j`.
    LuongGeneral,
}

/// File format of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DataFormat {
    /// Comma-separated with a header row.
    Csv,
    /// Tab-separated with a header row.
    Tsv,
    /// One JSON object per line.
    Jsonl,
    /// Plain UTF-8 text (a corpus for a language model; inferred from `.txt`).
    Text,
}

/// Feature scaling fitted on the training split only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    /// No scaling.
    None,
    /// Subtract the mean, divide by the standard deviation (per column).
    Zscore,
    /// Map the training minimum..maximum to 0..1 (per column).
    Minmax,
}

/// Text tokenizer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenizerKind {
    /// One token per Unicode scalar value.
    Char,
    /// Lowercase-optional words: runs of alphanumerics/apostrophes; punctuation marks are tokens.
    Word,
}

/// Fractions of the samples in the train, validation and test splits (sum to 1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Split {
    /// Training fraction (> 0).
    pub train: f64,
    /// Validation fraction (≥ 0).
    pub val: f64,
    /// Test fraction (≥ 0).
    pub test: f64,
}

/// Data source: where the samples are and how they are split. How they are prepared depends on
/// the task and is carried by its [`TaskSpec`] variant.
#[derive(Debug, Clone, PartialEq)]
pub struct DataSpec {
    /// Dataset file. Relative paths are resolved against the spec file's directory.
    pub path: PathBuf,
    /// File format (from the `format` key, else the file extension).
    pub format: DataFormat,
    /// Split fractions. Forecasting splits chronologically; classification shuffles by seed first.
    pub split: Split,
}

/// Preparation of a text corpus for a language model. The token stream is cut contiguously
/// into train | val | test by the split fractions (no shuffling: the order is the signal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CorpusSpec {
    /// Tokenizer (`char` keeps every character, newlines included; `word` adds an end-of-line
    /// token at each line end).
    pub tokenizer: TokenizerKind,
    /// Lowercase text before tokenizing.
    pub lowercase: bool,
    /// Tokens seen fewer times than this in the training split map to `<unk>` (≥ 1).
    pub min_freq: usize,
    /// Largest vocabulary including `<pad>` and `<unk>` (≥ 3).
    pub max_vocab: usize,
}

/// Preparation of a numeric time series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SeriesSpec {
    /// Input columns, by header name, in model input order (non-empty).
    pub features: Vec<String>,
    /// Predicted columns, by header name (non-empty; may overlap `features`).
    pub targets: Vec<String>,
    /// Input window length in steps (≥ 1).
    pub window: usize,
    /// Distance between the starts of consecutive windows (≥ 1).
    pub stride: usize,
    /// Scaling fitted on the training split.
    pub normalize: Normalization,
    /// What the model predicts: target levels, or their change from the window's last value.
    pub forecast_mode: ForecastMode,
    /// Whether the model's targets (the normalized levels, or in the delta modes the changes
    /// from the mode's reference) are standardized with their own training mean and spread,
    /// per target column. Default: on in the delta modes (their changes are a small fraction
    /// of the level's spread), off in level mode. Absent in specs written before the key
    /// existed, which read as off.
    #[serde(default)]
    pub scale_targets: bool,
}

/// What a forecaster's outputs mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForecastMode {
    /// The (normalized) target values themselves.
    Level,
    /// The change of each target from the last value in the input window; the forecast adds the
    /// last value back. Lets a model follow a trend past the levels seen in training.
    Delta,
    /// The change of each target from the seasonal-naive forecast (the value one season before
    /// the predicted step, `task.season` rows, inside the window); the forecast adds that value
    /// back. The model learns a correction to "same time last season", which keeps up with
    /// level shifts between the training and the test period. Needs `task.season` and
    /// `data.window >= task.season`.
    SeasonalDelta,
}

impl ForecastMode {
    /// For target step `h` (1-based) after the last observed row, how many rows before that row
    /// lies the value the model's output is relative to: `None` for [`ForecastMode::Level`], 0
    /// for [`ForecastMode::Delta`], `m·⌈h/m⌉ − h` (the seasonal-naive row) for
    /// [`ForecastMode::SeasonalDelta`] with season `m` (0 when `season` is `None`, which
    /// validation rules out).
    pub fn reference_lag(self, season: Option<usize>, h: usize) -> Option<usize> {
        match self {
            ForecastMode::Level => None,
            ForecastMode::Delta => Some(0),
            ForecastMode::SeasonalDelta => Some(season.map_or(0, |m| m * h.div_ceil(m.max(1)) - h)),
        }
    }
}

/// Preparation of labelled text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextSpec {
    /// Column (CSV/TSV header or JSON key) holding the text.
    pub text_column: String,
    /// Column holding the label (string or integer).
    pub label_column: String,
    /// Tokenizer.
    pub tokenizer: TokenizerKind,
    /// Lowercase text before tokenizing.
    pub lowercase: bool,
    /// Tokens seen fewer times than this in the training split map to `<unk>` (≥ 1).
    pub min_freq: usize,
    /// Largest vocabulary including `<pad>` and `<unk>` (≥ 3).
    pub max_vocab: usize,
    /// Sequences longer than this are truncated (keeping the start) (≥ 1).
    pub max_len: usize,
    /// The class labels in output order; `None` means the sorted set seen in the training split.
    /// A label outside an explicit list is a data error.
    pub labels: Option<Vec<String>>,
}

/// Preparation of source/target text pairs for sequence-to-sequence tasks. Source and target
/// get separate vocabularies built on the train split; both use the same tokenizer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairSpec {
    /// Column (CSV/TSV header or JSON key) holding the source text.
    pub source_column: String,
    /// Column holding the target text.
    pub target_column: String,
    /// Tokenizer of both sides.
    pub tokenizer: TokenizerKind,
    /// Lowercase text before tokenizing.
    pub lowercase: bool,
    /// Tokens seen fewer times than this in the training split map to `<unk>` (≥ 1).
    pub min_freq: usize,
    /// Largest vocabulary per side, special tokens included (≥ 5).
    pub max_vocab: usize,
    /// Source sequences longer than this are truncated, keeping the start (≥ 1).
    pub max_source_len: usize,
    /// Target sequences longer than this are truncated, keeping the start (≥ 1); it also bounds
    /// the length of decoded outputs (plus `<eos>`).
    pub max_target_len: usize,
}

/// SGD-family and adaptive optimizers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerSpec {
    /// Stochastic gradient descent with optional (Nesterov) momentum and L2 weight decay.
    Sgd {
        /// Learning rate (> 0).
        lr: f64,
        /// Momentum coefficient, `[0, 1)`.
        momentum: f64,
        /// Nesterov momentum (requires momentum > 0).
        nesterov: bool,
        /// L2 penalty added to the gradient (≥ 0).
        weight_decay: f64,
    },
    /// RMSProp (PyTorch's form, no centering).
    Rmsprop {
        /// Learning rate (> 0).
        lr: f64,
        /// Smoothing constant of the squared-gradient average, `(0, 1)`.
        alpha: f64,
        /// Denominator epsilon (> 0).
        eps: f64,
        /// Momentum coefficient, `[0, 1)`.
        momentum: f64,
        /// L2 penalty added to the gradient (≥ 0).
        weight_decay: f64,
    },
    /// Adam with L2 weight decay added to the gradient.
    Adam {
        /// Learning rate (> 0).
        lr: f64,
        /// First-moment decay, `[0, 1)`.
        beta1: f64,
        /// Second-moment decay, `[0, 1)`.
        beta2: f64,
        /// Denominator epsilon (> 0).
        eps: f64,
        /// L2 penalty added to the gradient (≥ 0).
        weight_decay: f64,
    },
    /// Adam with decoupled weight decay.
    Adamw {
        /// Learning rate (> 0).
        lr: f64,
        /// First-moment decay, `[0, 1)`.
        beta1: f64,
        /// Second-moment decay, `[0, 1)`.
        beta2: f64,
        /// Denominator epsilon (> 0).
        eps: f64,
        /// Decoupled decay rate (≥ 0).
        weight_decay: f64,
    },
}

impl OptimizerSpec {
    /// The base learning rate before any schedule.
    pub fn lr(&self) -> f64 {
        match *self {
            OptimizerSpec::Sgd { lr, .. }
            | OptimizerSpec::Rmsprop { lr, .. }
            | OptimizerSpec::Adam { lr, .. }
            | OptimizerSpec::Adamw { lr, .. } => lr,
        }
    }
}

/// Learning-rate schedule, applied per optimizer step after an optional linear warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    /// Shape after warm-up.
    pub kind: ScheduleKind,
    /// Steps of linear warm-up from `lr / warmup_steps` to `lr` (0 = none).
    pub warmup_steps: u64,
}

/// Shape of the learning-rate schedule after warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScheduleKind {
    /// Constant learning rate.
    Constant,
    /// Multiply by `gamma` every `step_size` steps.
    Step {
        /// Steps between decays (≥ 1).
        step_size: u64,
        /// Decay factor, `(0, 1]`.
        gamma: f64,
    },
    /// Cosine decay from `lr` to `min_lr` over the remaining steps of the run.
    Cosine {
        /// Final learning rate (≥ 0, ≤ lr).
        min_lr: f64,
    },
}

/// Gradient clipping, applied after the all-reduce and before the optimizer.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClipSpec {
    /// Rescale all gradients so their global L2 norm is at most this (> 0).
    pub norm: Option<f64>,
    /// Clamp every gradient element to `[-value, value]` (> 0). Applied before `norm`.
    pub value: Option<f64>,
}

/// A metric the trainer can monitor for early stopping and best-checkpoint selection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MonitorMetric {
    /// Validation loss (lower is better).
    ValLoss,
    /// Validation accuracy (classification; higher is better).
    ValAccuracy,
    /// Validation macro F1 (classification; higher is better).
    ValF1,
    /// Validation RMSE in original units (forecasting; lower is better).
    ValRmse,
    /// Validation MAE in original units (forecasting; lower is better).
    ValMae,
    /// Validation corpus BLEU-4 of greedy decoding (seq2seq; higher is better).
    ValBleu,
}

impl MonitorMetric {
    /// Whether a larger value is better.
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            MonitorMetric::ValAccuracy | MonitorMetric::ValF1 | MonitorMetric::ValBleu
        )
    }
}

/// Stop when the monitored metric has not improved for `patience` evaluations.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EarlyStopping {
    /// Metric monitored after every epoch.
    pub metric: MonitorMetric,
    /// Epochs without improvement before stopping (≥ 1).
    pub patience: u32,
    /// Smallest change counted as an improvement (≥ 0).
    pub min_delta: f64,
}

/// The optimization loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSpec {
    /// Passes over the training split (≥ 1).
    pub epochs: u32,
    /// Global batch size: samples per optimizer step summed over data-parallel ranks (≥ 1).
    pub batch_size: usize,
    /// Optional cap on optimizer steps (the run ends at whichever of epochs/steps comes first).
    pub max_steps: Option<u64>,
    /// Optimizer and its hyperparameters.
    pub optimizer: OptimizerSpec,
    /// Learning-rate schedule.
    pub schedule: ScheduleSpec,
    /// Gradient clipping.
    pub clip: ClipSpec,
    /// Early stopping, if any.
    pub early_stopping: Option<EarlyStopping>,
    /// Compute threads per process (default 1: one core per worker is fastest at these sizes).
    pub threads: usize,
}

/// Pipeline schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PipelineSchedule {
    /// All forwards of the micro-batches, then all backwards.
    Gpipe,
    /// One-forward-one-backward with bounded in-flight activations.
    OneFOneB,
}

/// How the job is distributed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ParallelSpec {
    /// Data-parallel replicas (≥ 1; divides `train.batch_size`).
    pub data: usize,
    /// Pipeline stages per replica (≥ 1, ≤ number of model layers).
    pub pipeline: usize,
    /// Micro-batches per step in a pipeline (≥ 1; divides the per-replica batch).
    pub microbatches: usize,
    /// Pipeline schedule.
    pub schedule: PipelineSchedule,
    /// Explicit stage boundaries over the layer list, e.g. `[[0, 1], [2, 3]]`; `None` balances
    /// stages by parameter count.
    pub stages: Option<Vec<Vec<usize>>>,
    /// Gradient fusion buffer size in bytes (0 disables fusion).
    pub fusion_bytes: u64,
    /// Elastic data parallelism: the job runs on a varying number of workers. Omitted from
    /// the serialized form when absent, so checkpoints written before it read back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elastic: Option<ElasticSpec>,
}

/// `[parallel.elastic]`: a data-parallel job that survives the loss of workers without a full
/// restart and grows back when workers return (issue 16, Horovod's elastic mode).
///
/// The job runs on `world` workers, `min <= world <= max`, where `world` divides
/// `train.batch_size` (the global batch, so every world takes the same steps on the same sample
/// order). Every rank keeps an in-memory commit of the whole training state every
/// `commit_every` steps; when a worker is lost the others re-form the ring among themselves
/// and continue from the newest commit any of them holds, and when a worker is idle the job
/// stops at the next step and re-forms larger, continuing from that step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ElasticSpec {
    /// Fewest workers the job trains on (≥ 1, divides `train.batch_size`); below it the job
    /// waits, queued, with the reason in its status.
    pub min: usize,
    /// Most workers the job trains on (≥ `min`, divides `train.batch_size`).
    pub max: usize,
    /// Steps between two in-memory commits (≥ 1): what a lost worker can cost.
    pub commit_every: u64,
}

impl ElasticSpec {
    /// The largest world in `min..=max` that divides `batch` and is at most `available`;
    /// `None` when even `min` workers are not available.
    pub fn world_for(&self, batch: usize, available: usize) -> Option<usize> {
        (self.min..=self.max.min(available))
            .rev()
            .find(|w| batch.is_multiple_of(*w))
    }

    /// Whether a job of global batch `batch` may run on `world` workers.
    pub fn allows(&self, batch: usize, world: usize) -> bool {
        (self.min..=self.max).contains(&world) && batch.is_multiple_of(world)
    }
}

/// Checkpointing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointSpec {
    /// Directory receiving `latest/`, `best/` and the final model. Relative paths are resolved
    /// against the current directory of the process that writes them.
    pub dir: PathBuf,
    /// Save every N optimizer steps (0 = only at epoch ends and at the end).
    pub every_steps: u64,
    /// How many times the coordinator restarts a cluster job after a failed attempt (a lost
    /// worker, a failed rank), 0..=[`MAX_RESTARTS`]. A restarted attempt resumes from the
    /// `latest` checkpoint this job wrote in `dir`, or starts over when there is none. Ignored
    /// by `ringtrain train`. Omitted from the serialized form when 0, so checkpoints written
    /// before restarts existed read back unchanged.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_restarts: u32,
    /// Every rank appends the training sample ids of each step it takes to
    /// `dir/samples/<run>-rank<R>.tsv` (`epoch`, `step`, comma-separated ids), so a run can be
    /// audited for samples seen twice or never (elastic jobs: `<run>` names the attempt).
    #[serde(default, skip_serializing_if = "is_false")]
    pub record_samples: bool,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Largest `checkpoint.max_restarts`: a job failing more often than this has a cause that a
/// restart does not cure.
pub const MAX_RESTARTS: u32 = 100;

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// `[limits]`: the resource budget a spec must fit (checked at validation, before anything is
/// allocated; see [`crate::budget`]). The defaults let a 24 GiB machine survive any spec that
/// passes; a spec may raise them explicitly for a bigger machine (a worker still enforces its
/// own ceiling on top).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LimitsSpec {
    /// Most model parameters (`limits.max_parameters`; default [`LimitsSpec::DEFAULT_MAX_PARAMETERS`]).
    pub max_parameters: u64,
    /// Most estimated training memory in bytes: parameters with their gradients and optimizer
    /// state plus activations for one batch (`limits.max_memory_mb`, given in MiB; default
    /// [`LimitsSpec::DEFAULT_MAX_MEMORY_BYTES`]).
    pub max_memory_bytes: u64,
    /// Largest vocabulary (`limits.max_vocab`; default [`LimitsSpec::DEFAULT_MAX_VOCAB`]).
    pub max_vocab: u64,
    /// Largest dataset file in bytes, checked before it is read (`limits.max_data_mb`, in MiB;
    /// default [`LimitsSpec::DEFAULT_MAX_DATA_BYTES`]).
    pub max_data_bytes: u64,
}

impl LimitsSpec {
    /// Each limit of `self` capped by `ceiling`'s (a worker's own limits, or the submitted
    /// spec's limits bounding a checkpoint's stored spec).
    pub fn capped_by(&self, ceiling: &LimitsSpec) -> LimitsSpec {
        LimitsSpec {
            max_parameters: self.max_parameters.min(ceiling.max_parameters),
            max_memory_bytes: self.max_memory_bytes.min(ceiling.max_memory_bytes),
            max_vocab: self.max_vocab.min(ceiling.max_vocab),
            max_data_bytes: self.max_data_bytes.min(ceiling.max_data_bytes),
        }
    }

    /// Default `limits.max_parameters`: 250 million (4 GB with gradients and Adam state).
    pub const DEFAULT_MAX_PARAMETERS: u64 = 250_000_000;
    /// Default `limits.max_memory_mb`: 12 GiB, half of a 24 GiB machine (the estimate is
    /// rough; the rest is headroom for the data, the allocator and the OS).
    pub const DEFAULT_MAX_MEMORY_BYTES: u64 = 12 << 30;
    /// Default `limits.max_vocab`: one million tokens.
    pub const DEFAULT_MAX_VOCAB: u64 = 1_000_000;
    /// Default `limits.max_data_mb`: 1 GiB per dataset file.
    pub const DEFAULT_MAX_DATA_BYTES: u64 = 1 << 30;
}

impl Default for LimitsSpec {
    fn default() -> Self {
        LimitsSpec {
            max_parameters: Self::DEFAULT_MAX_PARAMETERS,
            max_memory_bytes: Self::DEFAULT_MAX_MEMORY_BYTES,
            max_vocab: Self::DEFAULT_MAX_VOCAB,
            max_data_bytes: Self::DEFAULT_MAX_DATA_BYTES,
        }
    }
}
