//! The per-call switches of a forward pass ([`ForwardCtx`]), below the model and every layer
//! kind (the seq2seq decoder included) that reads them.

/// Per-call switches of the forward pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ForwardCtx {
    /// Training mode: dropout active.
    pub train: bool,
    /// Dropout masks come from ChaCha8 seeded by `(dropout_seed, layer index)`: stateless, so a
    /// resumed run and a pipelined run draw the same masks. Vary it per step and micro-batch.
    /// A seq2seq decoder draws its teacher-forcing choices from the same seed (own stream).
    pub dropout_seed: u64,
}

impl ForwardCtx {
    /// Inference: no dropout.
    pub fn eval() -> ForwardCtx {
        ForwardCtx {
            train: false,
            dropout_seed: 0,
        }
    }
}
