//! `ringtrain export --checkpoint DIR --out FILE [--format safetensors|onnx] [--quantize int8]`:
//! writes a trained model as safetensors in PyTorch's layout (the names and orientations are
//! documented in `ringtrain_train::export`) or as an ONNX graph (`ringtrain_train::onnx`),
//! atomically (a temporary file beside `FILE`, then a rename), and prints what a user needs to
//! load it: the recurrent stack's `nn.LSTM` / `nn.GRU` / `nn.RNN` constructor, the tensor count
//! and the file's size. A forecaster's export also carries the one-step-ahead residual
//! statistics of its validation split (`ringtrain.residuals`, for `ringtrain-infer --anomaly`)
//! when the training data is readable from here.

use anyhow::Context;
use burn::prelude::Device;
use ringtrain_data::SplitName;
use ringtrain_models::InputKind;
use ringtrain_spec::TaskSpec;
use ringtrain_spec::{Activation, CellKind};
use ringtrain_train::checkpoint::{Checkpoint, resolve_for_inference};
use ringtrain_train::export::{
    Precision, RESIDUALS_KEY, ResidualStats, residual_stats, to_safetensors,
};
use ringtrain_train::onnx::{State, to_onnx};
use ringtrain_train::{TaskData, evaluate, inference};
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// File formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// safetensors with PyTorch's `nn.LSTM`/`nn.GRU`/`nn.RNN` parameter names.
    Safetensors,
    /// An ONNX graph (opset 17) of standard operators (LSTM/GRU/RNN, MatMul, Conv, ...).
    Onnx,
}

/// Weight quantizations `export` offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum Quantize {
    /// int8 weights with one f32 scale per output channel (for ringtrain-infer).
    Int8,
}

/// Arguments of `ringtrain export`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExportArgs {
    /// Checkpoint directory (best.ckpt, else latest.ckpt) or file.
    #[arg(long, value_name = "DIR")]
    checkpoint: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = ExportFormat::Safetensors)]
    format: ExportFormat,
    /// File to write (replaced if it exists).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// ONNX only: make each recurrent layer's state a graph input (`state_h{k}`, `state_c{k}`)
    /// and output (`..._out`), to stream a sequence one call at a time.
    #[arg(long)]
    onnx_state: bool,
    /// Store matrices as int8 (per output channel); `ringtrain eval --quantize int8` measures
    /// what it costs.
    #[arg(long, value_enum)]
    quantize: Option<Quantize>,
}

pub(crate) fn run(args: ExportArgs, device: Device) -> anyhow::Result<()> {
    crate::set_threads(1);
    let path = resolve_for_inference(&args.checkpoint)?;
    let ckpt = Checkpoint::load(&path)?;
    let precision = match args.quantize {
        None => Precision::F32,
        Some(Quantize::Int8) => Precision::Int8,
    };
    if args.onnx_state && args.format != ExportFormat::Onnx {
        anyhow::bail!("--onnx-state is for --format onnx");
    }
    let mut extra = HashMap::new();
    match residuals(&ckpt, &device) {
        Ok(Some(stats)) => {
            println!(
                "validation residuals ({} split, {} samples, one step ahead): mean {:?}, std {:?} \
                 (for ringtrain-infer --anomaly K)",
                stats.split, stats.samples, stats.mean, stats.std
            );
            extra.insert(RESIDUALS_KEY.to_string(), serde_json::to_string(&stats)?);
        }
        Ok(None) => {}
        Err(e) => println!(
            "no validation residuals stored (ringtrain-infer --anomaly needs them): the \
             training data could not be read here: {e:#}"
        ),
    }
    let exported = match (args.format, precision) {
        (ExportFormat::Safetensors, _) => {
            to_safetensors(&ckpt, precision, extra.clone(), &args.out, &device)?
        }
        (ExportFormat::Onnx, Precision::F32) => {
            let state = if args.onnx_state {
                State::Carried
            } else {
                State::Reset
            };
            to_onnx(&ckpt, state, extra.clone(), &args.out, &device)?
        }
        (ExportFormat::Onnx, Precision::Int8) => anyhow::bail!(
            "--quantize int8 is for the safetensors export (ringtrain-infer); the ONNX export \
             is f32"
        ),
    };
    let dir = match args.out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    tmp.write_all(&exported.bytes)
        .and_then(|()| tmp.as_file().sync_all())
        .with_context(|| format!("writing {}", tmp.path().display()))?;
    tmp.persist(&args.out)
        .with_context(|| format!("writing {}", args.out.display()))?;
    let model = &ckpt.header.spec.model;
    let ctor = match model.cell {
        CellKind::Lstm => "nn.LSTM(",
        CellKind::Gru => "nn.GRU(",
        CellKind::Rnn => match model.activation {
            Activation::Tanh => "nn.RNN(nonlinearity='tanh', ",
            Activation::Relu => "nn.RNN(nonlinearity='relu', ",
        },
    };
    println!(
        "exported {} ({} tensors, {} parameters, {} bytes) to {}",
        path.display(),
        exported.tensors,
        exported.parameters,
        exported.bytes.len(),
        args.out.display()
    );
    if precision == Precision::Int8 {
        let f32_file = to_safetensors(&ckpt, Precision::F32, extra, &args.out, &device)?.bytes;
        let (q, f) = (&exported.bytes, &f32_file);
        println!(
            "int8: {} bytes ({} of tensors), {:.2}x smaller than the f32 export's {} bytes ({} of \
             tensors: {:.2}x); for ringtrain-infer, while PyTorch and init_from read the f32 export",
            q.len(),
            tensor_bytes(q),
            f.len() as f64 / q.len().max(1) as f64,
            f.len(),
            tensor_bytes(f),
            tensor_bytes(f) as f64 / tensor_bytes(q).max(1) as f64,
        );
    }
    if args.format == ExportFormat::Safetensors {
        // What a device needs for this file, if the device runtime runs it.
        match ringtrain_infer::Network::from_safetensors(&exported.bytes) {
            Ok(net) => match ringtrain_infer::Stream::new(&net) {
                Ok(stream) => println!(
                    "ringtrain-infer: {} bytes of weights in RAM, {} bytes per stream (state and \
                     scratch)",
                    net.weight_bytes(),
                    stream.state_bytes()
                ),
                Err(e) => println!("ringtrain-infer streams unidirectional models only ({e})"),
            },
            Err(e) => println!("ringtrain-infer does not run this model: {e}"),
        }
    }
    match args.format {
        ExportFormat::Safetensors => println!(
            "recurrent stack (keys rnn.*): {ctor}input_size={}, hidden_size={}, num_layers={}, \
             bidirectional={}, batch_first=True)",
            exported.recurrent_input,
            model.hidden,
            model.layers,
            if model.bidirectional { "True" } else { "False" }
        ),
        ExportFormat::Onnx => {
            let input = match ringtrain_train::task::model_shape(&ckpt)?.0 {
                InputKind::Numeric { features } => {
                    format!("\"input\" float [batch, time, {features}]")
                }
                InputKind::Tokens { vocab } => {
                    format!("\"tokens\" int64 [batch, time] (ids below {vocab})")
                }
            };
            println!(
                "ONNX opset {}: input {input}, output \"output\"; every step of an input is read \
                 as valid (feed sequences unpadded)",
                ringtrain_train::onnx::OPSET,
            );
        }
    }
    Ok(())
}

/// Bytes of a safetensors file after its header (the tensors themselves).
fn tensor_bytes(file: &[u8]) -> usize {
    let header = file
        .get(..8)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map_or(0, u64::from_le_bytes);
    file.len()
        .saturating_sub(8)
        .saturating_sub(usize::try_from(header).unwrap_or(usize::MAX))
}

/// The one-step-ahead residuals of a forecaster on its validation split (the test split when
/// the run had none); `None` for other tasks.
fn residuals(ckpt: &Checkpoint, device: &Device) -> anyhow::Result<Option<ResidualStats>> {
    let spec = &ckpt.header.spec;
    let (TaskSpec::Forecast { .. }, ringtrain_data::Fitted::Series(normalizer)) =
        (&spec.task, &ckpt.header.fitted)
    else {
        return Ok(None);
    };
    let targets = normalizer.targets.len();
    let data =
        ringtrain_data::load_with(spec, &std::env::current_dir()?, Some(&ckpt.header.fitted))?;
    let task = TaskData::new(spec, data)?;
    let model = inference::load_model(ckpt, device)?;
    let split = if task.task().check_split(SplitName::Val).is_ok() {
        SplitName::Val
    } else {
        SplitName::Test
    };
    let report = evaluate(&model, &task, split, 256, device)?;
    Ok(residual_stats(&report, targets))
}
