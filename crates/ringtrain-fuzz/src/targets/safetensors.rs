//! Safetensors target: the bytes as a file given to `init_from` (`TorchFile::open`, then
//! matched against a small LSTM forecaster's layout) and as an export loaded by the device
//! runtime (`ringtrain_infer::Network::from_safetensors`, then one streamed step and one
//! whole-sequence run when it loads).

use crate::{Rng, Target, class_of};
use ringtrain_spec::{Activation, CellKind, ModelSpec};
use ringtrain_train::export::TorchFile;
use std::collections::HashMap;
use std::path::PathBuf;

/// Fuzzes both safetensors readers.
#[derive(Debug)]
pub struct SafetensorsTarget {
    _dir: tempfile::TempDir,
    path: PathBuf,
    model: ringtrain_models::Model,
    seed: Vec<u8>,
}

impl SafetensorsTarget {
    /// Builds the model the inputs are matched against and its export (the seed).
    pub fn new() -> SafetensorsTarget {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("m.safetensors");
        // A 2-layer LSTM 4 behind a projection to 3: every kind of tensor the readers match.
        let spec = ModelSpec {
            cell: CellKind::Lstm,
            activation: Activation::Tanh,
            layers: 2,
            hidden: 4,
            bidirectional: false,
            dropout: 0.0,
            embedding_dim: 1,
            projection: Some(3),
            conv: Vec::new(),
            attention: None,
        };
        let model = ringtrain_models::Model::new(
            &spec,
            ringtrain_models::InputKind::Numeric { features: 1 },
            ringtrain_models::HeadKind::Regression { outputs: 1 },
            1,
            &burn::prelude::Device::flex(),
        )
        .expect("seed model");
        let params = ringtrain_models::flat::flatten_params(&model);
        let metadata = HashMap::from([(
            "ringtrain.spec".to_string(),
            r#"{"model":{"activation":"tanh"},"task":{"kind":"forecast"}}"#.to_string(),
        )]);
        let seed = ringtrain_train::export::serialize(&model, &params, metadata, &path)
            .expect("seed export")
            .bytes;
        SafetensorsTarget {
            _dir: dir,
            path,
            model,
            seed,
        }
    }
}

impl Default for SafetensorsTarget {
    fn default() -> Self {
        SafetensorsTarget::new()
    }
}

impl Target for SafetensorsTarget {
    fn name(&self) -> &'static str {
        "safetensors"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        vec![self.seed.clone()]
    }

    fn dictionary(&self) -> &'static [&'static [u8]] {
        &[
            b"\"dtype\"",
            b"\"F32\"",
            b"\"F16\"",
            b"\"BF16\"",
            b"\"F64\"",
            b"\"I64\"",
            b"\"shape\"",
            b"\"data_offsets\"",
            b"\"__metadata__\"",
            b"rnn.weight_ih_l0",
            b"_reverse",
            b"[0,0]",
            b"[4294967295,1]",
            b"18446744073709551615",
        ]
    }

    fn run(&mut self, input: &[u8]) -> String {
        let mut class = match ringtrain_infer::Network::from_safetensors(input) {
            Ok(net) => {
                let x = vec![0.5f32; net.features()];
                let step = ringtrain_infer::Stream::new(&net)
                    .and_then(|mut s| s.step(&x).map(<[f32]>::len));
                let run = net.run(&x).map(|y| y.len());
                format!("ok infer {} {}", step.is_ok(), run.is_ok())
            }
            Err(e) => format!("infer: {}", class_of(&e.to_string())),
        };
        if let Err(e) = std::fs::write(&self.path, input) {
            return format!("write failed: {e}");
        }
        let file = self.path.to_string_lossy().to_string();
        let read = TorchFile::open(&self.path, 1 << 20).and_then(|f| f.layers_for(&self.model));
        class.push_str(" / ");
        match read {
            Ok((layers, params)) => class.push_str(&format!(
                "ok init_from {} {}",
                layers.len(),
                params.len().min(1)
            )),
            Err(e) => class.push_str(&class_of(&e.to_string().replace(&file, "FILE"))),
        }
        class
    }

    fn mutate(&mut self, input: &[u8], rng: &mut Rng) -> Option<Vec<u8>> {
        // Rewrite the header length (the first 8 bytes) to match, exceed or undershoot it.
        let mut out = input.to_vec();
        if out.len() >= 8 {
            let rest = (out.len() - 8) as u64;
            let n = match rng.below(4) {
                0 => rest,
                1 => rest.wrapping_add(1),
                2 => rest.saturating_sub(1 + rng.below(16) as u64),
                _ => u64::MAX - rng.below(2) as u64,
            };
            out[..8].copy_from_slice(&n.to_le_bytes());
        }
        Some(out)
    }
}
