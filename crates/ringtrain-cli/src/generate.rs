//! `ringtrain generate --checkpoint DIR --prompt TEXT --tokens N`: continue a prompt with a
//! trained language model (the prompt warms the recurrent state, then tokens are sampled one at
//! a time; temperature 0 is greedy). `predict` on a language model reuses [`continue_text`] for
//! each input line.

use crate::Output;
use anyhow::bail;
use burn::prelude::Device;
use ringtrain_data::{Fitted, Vocab};
use ringtrain_models::Model;
use ringtrain_train::checkpoint::{Checkpoint, resolve_for_inference};
use ringtrain_train::inference;
use ringtrain_train::lm::{self, Sampling};
use std::path::PathBuf;

/// Most tokens one `generate` call produces (the output is held in memory).
const MAX_TOKENS: usize = 1_000_000;

/// Arguments of `ringtrain generate`.
#[derive(Debug, clap::Args)]
pub(crate) struct GenerateArgs {
    /// Checkpoint directory (best.ckpt, else latest.ckpt) or file of a language model.
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// Text to continue (at least one token; characters or words outside the vocabulary are
    /// read as `<unk>`, with a warning).
    #[arg(long)]
    prompt: String,
    /// Tokens to generate (characters or words, as the model was trained), 1..=1000000.
    #[arg(long, default_value_t = 200)]
    tokens: usize,
    /// Softmax temperature (finite, >= 0); 0 picks the most likely token every time.
    // Negative numbers are read as values (then refused by the range check with a clear
    // message), not as unknown flags.
    #[arg(long, default_value_t = 1.0, allow_negative_numbers = true)]
    temperature: f64,
    /// Sample only among the K most likely tokens.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Seed of the sampling: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// `table` prints the prompt and its continuation; `json` prints one object.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// A language model loaded from a checkpoint, with its vocabulary.
pub(crate) struct LanguageModel {
    model: Model,
    vocab: Vocab,
}

impl LanguageModel {
    /// Loads the checkpoint's model when it is a language model.
    pub(crate) fn load(ckpt: &Checkpoint, device: &Device) -> anyhow::Result<LanguageModel> {
        let Fitted::Corpus { vocab } = &ckpt.header.fitted else {
            bail!(
                "checkpoint of job {:?} is not a language model (task.kind = \"language_model\")",
                ckpt.header.spec.name
            );
        };
        Ok(LanguageModel {
            model: inference::load_model(ckpt, device)?,
            vocab: vocab.clone(),
        })
    }
}

/// Continues `prompt` by `n` tokens; returns the continuation's text and the number of prompt
/// tokens that were outside the vocabulary.
pub(crate) fn continue_text(
    lm: &LanguageModel,
    prompt: &str,
    n: usize,
    sampling: Sampling,
    device: &Device,
) -> anyhow::Result<(String, usize)> {
    let (ids, unknown) = lm::encode_prompt(&lm.vocab, prompt);
    if ids.is_empty() {
        bail!("the prompt {prompt:?} has no tokens: give at least one character or word");
    }
    let out = lm::generate(&lm.model, &ids, n, sampling, device)?;
    Ok((lm::decode(&lm.vocab, &out), unknown))
}

pub(crate) fn run(args: GenerateArgs, device: Device) -> anyhow::Result<()> {
    crate::set_threads(1);
    if args.tokens == 0 || args.tokens > MAX_TOKENS {
        bail!(
            "--tokens {} is out of range: must be in 1..={MAX_TOKENS}",
            args.tokens
        );
    }
    if !args.temperature.is_finite() || args.temperature < 0.0 {
        bail!(
            "--temperature {} is out of range: must be a finite number >= 0",
            args.temperature
        );
    }
    if args.top_k == Some(0) {
        bail!("--top-k 0 is out of range: must be at least 1");
    }
    let path = resolve_for_inference(&args.checkpoint)?;
    let ckpt = Checkpoint::load(&path)?;
    let lm = LanguageModel::load(&ckpt, &device)?;
    let sampling = Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    let (text, unknown) = continue_text(&lm, &args.prompt, args.tokens, sampling, &device)?;
    if unknown > 0 {
        tracing::warn!(
            unknown,
            "prompt tokens outside the model's vocabulary were read as <unk>"
        );
    }
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({
                "prompt": args.prompt,
                "continuation": text,
                "tokens": args.tokens,
                "unknown_prompt_tokens": unknown,
            })
        ),
        Output::Table => println!("{}{text}", args.prompt),
    }
    Ok(())
}
