//! Step-by-step inference: one time step in, the forecast out, the recurrent state carried in
//! buffers allocated once by [`Stream::new`], so [`Stream::step`] never allocates.

use crate::error::InferError;
use crate::network::Network;
use alloc::vec;
use alloc::vec::Vec;

/// One stream over a unidirectional [`Network`]: after `t` steps, [`Stream::step`] returns
/// what [`Network::run`] returns for those `t` steps.
#[derive(Debug)]
pub struct Stream<'a> {
    net: &'a Network,
    /// `h` of every layer, `[L·H]`.
    h: Vec<f32>,
    /// `c` of every layer (LSTM), `[L·H]`.
    c: Vec<f32>,
    gi: Vec<f32>,
    gh: Vec<f32>,
    projected: Vec<f32>,
    out: Vec<f32>,
}

impl<'a> Stream<'a> {
    /// A stream with zero state.
    ///
    /// # Errors
    /// [`InferError::Unsupported`] for a bidirectional network (its backward direction needs
    /// the whole sequence: use [`Network::run`]).
    pub fn new(net: &'a Network) -> Result<Stream<'a>, InferError> {
        if net.bidirectional() {
            return Err(InferError::Unsupported(
                "a bidirectional layer in a stream (use Network::run on the whole sequence)".into(),
            ));
        }
        let lh = net.num_layers() * net.hidden();
        let gates = net.cell().gates() * net.hidden();
        Ok(Stream {
            net,
            h: vec![0.0; lh],
            c: vec![0.0; if net.cell().has_cell_state() { lh } else { 0 }],
            gi: vec![0.0; gates],
            gh: vec![0.0; gates],
            projected: vec![0.0; net.recurrent_input()],
            out: vec![0.0; net.outputs()],
        })
    }

    /// Bytes this stream holds (state, scratch and output), beside the shared weights.
    pub fn state_bytes(&self) -> usize {
        4 * (self.h.len()
            + self.c.len()
            + self.gi.len()
            + self.gh.len()
            + self.projected.len()
            + self.out.len())
    }

    /// Zeroes the recurrent state (a new sequence starts).
    pub fn reset(&mut self) {
        self.h.fill(0.0);
        self.c.fill(0.0);
    }

    /// Feeds one step `x` (`features` values) and returns the forecast after it.
    ///
    /// # Errors
    /// [`InferError::Input`] when `x` has the wrong length.
    pub fn step(&mut self, x: &[f32]) -> Result<&[f32], InferError> {
        let net = self.net;
        if x.len() != net.features() {
            return Err(InferError::Input {
                what: "step",
                expected: net.features(),
                got: x.len(),
            });
        }
        net.project(x, &mut self.projected);
        let h = net.hidden();
        let has_c = net.cell().has_cell_state();
        for (l, directions) in net.layers.iter().enumerate() {
            let (before, from_here) = self.h.split_at_mut(l * h);
            let state = &mut from_here[..h];
            let input: &[f32] = match l {
                0 => &self.projected,
                _ => &before[(l - 1) * h..],
            };
            let c: &mut [f32] = if has_c {
                &mut self.c[l * h..(l + 1) * h]
            } else {
                &mut []
            };
            directions[0].step(net.cell, input, state, c, &mut self.gi, &mut self.gh);
        }
        let top = &self.h[(net.num_layers() - 1) * h..];
        crate::cell::affine(&net.head_w, &net.head_b, top, &mut self.out);
        Ok(&self.out)
    }
}
