//! `ringtrain predict --checkpoint DIR`: forecast the steps after the end of a CSV, classify
//! lines of text from a file or stdin, translate them (seq2seq, one output line per input
//! line, `--beam N`), or (a language model) continue each such line.

use crate::Output;
use anyhow::{Context, bail};
use burn::prelude::Device;
use comfy_table::{Table, presets::UTF8_FULL_CONDENSED};
use ringtrain_data::{Fitted, Source, predict_input};
use ringtrain_spec::TaskSpec;
use ringtrain_train::checkpoint::{Checkpoint, resolve_for_inference};
use ringtrain_train::inference;
use std::io::BufRead;
use std::path::PathBuf;

/// Arguments of `ringtrain predict`.
#[derive(Debug, clap::Args)]
pub(crate) struct PredictArgs {
    /// Checkpoint directory (best.ckpt, else latest.ckpt) or file.
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// Forecasting: the series to continue (defaults to the training data file). Classification:
    /// a file with one text per line (defaults to stdin).
    #[arg(long, value_name = "FILE")]
    input: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Seq2seq: beam width (1 = greedy decoding); defaults to the spec's `task.beam_width`.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=1024))]
    beam: Option<u32>,
    /// Language model: tokens generated after each line (greedy; `ringtrain generate`
    /// samples).
    #[arg(long, default_value_t = 64)]
    tokens: usize,
}

pub(crate) fn run(args: PredictArgs, device: Device) -> anyhow::Result<()> {
    crate::set_threads(1);
    let path = resolve_for_inference(&args.checkpoint)?;
    let ckpt = Checkpoint::load(&path)?;
    let model = inference::load_model(&ckpt, &device)?;
    let spec = &ckpt.header.spec;
    let fitted = &ckpt.header.fitted;
    // The fitted state comes from the checkpoint, beside the spec: a foreign or corrupt file can
    // pair them wrongly (loading the model has refused most such files already).
    let inconsistent = || {
        anyhow::anyhow!(
            "checkpoint {} holds inconsistent task state",
            path.display()
        )
    };
    match &spec.task {
        TaskSpec::Forecast { series, .. } => {
            let Fitted::Series(normalizer) = fitted else {
                return Err(inconsistent());
            };
            let file = args.input.clone().unwrap_or_else(|| spec.data.path.clone());
            let source = Source::resolve(&file, &std::env::current_dir()?)?;
            let input = predict_input(&source, spec.data.format, series, normalizer)?;
            let last_line = input.last_line;
            let steps = inference::forecast(&model, &ckpt, input, &device)?;
            match args.output {
                Output::Json => {
                    let rows: Vec<serde_json::Value> = steps
                        .iter()
                        .enumerate()
                        .map(|(h, v)| {
                            let mut row = serde_json::Map::new();
                            row.insert("step".into(), (h + 1).into());
                            for (name, x) in series.targets.iter().zip(v) {
                                row.insert(name.clone(), f64::from(*x).into());
                            }
                            row.into()
                        })
                        .collect();
                    println!("{}", serde_json::to_string_pretty(&rows)?);
                }
                Output::Table => {
                    println!(
                        "forecast after line {last_line} of {}",
                        source.display_name()
                    );
                    let mut t = Table::new();
                    t.load_preset(UTF8_FULL_CONDENSED);
                    let mut header = vec!["step".to_string()];
                    header.extend(series.targets.iter().cloned());
                    t.set_header(header);
                    for (h, v) in steps.iter().enumerate() {
                        let mut row = vec![format!("+{}", h + 1)];
                        row.extend(v.iter().map(|x| format!("{x:.4}")));
                        t.add_row(row);
                    }
                    println!("{t}");
                }
            }
        }
        TaskSpec::Classify { .. } => {
            let Fitted::Text { labels, .. } = fitted else {
                return Err(inconsistent());
            };
            let texts = read_lines(args.input.as_ref())?;
            if texts.is_empty() {
                bail!("no text to classify: give --input FILE or lines on stdin");
            }
            let probs = inference::classify(&model, &ckpt, &texts, &device)?;
            for (text, p) in texts.iter().zip(&probs) {
                let best = ringtrain_train::evaluate::argmax(p);
                let label = labels.name(best as u32).unwrap_or("?");
                match args.output {
                    Output::Json => {
                        let scores: serde_json::Map<String, serde_json::Value> = labels
                            .names()
                            .iter()
                            .zip(p)
                            .map(|(n, &v)| (n.clone(), f64::from(v).into()))
                            .collect();
                        println!(
                            "{}",
                            serde_json::json!({"text": text, "label": label, "probabilities": scores})
                        );
                    }
                    Output::Table => println!("{label}\t{:.3}\t{text}", p[best]),
                }
            }
        }
        TaskSpec::Seq2seq { .. } => {
            let Fitted::Pairs { .. } = fitted else {
                return Err(inconsistent());
            };
            let file = args.input.as_ref();
            let texts = read_lines(file)?;
            if texts.is_empty() {
                match file {
                    Some(f) => bail!(
                        "{}: no text to translate (the file has no non-blank line)",
                        f.display()
                    ),
                    None => bail!("no text to translate: give --input FILE or lines on stdin"),
                }
            }
            let beam = args.beam.map(|b| b as usize);
            let out =
                ringtrain_train::seq2seq_task::translate(&model, &ckpt, &texts, beam, &device)?;
            for (text, t) in texts.iter().zip(&out) {
                match args.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({"source": text, "translation": t.text, "log_prob": t.log_prob})
                    ),
                    Output::Table => println!("{}", t.text),
                }
            }
        }
        TaskSpec::LanguageModel { .. } => {
            let Fitted::Corpus { .. } = fitted else {
                return Err(inconsistent());
            };
            if args.tokens == 0 {
                bail!("--tokens must be at least 1");
            }
            let texts = read_lines(args.input.as_ref())?;
            if texts.is_empty() {
                bail!("no text to continue: give --input FILE or lines on stdin");
            }
            let lm = crate::generate::LanguageModel::load(&ckpt, &device)?;
            let greedy = ringtrain_train::lm::Sampling {
                temperature: 0.0,
                top_k: None,
                seed: 0,
            };
            for text in &texts {
                let (continuation, unknown) =
                    crate::generate::continue_text(&lm, text, args.tokens, greedy, &device)?;
                match args.output {
                    Output::Json => println!(
                        "{}",
                        serde_json::json!({
                            "text": text,
                            "continuation": continuation,
                            "unknown_prompt_tokens": unknown,
                        })
                    ),
                    Output::Table => println!("{text}\t{continuation:?}"),
                }
            }
        }
    }
    Ok(())
}

fn read_lines(file: Option<&PathBuf>) -> anyhow::Result<Vec<String>> {
    let reader: Box<dyn BufRead> = match file {
        Some(f) => Box::new(std::io::BufReader::new(
            std::fs::File::open(f).with_context(|| format!("opening {}", f.display()))?,
        )),
        None => Box::new(std::io::stdin().lock()),
    };
    let mut lines = Vec::new();
    for (i, line) in reader.lines().enumerate() {
        let line = line.with_context(|| format!("reading line {}", i + 1))?;
        if !line.trim().is_empty() {
            lines.push(line);
        }
    }
    Ok(lines)
}
