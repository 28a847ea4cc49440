//! `ringtrain export --checkpoint DIR --out FILE [--quantize int8]`: writes a trained model as
//! safetensors in PyTorch's layout (the names and orientations are documented in
//! `ringtrain_train::export`), atomically (a temporary file beside `FILE`, then a rename), and
//! prints what a PyTorch user needs to load it: the recurrent stack's `nn.LSTM` / `nn.GRU` /
//! `nn.RNN` constructor, the tensor count and the file's size.

use anyhow::Context;
use burn::prelude::Device;
use ringtrain_spec::{Activation, CellKind};
use ringtrain_train::checkpoint::{Checkpoint, resolve_for_inference};
use ringtrain_train::export::{Precision, to_safetensors};
use std::io::Write;
use std::path::PathBuf;

/// File formats `export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum ExportFormat {
    /// safetensors with PyTorch's `nn.LSTM`/`nn.GRU`/`nn.RNN` parameter names.
    Safetensors,
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
    let exported = match args.format {
        ExportFormat::Safetensors => to_safetensors(&ckpt, precision, &args.out, &device)?,
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
        let f32_bytes = to_safetensors(&ckpt, Precision::F32, &args.out, &device)?
            .bytes
            .len();
        println!(
            "int8: {} bytes, {:.2}x smaller than the f32 export's {f32_bytes} bytes (for \
             ringtrain-infer; PyTorch and init_from read the f32 export)",
            exported.bytes.len(),
            f32_bytes as f64 / exported.bytes.len().max(1) as f64
        );
    }
    println!(
        "recurrent stack (keys rnn.*): {ctor}input_size={}, hidden_size={}, num_layers={}, \
         bidirectional={}, batch_first=True)",
        exported.recurrent_input,
        model.hidden,
        model.layers,
        if model.bidirectional { "True" } else { "False" }
    );
    Ok(())
}
