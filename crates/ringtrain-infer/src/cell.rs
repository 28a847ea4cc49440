//! One direction of one recurrent layer in PyTorch's layout and its step: `W_ih [G·H, in]`,
//! `W_hh [G·H, H]`, biases `[G·H]`, gate blocks LSTM i, f, g, o and GRU r, z, n (with
//! `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`). A step writes into caller-owned buffers.

use alloc::vec::Vec;

/// Recurrent cell type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellKind {
    /// Elman RNN with tanh.
    RnnTanh,
    /// Elman RNN with relu.
    RnnRelu,
    /// LSTM.
    Lstm,
    /// GRU.
    Gru,
}

impl CellKind {
    /// Gate blocks per step (`G`).
    pub fn gates(self) -> usize {
        match self {
            CellKind::RnnTanh | CellKind::RnnRelu => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    /// Whether the cell carries a memory cell `c` beside `h`.
    pub fn has_cell_state(self) -> bool {
        match self {
            CellKind::Lstm => true,
            CellKind::RnnTanh | CellKind::RnnRelu | CellKind::Gru => false,
        }
    }
}

/// A weight matrix `[rows, cols]`, row-major, as the file stores it: `f32`, or (an int8
/// export) `i8` with one scale per row, kept as `i8` in RAM so that a step streams a quarter of
/// the bytes.
#[derive(Debug, Clone)]
pub(crate) enum Matrix {
    /// Plain values.
    F32(Vec<f32>),
    /// `value = q · scales[row]`.
    I8 {
        /// The quantized values.
        q: Vec<i8>,
        /// One scale per row.
        scales: Vec<f32>,
    },
}

impl Matrix {
    /// Number of values.
    pub(crate) fn len(&self) -> usize {
        match self {
            Matrix::F32(v) => v.len(),
            Matrix::I8 { q, .. } => q.len(),
        }
    }

    /// Bytes it holds in RAM.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Matrix::F32(v) => v.len() * 4,
            Matrix::I8 { q, scales } => q.len() + scales.len() * 4,
        }
    }
}

/// Weights of one direction.
#[derive(Debug, Clone)]
pub(crate) struct Direction {
    pub(crate) input: usize,
    pub(crate) hidden: usize,
    pub(crate) w_ih: Matrix,
    pub(crate) w_hh: Matrix,
    pub(crate) b_ih: Vec<f32>,
    pub(crate) b_hh: Vec<f32>,
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + libm::expf(-x))
}

/// Lanes of the dot product: eight independent partial sums let the compiler use SIMD
/// registers (one running sum is a dependency chain it may not reorder).
const LANES: usize = 8;

/// `row · x` with [`LANES`] partial sums (the summation order is fixed, so results do not
/// depend on the target).
fn dot(row: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (rc, rr) = row.split_at(row.len() / LANES * LANES);
    let (xc, xr) = x.split_at(rc.len());
    for (r, v) in rc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)) {
        for k in 0..LANES {
            acc[k] += r[k] * v[k];
        }
    }
    let mut tail = 0.0f32;
    for (a, v) in rr.iter().zip(xr) {
        tail += a * v;
    }
    acc.iter().sum::<f32>() + tail
}

/// `row · x` for an int8 row (the row's scale applied by the caller), with the same lanes and
/// summation order as [`dot`].
fn dot_i8(row: &[i8], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (rc, rr) = row.split_at(row.len() / LANES * LANES);
    let (xc, xr) = x.split_at(rc.len());
    for (r, v) in rc.chunks_exact(LANES).zip(xc.chunks_exact(LANES)) {
        for k in 0..LANES {
            acc[k] += f32::from(r[k]) * v[k];
        }
    }
    let mut tail = 0.0f32;
    for (a, v) in rr.iter().zip(xr) {
        tail += f32::from(*a) * v;
    }
    acc.iter().sum::<f32>() + tail
}

/// `out = W x + b` for `W: [out.len(), x.len()]` row-major.
pub(crate) fn affine(w: &Matrix, b: &[f32], x: &[f32], out: &mut [f32]) {
    let n = x.len();
    if n == 0 {
        out.copy_from_slice(&b[..out.len()]);
        return;
    }
    match w {
        Matrix::F32(w) => {
            for ((o, row), bias) in out.iter_mut().zip(w.chunks_exact(n)).zip(b) {
                *o = bias + dot(row, x);
            }
        }
        Matrix::I8 { q, scales } => {
            for (((o, row), bias), scale) in
                out.iter_mut().zip(q.chunks_exact(n)).zip(b).zip(scales)
            {
                *o = bias + scale * dot_i8(row, x);
            }
        }
    }
}

impl Direction {
    /// One step: reads `x`, updates `h` (and `c` for an LSTM) in place; `gi`, `gh` are scratch
    /// of `G·H` values.
    pub(crate) fn step(
        &self,
        cell: CellKind,
        x: &[f32],
        h: &mut [f32],
        c: &mut [f32],
        gi: &mut [f32],
        gh: &mut [f32],
    ) {
        let n = self.hidden;
        affine(&self.w_ih, &self.b_ih, x, gi);
        affine(&self.w_hh, &self.b_hh, h, gh);
        match cell {
            CellKind::RnnTanh => {
                for k in 0..n {
                    h[k] = libm::tanhf(gi[k] + gh[k]);
                }
            }
            CellKind::RnnRelu => {
                for k in 0..n {
                    h[k] = (gi[k] + gh[k]).max(0.0);
                }
            }
            CellKind::Lstm => {
                for k in 0..n {
                    let i = sigmoid(gi[k] + gh[k]);
                    let f = sigmoid(gi[n + k] + gh[n + k]);
                    let g = libm::tanhf(gi[2 * n + k] + gh[2 * n + k]);
                    let o = sigmoid(gi[3 * n + k] + gh[3 * n + k]);
                    c[k] = f * c[k] + i * g;
                    h[k] = o * libm::tanhf(c[k]);
                }
            }
            CellKind::Gru => {
                for k in 0..n {
                    let r = sigmoid(gi[k] + gh[k]);
                    let z = sigmoid(gi[n + k] + gh[n + k]);
                    let cand = libm::tanhf(gi[2 * n + k] + r * gh[2 * n + k]);
                    h[k] = (1.0 - z) * cand + z * h[k];
                }
            }
        }
    }
}
