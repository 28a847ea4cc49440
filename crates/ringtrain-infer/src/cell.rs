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
/// depend on the target). Always inlined, so that [`affine`]'s AVX2 copy vectorises it with
/// 256-bit registers.
#[inline(always)]
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
#[inline(always)]
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

/// `out = W x + b` for `W: [out.len(), x.len()]` row-major. With the `std` feature on x86-64
/// it runs a copy compiled for AVX2 when the CPU has it (checked at run time; the baseline
/// x86-64 build only has SSE2). Rust never contracts a multiply and an add into an FMA, so both
/// copies round every operation the same way and give the same bits.
pub(crate) fn affine(w: &Matrix, b: &[f32], x: &[f32], out: &mut [f32]) {
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    if std::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        unsafe { affine_avx2(w, b, x, out) };
        return;
    }
    affine_portable(w, b, x, out);
}

/// [`affine_portable`] compiled with AVX2 enabled.
#[cfg(all(feature = "std", target_arch = "x86_64"))]
#[target_feature(enable = "avx2")]
fn affine_avx2(w: &Matrix, b: &[f32], x: &[f32], out: &mut [f32]) {
    affine_portable(w, b, x, out);
}

#[inline(always)]
fn affine_portable(w: &Matrix, b: &[f32], x: &[f32], out: &mut [f32]) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// The AVX2 copy of `affine` gives the portable copy's bits (no FMA contraction, same
    /// summation order), for f32 and int8 matrices and widths with and without a tail.
    #[cfg(all(feature = "std", target_arch = "x86_64"))]
    #[test]
    fn the_avx2_copy_gives_the_portable_bits() {
        if !std::is_x86_feature_detected!("avx2") {
            return;
        }
        for cols in [1, 7, 8, 29, 128] {
            let rows = 13;
            let w: Vec<f32> = (0..rows * cols)
                .map(|i| libm::sinf(i as f32 * 0.37) * 0.5)
                .collect();
            let q: Vec<i8> = (0..rows * cols).map(|i| ((i * 37) % 255) as i8).collect();
            let scales: Vec<f32> = (0..rows).map(|r| 0.01 + r as f32 * 1e-3).collect();
            let b: Vec<f32> = (0..rows).map(|r| r as f32 * 0.1).collect();
            let x: Vec<f32> = (0..cols).map(|i| libm::cosf(i as f32 * 0.11)).collect();
            for m in [Matrix::F32(w), Matrix::I8 { q, scales }] {
                let (mut a, mut p) = (vec![0.0f32; rows], vec![0.0f32; rows]);
                // SAFETY: AVX2 is available, checked above.
                unsafe { affine_avx2(&m, &b, &x, &mut a) };
                affine_portable(&m, &b, &x, &mut p);
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&a), bits(&p), "cols {cols}");
            }
        }
    }
}
