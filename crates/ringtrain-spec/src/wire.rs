//! The serialized shape of a [`JobSpec`] (the resolved spec a checkpoint header and a cluster
//! job carry). It mirrors the spec file: the task's own settings under `task` (tagged by
//! `kind`), its data preparation under `data.kind` (`{"Series": {..}}`, `{"Text": {..}}`, ...).
//! In memory a [`TaskSpec`] variant carries its data settings, so a task cannot be paired with
//! another kind's data; this module is where the two shapes meet, and the only place that sees
//! (and refuses) such a pair. The shape is unchanged from before the fold, so every checkpoint
//! written earlier loads, and new ones load in older builds.

use crate::types::*;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// [`JobSpec`] as serialized.
#[derive(Serialize, Deserialize)]
pub(crate) struct JobSpecWire {
    name: String,
    seed: u64,
    model: ModelSpec,
    task: TaskWire,
    data: DataWire,
    train: TrainSpec,
    parallel: ParallelSpec,
    checkpoint: CheckpointSpec,
    // Absent in checkpoints written before limits existed, which read as the defaults.
    #[serde(default)]
    limits: LimitsSpec,
    // Absent when the run did not start from another model (and in older checkpoints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    init_from: Option<InitFrom>,
}

/// `task`: a [`TaskSpec`] without its data settings.
#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum TaskWire {
    Forecast {
        horizon: usize,
        loss: ForecastLoss,
        season: Option<usize>,
    },
    Classify {
        pooling: Pooling,
        class_weights: Vec<(String, f64)>,
    },
    LanguageModel {
        bptt: usize,
    },
    Seq2seq {
        attention: Seq2seqAttention,
        teacher_forcing: f64,
        beam_width: usize,
        length_penalty: f64,
    },
}

/// `data`: [`DataSpec`] plus the task's data settings under `kind`.
#[derive(Serialize, Deserialize)]
struct DataWire {
    path: PathBuf,
    format: DataFormat,
    split: Split,
    kind: DataKindWire,
}

/// `data.kind`, externally tagged.
#[derive(Serialize, Deserialize)]
enum DataKindWire {
    Series(SeriesSpec),
    Text(TextSpec),
    Pairs(PairSpec),
    Corpus(CorpusSpec),
}

impl DataKindWire {
    fn name(&self) -> &'static str {
        match self {
            DataKindWire::Series(_) => "Series",
            DataKindWire::Text(_) => "Text",
            DataKindWire::Pairs(_) => "Pairs",
            DataKindWire::Corpus(_) => "Corpus",
        }
    }
}

impl TryFrom<JobSpecWire> for JobSpec {
    type Error = String;

    /// Joins the task with its data settings; a task paired with another kind's data (only a
    /// hand-made document can hold one) is an error naming both.
    fn try_from(w: JobSpecWire) -> Result<JobSpec, String> {
        let data = w.data.kind;
        // Exhaustive over the task (a new kind must say which data it reads); the data of
        // another kind is the one mismatch, refused naming both.
        let mismatch = |task: &'static str, data: &DataKindWire| {
            format!(
                "task.kind = {task:?} cannot use data.kind = {:?}",
                data.name()
            )
        };
        let task = match w.task {
            TaskWire::Forecast {
                horizon,
                loss,
                season,
            } => {
                let DataKindWire::Series(series) = data else {
                    return Err(mismatch("forecast", &data));
                };
                TaskSpec::Forecast {
                    horizon,
                    loss,
                    season,
                    series,
                }
            }
            TaskWire::Classify {
                pooling,
                class_weights,
            } => {
                let DataKindWire::Text(text) = data else {
                    return Err(mismatch("classify", &data));
                };
                TaskSpec::Classify {
                    pooling,
                    class_weights,
                    text,
                }
            }
            TaskWire::LanguageModel { bptt } => {
                let DataKindWire::Corpus(corpus) = data else {
                    return Err(mismatch("language_model", &data));
                };
                TaskSpec::LanguageModel { bptt, corpus }
            }
            TaskWire::Seq2seq {
                attention,
                teacher_forcing,
                beam_width,
                length_penalty,
            } => {
                let DataKindWire::Pairs(pairs) = data else {
                    return Err(mismatch("seq2seq", &data));
                };
                TaskSpec::Seq2seq {
                    attention,
                    teacher_forcing,
                    beam_width,
                    length_penalty,
                    pairs,
                }
            }
        };
        Ok(JobSpec {
            name: w.name,
            seed: w.seed,
            model: w.model,
            task,
            data: DataSpec {
                path: w.data.path,
                format: w.data.format,
                split: w.data.split,
            },
            train: w.train,
            parallel: w.parallel,
            checkpoint: w.checkpoint,
            limits: w.limits,
            init_from: w.init_from,
        })
    }
}

impl From<JobSpec> for JobSpecWire {
    fn from(s: JobSpec) -> JobSpecWire {
        let (task, kind) = match s.task {
            TaskSpec::Forecast {
                horizon,
                loss,
                season,
                series,
            } => (
                TaskWire::Forecast {
                    horizon,
                    loss,
                    season,
                },
                DataKindWire::Series(series),
            ),
            TaskSpec::Classify {
                pooling,
                class_weights,
                text,
            } => (
                TaskWire::Classify {
                    pooling,
                    class_weights,
                },
                DataKindWire::Text(text),
            ),
            TaskSpec::LanguageModel { bptt, corpus } => (
                TaskWire::LanguageModel { bptt },
                DataKindWire::Corpus(corpus),
            ),
            TaskSpec::Seq2seq {
                attention,
                teacher_forcing,
                beam_width,
                length_penalty,
                pairs,
            } => (
                TaskWire::Seq2seq {
                    attention,
                    teacher_forcing,
                    beam_width,
                    length_penalty,
                },
                DataKindWire::Pairs(pairs),
            ),
        };
        JobSpecWire {
            name: s.name,
            seed: s.seed,
            model: s.model,
            task,
            data: DataWire {
                path: s.data.path,
                format: s.data.format,
                split: s.data.split,
                kind,
            },
            train: s.train,
            parallel: s.parallel,
            checkpoint: s.checkpoint,
            limits: s.limits,
            init_from: s.init_from,
        }
    }
}
