//! Decoding with a trained seq2seq model, on [`Model`]: the encoder entry point, greedy decoding
//! and beam search. The decoder's own steps live in `seq2seq`; these entry points run the
//! encoder layers first, so they sit above both the model and the decoder.

use burn::tensor::{Int, Tensor};

use crate::error::ModelError;
use crate::model::{Boundary, ForwardCtx, Layer, Model};
use crate::seq2seq::{Decoder, Hypothesis};

impl Model {
    /// The decoder of a seq2seq model (its last layer), if this is one.
    pub fn decoder(&self) -> Option<&Decoder> {
        match self.layers().last() {
            Some(Layer::Decoder(d)) => Some(d),
            _ => None,
        }
    }

    /// Runs the encoder (every layer before the decoder) on source ids `[B, S]` with mask
    /// `[B, S]`, giving `[B, S, W]`.
    ///
    /// # Errors
    /// [`ModelError::Boundary`] when the model has no decoder or the ids do not fit.
    pub fn encode(&self, source: Tensor<2, Int>, mask: Tensor<2>) -> Result<Tensor<3>, ModelError> {
        let n = self.num_layers();
        let decoder = self.decoder().ok_or_else(|| ModelError::Boundary {
            layer: n.saturating_sub(1),
            name: "decoder".into(),
            expected: crate::BoundaryShape::Tokens,
            got: "a model without a decoder".into(),
        })?;
        match self.forward_range(
            0..n - 1,
            Boundary::Tokens { ids: source, mask },
            &ForwardCtx::eval(),
        )? {
            Boundary::Seq { x, .. } => Ok(x),
            other => Err(ModelError::Boundary {
                layer: n - 1,
                name: "decoder".into(),
                expected: crate::BoundaryShape::Seq {
                    features: decoder.input_size(),
                },
                got: format!("{other:?}"),
            }),
        }
    }

    /// Greedy decoding: per source (ids `[B, S]`, mask `[B, S]`) the most likely token at every
    /// step until `<eos>`, at most `max_len` tokens. Run it on a plain (inference) device.
    ///
    /// # Errors
    /// As [`Model::encode`].
    pub fn greedy_decode(
        &self,
        source: Tensor<2, Int>,
        mask: Tensor<2>,
        max_len: usize,
    ) -> Result<Vec<Hypothesis>, ModelError> {
        let enc = self.encode(source, mask.clone())?;
        let decoder = self.decoder().ok_or(ModelError::Range {
            start: 0,
            end: 0,
            layers: self.num_layers(),
        })?;
        Ok(decoder.greedy(enc, &mask, max_len))
    }

    /// Beam search with `width` hypotheses per source, ranked by `log p / len^alpha`, at most
    /// `max_len` tokens each. A hypothesis ends when it emits `<eos>`; the search for a source
    /// stops when no live hypothesis can still beat the best ended one (a log-probability only
    /// falls as a hypothesis grows, and its length is at most `max_len + 1`), or at the length
    /// limit. Pruning to `width` prefixes can lose the greedy path: on a half-trained model in
    /// this crate's tests, width 4 alone scored below greedy decoding on 67 of 200 sources (and
    /// above it on 72). So the greedy decoding of the same source competes with the beam's
    /// results and the answer never scores below it under the same ranking; `width = 1` is
    /// greedy decoding.
    ///
    /// # Errors
    /// As [`Model::encode`].
    pub fn beam_decode(
        &self,
        source: Tensor<2, Int>,
        mask: Tensor<2>,
        width: usize,
        alpha: f64,
        max_len: usize,
    ) -> Result<Vec<Hypothesis>, ModelError> {
        let enc = self.encode(source, mask.clone())?;
        let decoder = self.decoder().ok_or(ModelError::Range {
            start: 0,
            end: 0,
            layers: self.num_layers(),
        })?;
        let greedy = decoder.greedy(enc.clone(), &mask, max_len);
        if width <= 1 {
            return Ok(greedy);
        }
        Ok(decoder.beam(enc, &mask, greedy, width, alpha, max_len))
    }
}
