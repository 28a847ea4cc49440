//! Slices of an optimizer state, for pipeline stages that each own a contiguous range of the
//! flat parameters ([`crate::pipeline`]): every buffer of [`OptimizerState`] is per element, so
//! the state of parameters `a..b` is the buffers' `a..b` ranges, and the only scalar, the step
//! count, is the same in every slice (each stage takes one optimizer step per training step).
//! Slicing and concatenating are exact inverses, which is what lets a stage resume from a full
//! checkpoint and a full checkpoint be assembled from the stages' slices.

use super::{OptimError, Optimizer, OptimizerState};
use std::ops::Range;

impl OptimizerState {
    /// The state of parameters `range` alone: each non-empty buffer cut to `range`, the same
    /// kind and step count, `n_params = range.len()`.
    ///
    /// # Errors
    /// [`OptimError::SliceOutOfRange`] when `range` is not inside `0..n_params`;
    /// [`OptimError::BufferLength`] when a non-empty buffer is not `n_params` long (a state
    /// read from a damaged file).
    pub fn slice(&self, range: Range<usize>) -> Result<OptimizerState, OptimError> {
        if range.start > range.end || range.end > self.n_params {
            return Err(OptimError::SliceOutOfRange {
                start: range.start,
                end: range.end,
                n_params: self.n_params,
            });
        }
        for (buffer, values) in [
            ("momentum_buffer", &self.momentum_buffer),
            ("exp_avg", &self.exp_avg),
            ("exp_avg_sq", &self.exp_avg_sq),
        ] {
            if !values.is_empty() && values.len() != self.n_params {
                return Err(OptimError::BufferLength {
                    buffer,
                    expected: self.n_params,
                    got: values.len(),
                });
            }
        }
        // An unused buffer is empty, and stays empty in every slice.
        let cut = |buffer: &[f32]| {
            if buffer.is_empty() {
                Vec::new()
            } else {
                buffer[range.clone()].to_vec()
            }
        };
        Ok(OptimizerState {
            kind: self.kind,
            step: self.step,
            n_params: range.len(),
            momentum_buffer: cut(&self.momentum_buffer),
            exp_avg: cut(&self.exp_avg),
            exp_avg_sq: cut(&self.exp_avg_sq),
        })
    }

    /// The state of the concatenated parameters of `parts` (in order): the inverse of cutting a
    /// state into consecutive [`OptimizerState::slice`]s.
    ///
    /// # Errors
    /// [`OptimError::SlicesDisagree`] when `parts` is empty, or a part has another kind or step
    /// count than the first, or uses a buffer the first does not (or the reverse), or a buffer
    /// whose length is not its `n_params` — naming the part.
    pub fn concat(parts: &[OptimizerState]) -> Result<OptimizerState, OptimError> {
        let disagree = |reason: String| OptimError::SlicesDisagree { reason };
        let Some(first) = parts.first() else {
            return Err(disagree("no slices".into()));
        };
        let used = |s: &OptimizerState| {
            [
                !s.momentum_buffer.is_empty(),
                !s.exp_avg.is_empty(),
                !s.exp_avg_sq.is_empty(),
            ]
        };
        let n_params: usize = parts.iter().map(|p| p.n_params).sum();
        let mut out = OptimizerState {
            kind: first.kind,
            step: first.step,
            n_params,
            momentum_buffer: Vec::new(),
            exp_avg: Vec::new(),
            exp_avg_sq: Vec::new(),
        };
        for (i, p) in parts.iter().enumerate() {
            if p.kind != first.kind || p.step != first.step {
                return Err(disagree(format!(
                    "slice {i} is {} at step {}, slice 0 {} at step {}",
                    p.kind, p.step, first.kind, first.step
                )));
            }
            // An empty slice (no parameters) says nothing about which buffers are in use.
            if p.n_params > 0 && first.n_params > 0 && used(p) != used(first) {
                return Err(disagree(format!(
                    "slice {i} uses the buffers {:?} (momentum, exp_avg, exp_avg_sq), slice 0 {:?}",
                    used(p),
                    used(first)
                )));
            }
            for (name, buffer, into) in [
                (
                    "momentum_buffer",
                    &p.momentum_buffer,
                    &mut out.momentum_buffer,
                ),
                ("exp_avg", &p.exp_avg, &mut out.exp_avg),
                ("exp_avg_sq", &p.exp_avg_sq, &mut out.exp_avg_sq),
            ] {
                if !buffer.is_empty() && buffer.len() != p.n_params {
                    return Err(disagree(format!(
                        "slice {i}: {name} has {} elements for {} parameters",
                        buffer.len(),
                        p.n_params
                    )));
                }
                into.extend_from_slice(buffer);
            }
        }
        Ok(out)
    }
}

impl Optimizer {
    /// The same optimizer over parameters `range` only: the spec and its state's
    /// [`OptimizerState::slice`]. Stepping the slices of a buffer one by one gives exactly the
    /// update of stepping the whole buffer (every update is element-wise).
    ///
    /// # Errors
    /// [`OptimError::SliceOutOfRange`] when `range` is not inside `0..n_params`.
    pub fn slice(&self, range: Range<usize>) -> Result<Optimizer, OptimError> {
        Optimizer::from_state(&self.spec, range.len(), self.state.slice(range)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringtrain_spec::types::OptimizerSpec;

    fn adam() -> OptimizerSpec {
        OptimizerSpec::Adam {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
        }
    }

    fn sgd_momentum() -> OptimizerSpec {
        OptimizerSpec::Sgd {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.0,
        }
    }

    fn grads(n: usize, step: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 7 + step * 13) % 11) as f32 / 5.0 - 1.0)
            .collect()
    }

    /// Three slices stepped on their own for a few steps end bit-identical to the whole buffer
    /// stepped at once, and their concatenated state is the whole state (step count included).
    #[test]
    fn stepping_slices_equals_stepping_the_whole() {
        for spec in [adam(), sgd_momentum()] {
            let n = 23;
            let cuts = [0..5, 5..17, 17..23];
            let mut whole = Optimizer::new(&spec, n);
            let mut params: Vec<f32> = (0..n).map(|i| i as f32 / 10.0).collect();
            let mut parts: Vec<Optimizer> = cuts
                .iter()
                .map(|r| whole.slice(r.clone()).unwrap())
                .collect();
            let mut part_params: Vec<Vec<f32>> =
                cuts.iter().map(|r| params[r.clone()].to_vec()).collect();
            for step in 0..4 {
                let g = grads(n, step);
                whole.step(&mut params, &g, 0.05).unwrap();
                for ((opt, p), r) in parts.iter_mut().zip(&mut part_params).zip(&cuts) {
                    opt.step(p, &g[r.clone()], 0.05).unwrap();
                }
            }
            assert_eq!(part_params.concat(), params, "{spec:?}");
            let states: Vec<OptimizerState> =
                parts.into_iter().map(Optimizer::into_state).collect();
            assert_eq!(&OptimizerState::concat(&states).unwrap(), whole.state());
            assert_eq!(whole.state().step, 4);
        }
    }

    #[test]
    fn bad_slices_and_concatenations_are_refused() {
        let state = Optimizer::new(&adam(), 10).into_state();
        assert!(matches!(
            state.slice(4..11),
            Err(OptimError::SliceOutOfRange { end: 11, .. })
        ));
        let mut short = state.clone();
        short.exp_avg_sq.truncate(7);
        assert!(matches!(
            short.slice(0..4),
            Err(OptimError::BufferLength {
                buffer: "exp_avg_sq",
                got: 7,
                ..
            })
        ));
        let a = state.slice(0..4).unwrap();
        let mut b = state.slice(4..10).unwrap();
        b.step = 3;
        let e = OptimizerState::concat(&[a.clone(), b]).unwrap_err();
        assert!(e.to_string().contains("slice 1 is adam at step 3"), "{e}");
        let mut c = state.slice(4..10).unwrap();
        c.exp_avg.pop();
        let e = OptimizerState::concat(&[a.clone(), c]).unwrap_err();
        assert!(e.to_string().contains("exp_avg has 5 elements"), "{e}");
        let sgd = Optimizer::new(&sgd_momentum(), 6).into_state();
        assert!(OptimizerState::concat(&[a, sgd]).is_err());
        assert!(OptimizerState::concat(&[]).is_err());
    }
}
