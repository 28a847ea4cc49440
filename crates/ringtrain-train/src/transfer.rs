//! `init_from`: starting a run from another model's weights (pretraining → fine-tuning,
//! transfer between series). The source is a ringtrain checkpoint, read with the checkpoint
//! reader's checks (lengths before allocation, CRC, the stored spec re-validated within the
//! run's limits); its model is rebuilt from its spec and fitted state so that its layers can be
//! matched to this run's by name and compared tensor by tensor. Exactly the selected layers'
//! values are copied into the freshly initialized model; every other parameter keeps its
//! seeded value. When the embedding is taken, the run's data must be encoded with the
//! checkpoint's vocabulary ([`Pretrained::vocabulary`]), so token `i` means the same in both.
//!
//! Every rank of a data-parallel or pipelined job opens the same file and loads the same values
//! (and rank 0's are broadcast anyway), so the numerics are one process's.

use crate::checkpoint::{self, Checkpoint};
use crate::error::{InitError, TrainError};
use crate::export::TorchFile;
pub use crate::layout::{LayerParams, layer_params};
use crate::optim::{ParamGroup, ParamGroups};
use burn::prelude::Device;
use ringtrain_data::{Fitted, Tokenizer, Vocab};
use ringtrain_models::{Model, flat};
use ringtrain_spec::{InitFormat, InitFrom, JobSpec, LimitsSpec, TaskSpec};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// Names of output layers: task-specific, so the default selection skips them when their
/// shapes differ (a language model's next-token head is never a classifier's).
const OUTPUT_LAYERS: [&str; 2] = ["head", "decoder"];

/// One layer taken from the checkpoint: where its values are there and here.
#[derive(Debug, Clone, PartialEq)]
pub struct Taken {
    /// The layer's name.
    pub name: String,
    /// Its slice of this model's flat buffer.
    pub ours: Range<usize>,
    /// Its slice of the checkpoint's parameters.
    pub theirs: Range<usize>,
}

/// An opened `init_from` checkpoint with its model's layer layout.
#[derive(Debug)]
pub struct Pretrained {
    path: PathBuf,
    source: Source,
}

/// Where the weights come from.
#[derive(Debug)]
enum Source {
    /// A ringtrain checkpoint and its model's layers (known from its own spec).
    Checkpoint {
        ckpt: Box<Checkpoint>,
        layers: Vec<LayerParams>,
    },
    /// A safetensors file in PyTorch's layout, whose layers are only known against the model
    /// that takes them: matched on the first [`Pretrained::select`], then kept with their
    /// values in that model's orientation.
    Safetensors {
        file: Box<TorchFile>,
        matched: OnceLock<(Vec<LayerParams>, Vec<f32>)>,
    },
}

fn names(layers: &[LayerParams]) -> String {
    layers
        .iter()
        .map(|l| l.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn checkpoint_error(e: checkpoint::CheckpointError) -> TrainError {
    InitError::Checkpoint(Box::new(e)).into()
}

impl Pretrained {
    /// Reads the checkpoint `init.checkpoint` names (a file, or a run directory's `best.ckpt`,
    /// else its `latest.ckpt`) with its stored spec checked within `limits`, and rebuilds its
    /// model's layer layout on `device`.
    ///
    /// # Errors
    /// [`InitError::Checkpoint`] when the file is missing, unreadable, corrupt, or its spec
    /// fails validation; [`TrainError::KindMismatch`] / [`TrainError::Model`] when its fitted
    /// state or parameters do not fit its own spec.
    pub fn open(
        init: &InitFrom,
        limits: &LimitsSpec,
        device: &Device,
    ) -> Result<Pretrained, TrainError> {
        match init.format {
            InitFormat::Ringtrain => {}
            InitFormat::Safetensors => {
                let file = TorchFile::open(&init.checkpoint, limits.max_parameters)
                    .map_err(|e| InitError::Safetensors(Box::new(e)))?;
                return Ok(Pretrained {
                    path: init.checkpoint.clone(),
                    source: Source::Safetensors {
                        file: Box::new(file),
                        matched: OnceLock::new(),
                    },
                });
            }
        }
        let path = checkpoint::resolve_for_inference(&init.checkpoint).map_err(checkpoint_error)?;
        let ckpt = Checkpoint::load_within(&path, limits).map_err(checkpoint_error)?;
        let (input, head) = crate::task::model_shape(&ckpt)?;
        let spec = &ckpt.header.spec;
        let model = Model::new(&spec.model, input, head, spec.seed, device)?;
        let layers = layer_params(&model);
        let total = layers.last().map_or(0, |l| l.range.end);
        if total != ckpt.params.len() {
            return Err(checkpoint_error(checkpoint::CheckpointError::Corrupt {
                path,
                reason: format!(
                    "its model has {total} parameters but it holds {}",
                    ckpt.params.len()
                ),
            }));
        }
        Ok(Pretrained {
            path,
            source: Source::Checkpoint {
                ckpt: Box::new(ckpt),
                layers,
            },
        })
    }

    /// The file read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The checkpoint, when the source is a ringtrain checkpoint.
    pub fn checkpoint(&self) -> Option<&Checkpoint> {
        match &self.source {
            Source::Checkpoint { ckpt, .. } => Some(ckpt),
            Source::Safetensors { .. } => None,
        }
    }

    /// The source's layers that `model` can take from, with the source's flat values: a
    /// checkpoint's own layers, or a safetensors file's tensors matched to `model`'s keys.
    fn source_layers(&self, model: &Model) -> Result<(&[LayerParams], &[f32]), TrainError> {
        match &self.source {
            Source::Checkpoint { ckpt, layers } => Ok((layers, &ckpt.params)),
            Source::Safetensors { file, matched } => {
                if matched.get().is_none() {
                    let found = file
                        .layers_for(model)
                        .map_err(|e| InitError::Safetensors(Box::new(e)))?;
                    // A second caller racing here computed the same value from the same file.
                    let _ = matched.set(found);
                }
                let (layers, params) = matched.get().ok_or_else(|| {
                    TrainError::Input("init_from: safetensors layers were not matched".into())
                })?;
                Ok((layers, params))
            }
        }
    }

    fn display(&self) -> String {
        self.path.display().to_string()
    }

    /// The vocabulary `spec`'s data must be encoded with: the checkpoint's, when `init` takes
    /// the embedding (listed, or by default when both models have one); `None` otherwise.
    ///
    /// # Errors
    /// [`InitError::Vocabulary`] when the checkpoint has no single vocabulary (a forecaster or
    /// a seq2seq model), the spec's task cannot adopt one (seq2seq), the tokenizer or
    /// lowercasing differ, or it is larger than `limits.max_vocab`.
    pub fn vocabulary(&self, init: &InitFrom, spec: &JobSpec) -> Result<Option<Vocab>, TrainError> {
        let token_task = match &spec.task {
            TaskSpec::Classify { .. }
            | TaskSpec::LanguageModel { .. }
            | TaskSpec::Seq2seq { .. } => true,
            TaskSpec::Forecast { .. } => false,
        };
        let has_embedding = match &self.source {
            Source::Checkpoint { layers, .. } => layers.iter().any(|l| l.name == "embedding"),
            Source::Safetensors { file, .. } => file.has("embedding.weight"),
        };
        let takes = match &init.layers {
            Some(list) => list.iter().any(|n| n == "embedding"),
            None => token_task && has_embedding,
        };
        if !takes || !token_task {
            // A forecaster listing `embedding` is refused by the layer check, naming the field.
            return Ok(None);
        }
        let refuse = |reason: String| -> TrainError {
            InitError::Vocabulary {
                path: self.display(),
                reason,
            }
            .into()
        };
        let fitted = match &self.source {
            Source::Checkpoint { ckpt, .. } => &ckpt.header.fitted,
            Source::Safetensors { file, .. } => file.fitted().ok_or_else(|| {
                refuse(
                    "the file has no ringtrain.fitted metadata (it was not exported by \
                     ringtrain), so its token ids cannot be matched to this data's words; leave \
                     `embedding` out of init_from.layers"
                        .into(),
                )
            })?,
        };
        let vocab = match fitted {
            Fitted::Text { vocab, .. } | Fitted::Corpus { vocab } => vocab,
            Fitted::Pairs { .. } => {
                return Err(refuse(
                    "a seq2seq checkpoint has separate source and target vocabularies; leave \
                     `embedding` out of init_from.layers"
                        .into(),
                ));
            }
            Fitted::Series(_) => {
                return Err(refuse(
                    "a forecaster has no vocabulary or embedding to take".into(),
                ));
            }
        };
        let wanted = match &spec.task {
            TaskSpec::Classify { text, .. } => Tokenizer {
                kind: text.tokenizer,
                lowercase: text.lowercase,
            },
            TaskSpec::LanguageModel { corpus, .. } => Tokenizer {
                kind: corpus.tokenizer,
                lowercase: corpus.lowercase,
            },
            TaskSpec::Seq2seq { .. } | TaskSpec::Forecast { .. } => {
                return Err(refuse(
                    "a seq2seq model builds its own source and target vocabularies, so it cannot \
                     take the checkpoint's embedding; leave `embedding` out of init_from.layers"
                        .into(),
                ));
            }
        };
        let have = vocab.tokenizer();
        if have != wanted {
            return Err(refuse(format!(
                "its vocabulary was built with data.tokenizer = {:?}, data.lowercase = {} but \
                 this spec's data uses data.tokenizer = {:?}, data.lowercase = {}: token ids \
                 would mean different things (match the tokenizer, or leave `embedding` out of \
                 init_from.layers)",
                tokenizer_name(have),
                have.lowercase,
                tokenizer_name(wanted),
                wanted.lowercase
            )));
        }
        if vocab.len() as u64 > spec.limits.max_vocab {
            return Err(refuse(format!(
                "its vocabulary has {} tokens, over limits.max_vocab = {}",
                vocab.len(),
                spec.limits.max_vocab
            )));
        }
        Ok(Some(vocab.clone()))
    }

    /// The layers of `model` that `init` takes, each matched by name and compared tensor by
    /// tensor with the checkpoint's: the listed ones, or by default every layer both models
    /// have, except an output layer (`head`, `decoder`) whose shapes differ.
    ///
    /// # Errors
    /// [`InitError::UnknownLayer`] naming `init_from.layers[i]` for a name missing from either
    /// model; [`InitError::Shape`] naming the layer with both shapes; [`InitError::NothingToTake`]
    /// when the default selection is empty.
    pub fn select(&self, init: &InitFrom, model: &Model) -> Result<Vec<Taken>, TrainError> {
        let ours = layer_params(model);
        let (theirs_all, _) = self.source_layers(model)?;
        let find = |layers: &[LayerParams], name: &str| layers.iter().position(|l| l.name == name);
        let mut taken = Vec::new();
        match &init.layers {
            Some(list) => {
                for (i, name) in list.iter().enumerate() {
                    let field = format!("init_from.layers[{i}]");
                    let unknown = |model: &'static str, layers: &[LayerParams]| -> TrainError {
                        InitError::UnknownLayer {
                            field: field.clone(),
                            name: name.clone(),
                            model,
                            available: names(layers),
                            path: self.display(),
                        }
                        .into()
                    };
                    let a = find(&ours, name).ok_or_else(|| unknown("this model", &ours))?;
                    let b = find(theirs_all, name)
                        .ok_or_else(|| unknown("the checkpoint's model", theirs_all))?;
                    taken.push(self.take(&field, &ours[a], &theirs_all[b])?);
                }
            }
            None => {
                for layer in &ours {
                    let Some(b) = find(theirs_all, &layer.name) else {
                        continue;
                    };
                    let theirs = &theirs_all[b];
                    if layer.shapes != theirs.shapes && OUTPUT_LAYERS.contains(&layer.name.as_str())
                    {
                        continue;
                    }
                    taken.push(self.take("init_from.layers (default)", layer, theirs)?);
                }
                if taken.is_empty() {
                    return Err(InitError::NothingToTake {
                        path: self.display(),
                        ours: names(&ours),
                        theirs: names(theirs_all),
                    }
                    .into());
                }
            }
        }
        Ok(taken)
    }

    fn take(
        &self,
        field: &str,
        ours: &LayerParams,
        theirs: &LayerParams,
    ) -> Result<Taken, TrainError> {
        if ours.shapes != theirs.shapes {
            let hint = match (
                ours.name.as_str(),
                ours.shapes.first(),
                theirs.shapes.first(),
            ) {
                ("embedding", Some(a), Some(b)) if a.first() != b.first() => format!(
                    ": the vocabularies differ ({} tokens here, {} there)",
                    a.first().copied().unwrap_or(0),
                    b.first().copied().unwrap_or(0)
                ),
                ("embedding", Some(_), Some(_)) => ": model.embedding_dim differs".into(),
                _ => String::new(),
            };
            return Err(InitError::Shape {
                field: field.to_string(),
                name: ours.name.clone(),
                expected: format!("{:?}", ours.shapes),
                found: format!("{:?}", theirs.shapes),
                path: self.display(),
                hint,
            }
            .into());
        }
        Ok(Taken {
            name: ours.name.clone(),
            ours: ours.range.clone(),
            theirs: theirs.range.clone(),
        })
    }

    /// `model` with the `taken` layers' values copied from the checkpoint; every other
    /// parameter keeps its value.
    ///
    /// # Errors
    /// [`TrainError::Model`] if `taken` does not fit `model` (it was selected for another).
    pub fn load(&self, model: Model, taken: &[Taken]) -> Result<Model, TrainError> {
        let (_, source) = self.source_layers(&model)?;
        let mut params = flat::flatten_params(&model);
        for t in taken {
            let (Some(dst), Some(src)) =
                (params.get_mut(t.ours.clone()), source.get(t.theirs.clone()))
            else {
                return Err(ringtrain_models::ModelError::ParamCount {
                    expected: t.ours.end,
                    got: params.len(),
                }
                .into());
            };
            dst.copy_from_slice(src);
        }
        Ok(flat::load_params(model, &params)?)
    }
}

/// The parameter groups of the `taken` layers: frozen for `init.freeze_epochs` epochs, then
/// trained at `init.lr_scale` times the learning rate. Empty when neither applies.
pub fn groups(init: &InitFrom, taken: &[Taken]) -> ParamGroups {
    if init.freeze_epochs == 0 && init.lr_scale == 1.0 {
        return ParamGroups::default();
    }
    ParamGroups::new(
        taken
            .iter()
            .map(|t| ParamGroup {
                range: t.ours.clone(),
                lr_scale: init.lr_scale as f32,
                frozen_epochs: init.freeze_epochs,
            })
            .collect(),
    )
}

fn tokenizer_name(t: Tokenizer) -> &'static str {
    match t.kind {
        ringtrain_spec::TokenizerKind::Char => "char",
        ringtrain_spec::TokenizerKind::Word => "word",
    }
}
