//! Building blocks of the sequence kernels: vectorisable `exp`/`sigmoid`/`tanh`, a bounds-checked
//! wrapper around `gemm::gemm`, and run-time selection of the widest SIMD level.
//!
//! libm's `expf`/`tanhf` are scalar calls that stop the compiler from vectorising the gate
//! loops, so the non-linearities here are branch-free polynomials (Cephes' `expf`, < 2e-7
//! relative error) the compiler turns into SIMD code. The kernels' element loops are compiled
//! three times — AVX-512, AVX2+FMA and baseline — and [`simd`] picks one at run time, the way
//! burn's `x86-v4` kernels do, so one binary runs on any x86-64 CPU.

use std::sync::OnceLock;

/// `e^x`, relative error below 2e-7 for `x` in `[-87, 88]`; 0 below, `e^88` above.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two so that n·ln2 is subtracted without rounding error (Cephes).
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    // Round-to-nearest by the 1.5·2^23 trick: vectorises on every SIMD level (floor/round do
    // not on baseline x86-64), and the integer part is read straight from the bits.
    const MAGIC: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    let r = x - n * C1 - n * C2;
    let p = 1.987_569_1e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // n is an integer in [-126, 127] stored in t's low mantissa bits.
    let n_bits = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    y * f32::from_bits(((n_bits + 127) as u32) << 23)
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh(x)`: an odd Taylor polynomial below |x| = 0.25 (where `1 - 2/(e^2x + 1)` would lose
/// relative precision), that formula above; both branches are computed and one selected, so the
/// loop stays branch-free.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    let a = x.abs();
    let big = 1.0 - 2.0 / (exp(2.0 * a) + 1.0);
    let x2 = a * a;
    // tanh x = x - x^3/3 + 2x^5/15 - 17x^7/315 + 62x^9/2835 - 1382x^11/155925 + O(x^13)
    let p = -1382.0 / 155_925.0_f32;
    let p = p * x2 + 62.0 / 2835.0;
    let p = p * x2 - 17.0 / 315.0;
    let p = p * x2 + 2.0 / 15.0;
    let p = p * x2 - 1.0 / 3.0;
    let small = a + a * x2 * p;
    let v = if a < 0.25 { small } else { big };
    v.copysign(x)
}

/// The SIMD level the element loops run at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Avx512,
    Avx2,
    Baseline,
}

fn level() -> Level {
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Level::Avx2;
            }
        }
        Level::Baseline
    })
}

/// Runs `f` compiled for the widest SIMD level this CPU has. `f` must be `#[inline(always)]`
/// code (a closure calling such functions) for the level to reach its loops.
#[inline(always)]
pub(crate) fn simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
        fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match level() {
            // SAFETY: `level()` detected these features on the running CPU.
            Level::Avx512 => return unsafe { avx512(f) },
            // SAFETY: as above.
            Level::Avx2 => return unsafe { avx2(f) },
            Level::Baseline => {}
        }
    }
    f()
}

/// Lanes per chunk of [`lanes`]: one AVX-512 vector.
const LANES: usize = 16;

/// Applies `f` element-wise over `h` elements: `f(ins[·][j], outs[·][j])` gives the new
/// `outs[·][j]`. Works through stack copies of 16-element chunks, which never alias, so the
/// compiler vectorises `f` without the run-time alias checks that make it give up on loops
/// over many slices; the tail runs the same code on one element.
///
/// # Panics
/// If a slice is shorter than `h`.
#[inline(always)]
pub(crate) fn lanes<const NI: usize, const NO: usize>(
    h: usize,
    ins: [&[f32]; NI],
    mut outs: [&mut [f32]; NO],
    f: impl Fn([f32; NI], [f32; NO]) -> [f32; NO],
) {
    let ins = ins.map(|s| &s[..h]);
    for o in outs.iter_mut() {
        assert!(o.len() >= h, "lanes: output shorter than {h}");
    }
    let full = h / LANES * LANES;
    let mut j = 0;
    while j < full {
        let mut a = [[0.0f32; LANES]; NI];
        let mut b = [[0.0f32; LANES]; NO];
        for k in 0..NI {
            a[k].copy_from_slice(&ins[k][j..j + LANES]);
        }
        for k in 0..NO {
            b[k].copy_from_slice(&outs[k][j..j + LANES]);
        }
        for l in 0..LANES {
            let r = f(
                std::array::from_fn(|k| a[k][l]),
                std::array::from_fn(|k| b[k][l]),
            );
            for k in 0..NO {
                b[k][l] = r[k];
            }
        }
        for k in 0..NO {
            outs[k][j..j + LANES].copy_from_slice(&b[k]);
        }
        j += LANES;
    }
    for j in full..h {
        let r = f(
            std::array::from_fn(|k| ins[k][j]),
            std::array::from_fn(|k| outs[k][j]),
        );
        for k in 0..NO {
            outs[k][j] = r[k];
        }
    }
}

/// A row-major-or-strided matrix view into a slice: element `(i, j)` is
/// `data[offset + i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    pub data: &'a [f32],
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> Mat<'a> {
    /// The contiguous row-major `[rows, cols]` matrix starting at `offset`.
    pub fn rows(data: &'a [f32], offset: usize, rows: usize, cols: usize) -> Mat<'a> {
        Mat {
            data,
            offset,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose of this view (free: strides swap).
    pub fn t(self) -> Mat<'a> {
        Mat {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    fn fits(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || self.offset + (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst[offset.., row stride dst_rs] (+)= lhs · rhs` with `gemm` (single-threaded: one worker
/// per core is the deployment model). With `accumulate` the product is added to `dst`.
///
/// # Panics
/// If the shapes disagree or a view reaches past its slice (a kernel bug, never user input).
pub(crate) fn matmul(
    dst: &mut [f32],
    offset: usize,
    dst_rs: usize,
    lhs: Mat<'_>,
    rhs: Mat<'_>,
    accumulate: bool,
) {
    let (m, k, n) = (lhs.rows, lhs.cols, rhs.cols);
    assert_eq!(k, rhs.rows, "matmul inner dimensions");
    assert!(lhs.fits() && rhs.fits(), "matmul operand out of bounds");
    assert!(
        m == 0 || n == 0 || offset + (m - 1) * dst_rs + n <= dst.len(),
        "matmul destination out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[offset + i * dst_rs..][..n].fill(0.0);
            }
        }
        return;
    }
    // SAFETY: every index gemm touches was bounds-checked above; dst does not alias the
    // operands (it is a distinct &mut slice).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr().add(offset),
            1,
            dst_rs as isize,
            accumulate,
            lhs.data.as_ptr().add(lhs.offset),
            lhs.cs as isize,
            lhs.rs as isize,
            rhs.data.as_ptr().add(rhs.offset),
            rhs.cs as isize,
            rhs.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid() -> impl Iterator<Item = f32> {
        (-400_000..=400_000).map(|i| i as f32 * 5e-5)
    }

    #[test]
    fn exp_is_accurate() {
        let worst = grid()
            .map(|x| {
                let e = (x as f64).exp();
                ((exp(x) as f64 - e) / e).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 3e-7, "exp relative error {worst:e}");
        assert_eq!(exp(-200.0), exp(-87.0));
        assert!(exp(-87.0) < 2e-38 && exp(200.0).is_finite());
    }

    #[test]
    fn sigmoid_and_tanh_are_accurate() {
        let (mut ws, mut wt) = (0.0f64, 0.0f64);
        for x in grid().chain([1e-8, -1e-8, 0.0, 1e-30, 0.2499, 0.25, 30.0, -30.0, 100.0]) {
            let s = 1.0 / (1.0 + (-(x as f64)).exp());
            ws = ws.max(((sigmoid(x) as f64 - s) / s).abs());
            let t = (x as f64).tanh();
            let err = (tanh(x) as f64 - t).abs() / t.abs().max(1e-30);
            wt = wt.max(if t == 0.0 { tanh(x).abs() as f64 } else { err });
        }
        assert!(ws < 1e-6, "sigmoid relative error {ws:e}");
        assert!(wt < 1e-6, "tanh relative error {wt:e}");
        assert_eq!(tanh(0.0), 0.0);
        assert_eq!(tanh(100.0), 1.0);
        assert_eq!(tanh(-100.0), -1.0);
    }

    #[test]
    fn matmul_matches_naive_with_transposes() {
        let a: Vec<f32> = (0..15).map(|i| i as f32 * 0.5 - 3.0).collect(); // [3, 5]
        let b: Vec<f32> = (0..20).map(|i| 1.0 - i as f32 * 0.25).collect(); // [5, 4]
        let mut c = vec![1.0; 12];
        matmul(
            &mut c,
            0,
            4,
            Mat::rows(&a, 0, 3, 5),
            Mat::rows(&b, 0, 5, 4),
            true,
        );
        for i in 0..3 {
            for j in 0..4 {
                let want: f32 = 1.0 + (0..5).map(|k| a[i * 5 + k] * b[k * 4 + j]).sum::<f32>();
                assert!((c[i * 4 + j] - want).abs() < 1e-4);
            }
        }
        // (Aᵀ)ᵀ·B through two transposed views: Aᵀ is [5, 3], viewing it transposed gives A.
        let at: Vec<f32> = (0..15).map(|i| a[(i % 3) * 5 + i / 3]).collect();
        let mut d = vec![0.0; 12];
        matmul(
            &mut d,
            0,
            4,
            Mat::rows(&at, 0, 5, 3).t(),
            Mat::rows(&b, 0, 5, 4),
            false,
        );
        for (x, y) in c.iter().zip(&d) {
            assert!((x - 1.0 - y).abs() < 1e-4);
        }
    }
}
