//! Raw-buffer forward and backward passes of one recurrent layer-direction over a whole
//! sequence, time-major (`x: [T·B, in]`, row `t·B + b`).
//!
//! Forward: the input projection of all timesteps is one GEMM (`[T·B, in] · [in, G·H]`, biases
//! pre-filled), then per step one recurrent GEMM (`[B, H] · [H, G·H]`) accumulated into that
//! step's rows and one fused, vectorised pass of gate math. Saved for the backward pass: the
//! post-activation gates, the hidden (and LSTM cell) state before and after every step, and
//! `tanh(c_t)` (LSTM) or `h·U_n + b_hn` (GRU).
//!
//! Backward: BPTT by hand, per step one fused pass producing the pre-activation gradients
//! `dG_t` and one GEMM `dG_t · W_hhᵀ` for the state gradient; the weight gradients are then one
//! GEMM each over all timesteps (`dW_ih = Xᵀ·dG`, `dW_hh = H_prevᵀ·dG`), the input gradient
//! one GEMM `dG · W_ihᵀ`.
//!
//! Padding: at an invalid `(t, b)` the state is carried unchanged and the output is zero; in
//! the backward pass the state gradient passes through unchanged and `dG` stays zero.

use super::math::{Mat, lanes, matmul, sigmoid, simd, tanh};

/// The recurrence computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellCode {
    /// LSTM, gates i, f, g, o.
    Lstm,
    /// GRU, gates r, z, n with `n = tanh(x W_n + b_in + r·(h U_n + b_hn))`.
    Gru,
    /// Elman RNN with tanh.
    RnnTanh,
    /// Elman RNN with ReLU.
    RnnRelu,
}

impl CellCode {
    /// Gate blocks per step.
    pub fn gates(self) -> usize {
        match self {
            CellCode::Lstm => 4,
            CellCode::Gru => 3,
            CellCode::RnnTanh | CellCode::RnnRelu => 1,
        }
    }
}

/// Sizes of one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Dims {
    pub time: usize,
    pub batch: usize,
    pub input: usize,
    pub hidden: usize,
}

/// What the forward pass keeps for the backward pass.
#[derive(Debug, Default)]
pub(crate) struct Saved {
    /// Post-activation gates `[T·B, G·H]` (empty for the RNN, whose state is its activation).
    gates: Vec<f32>,
    /// Hidden states, `T + 1` slots of `[B, H]` (see [`slots`]).
    states: Vec<f32>,
    /// LSTM cell states in the same slots; empty otherwise.
    cells: Vec<f32>,
    /// `[T·B, H]`: LSTM `tanh(c_t)`, GRU `h_{t-1}·U_n + b_hn`; empty for the RNN.
    aux: Vec<f32>,
}

/// The weights of one direction, row-major: `w_ih [in, G·H]`, `w_hh [H, G·H]`, biases `[G·H]`.
#[derive(Clone, Copy)]
pub(crate) struct Weights<'a> {
    pub w_ih: &'a [f32],
    pub w_hh: &'a [f32],
    pub b_ih: &'a [f32],
    pub b_hh: &'a [f32],
}

/// Which gradients the backward pass computes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Need {
    pub x: bool,
    pub w_ih: bool,
    pub w_hh: bool,
    pub b_ih: bool,
    pub b_hh: bool,
}

/// Gradients, `None` where not requested.
#[derive(Debug, Default)]
pub(crate) struct Grads {
    pub x: Option<Vec<f32>>,
    pub w_ih: Option<Vec<f32>>,
    pub w_hh: Option<Vec<f32>>,
    pub b_ih: Option<Vec<f32>>,
    pub b_hh: Option<Vec<f32>>,
}

/// State slots read and written at step `t`: the forward direction keeps `h_{t-1}` in slot
/// `t` and `h_t` in slot `t + 1`; the reverse direction runs from `T - 1` down and keeps the
/// state before step `t` in slot `t + 1`. Either way the zero initial state is a slot never
/// written, and the states *before* each step are `T` consecutive slots — one GEMM operand.
fn slots(reverse: bool, t: usize) -> (usize, usize) {
    if reverse { (t + 1, t) } else { (t, t + 1) }
}

/// Borrows `buf[read..read+len]` and `buf[write..write+len]` (disjoint) together.
fn pair(buf: &mut [f32], read: usize, write: usize, len: usize) -> (&[f32], &mut [f32]) {
    if read < write {
        let (a, b) = buf.split_at_mut(write);
        (&a[read..read + len], &mut b[..len])
    } else {
        let (a, b) = buf.split_at_mut(read);
        (&b[..len], &mut a[write..write + len])
    }
}

/// The state a run starts from, `[B, H]` row-major each: `h`, and `c` for the LSTM (ignored by
/// the other cells). It is a constant of the run: the backward pass computes no gradient for it
/// (truncated BPTT detaches the state carried in from the previous chunk).
#[derive(Clone, Copy)]
pub(crate) struct Initial<'a> {
    pub h: &'a [f32],
    pub c: Option<&'a [f32]>,
}

impl Saved {
    /// The state after the last step processed (`h`, and `c` for the LSTM), `[B, H]` each:
    /// slot `T` for the forward direction, slot 0 for the reverse one (see [`slots`]).
    pub(crate) fn final_state(&self, reverse: bool, d: Dims) -> (Vec<f32>, Option<Vec<f32>>) {
        let bh = d.batch * d.hidden;
        let slot = if reverse { 0 } else { d.time };
        let h = self.states[slot * bh..][..bh].to_vec();
        let c = (!self.cells.is_empty()).then(|| self.cells[slot * bh..][..bh].to_vec());
        (h, c)
    }
}

/// Runs one direction forward from `initial` (`None`: the zero state). `valid[t·B + b]` says
/// whether step `t` of sample `b` is real (`None`: all are). Returns the outputs `[T·B, H]` and
/// the saved activations.
pub(crate) fn forward(
    cell: CellCode,
    reverse: bool,
    valid: Option<&[bool]>,
    d: Dims,
    x: &[f32],
    w: Weights<'_>,
    initial: Option<Initial<'_>>,
) -> (Vec<f32>, Saved) {
    simd(
        #[inline(always)]
        || forward_impl(cell, reverse, valid, d, x, w, initial),
    )
}

#[inline(always)]
fn forward_impl(
    cell: CellCode,
    reverse: bool,
    valid: Option<&[bool]>,
    d: Dims,
    x: &[f32],
    w: Weights<'_>,
    initial: Option<Initial<'_>>,
) -> (Vec<f32>, Saved) {
    let Dims {
        time: tn,
        batch: bn,
        input: n_in,
        hidden: h,
    } = d;
    let gh = cell.gates() * h;
    let bh = bn * h;
    let rows = tn * bn;
    // LSTM and RNN only ever use b_ih + b_hh; the GRU's b_hn sits inside r·(…).
    let bias: Vec<f32> = match cell {
        CellCode::Gru => w.b_ih.to_vec(),
        _ => w.b_ih.iter().zip(w.b_hh).map(|(a, b)| a + b).collect(),
    };
    let mut gates = vec![0.0f32; rows * gh];
    for r in 0..rows {
        gates[r * gh..][..gh].copy_from_slice(&bias);
    }
    matmul(
        &mut gates,
        0,
        gh,
        Mat::rows(x, 0, rows, n_in),
        Mat::rows(w.w_ih, 0, n_in, gh),
        true,
    );
    let lstm = cell == CellCode::Lstm;
    let mut states = vec![0.0f32; (tn + 1) * bh];
    let mut cells = if lstm {
        vec![0.0f32; (tn + 1) * bh]
    } else {
        Vec::new()
    };
    let mut aux = match cell {
        CellCode::Lstm | CellCode::Gru => vec![0.0f32; rows * h],
        _ => Vec::new(),
    };
    // The state before the first step processed lives in the slot never written (slot 0
    // forward, slot T in reverse); with an initial state the first step needs its recurrent
    // GEMM like every other step.
    if let Some(init) = initial {
        let first = if reverse { tn } else { 0 };
        states[first * bh..][..bh].copy_from_slice(&init.h[..bh]);
        if let (true, Some(c)) = (lstm, init.c) {
            cells[first * bh..][..bh].copy_from_slice(&c[..bh]);
        }
    }
    let has_initial = initial.is_some();
    let mut hw = if cell == CellCode::Gru {
        vec![0.0f32; bn * gh]
    } else {
        Vec::new()
    };
    let mut y = vec![0.0f32; rows * h];
    let mut no_cells: [f32; 0] = [];
    for k in 0..tn {
        let t = if reverse { tn - 1 - k } else { k };
        let (prev, next) = slots(reverse, t);
        let w_hh = Mat::rows(w.w_hh, 0, h, gh);
        if cell == CellCode::Gru {
            for b in 0..bn {
                hw[b * gh..][..gh].copy_from_slice(w.b_hh);
            }
            if k > 0 || has_initial {
                matmul(
                    &mut hw,
                    0,
                    gh,
                    Mat::rows(&states, prev * bh, bn, h),
                    w_hh,
                    true,
                );
            }
        } else if k > 0 || has_initial {
            matmul(
                &mut gates,
                t * bn * gh,
                gh,
                Mat::rows(&states, prev * bh, bn, h),
                w_hh,
                true,
            );
        }
        let (sp, sn) = pair(&mut states, prev * bh, next * bh, bh);
        let (cp, cn) = if lstm {
            pair(&mut cells, prev * bh, next * bh, bh)
        } else {
            (&[][..], &mut no_cells[..])
        };
        for b in 0..bn {
            let row = t * bn + b;
            let hp = &sp[b * h..][..h];
            let hn = &mut sn[b * h..][..h];
            let gr = &mut gates[row * gh..][..gh];
            if !valid.is_none_or(|v| v[row]) {
                hn.copy_from_slice(hp);
                if lstm {
                    cn[b * h..][..h].copy_from_slice(&cp[b * h..][..h]);
                }
                gr.fill(0.0);
                continue;
            }
            let yr = &mut y[row * h..][..h];
            match cell {
                CellCode::Lstm => lstm_fwd_row(
                    h,
                    gr,
                    &cp[b * h..][..h],
                    &mut cn[b * h..][..h],
                    &mut aux[row * h..][..h],
                    hn,
                    yr,
                ),
                CellCode::Gru => gru_fwd_row(
                    h,
                    gr,
                    &hw[b * gh..][..gh],
                    hp,
                    &mut aux[row * h..][..h],
                    hn,
                    yr,
                ),
                CellCode::RnnTanh => rnn_fwd_row(h, gr, hn, yr, true),
                CellCode::RnnRelu => rnn_fwd_row(h, gr, hn, yr, false),
            }
        }
    }
    if matches!(cell, CellCode::RnnTanh | CellCode::RnnRelu) {
        gates = Vec::new();
    }
    (
        y,
        Saved {
            gates,
            states,
            cells,
            aux,
        },
    )
}

#[inline(always)]
fn lstm_fwd_row(
    h: usize,
    g: &mut [f32],
    cp: &[f32],
    cn: &mut [f32],
    tc: &mut [f32],
    hn: &mut [f32],
    y: &mut [f32],
) {
    let (gi, rest) = g.split_at_mut(h);
    let (gf, rest) = rest.split_at_mut(h);
    let (gg, go) = rest.split_at_mut(h);
    lanes(
        h,
        [cp],
        [gi, gf, gg, go, cn, tc, hn, y],
        #[inline(always)]
        |[cp], [ai, af, ag, ao, ..]| {
            let i = sigmoid(ai);
            let f = sigmoid(af);
            let gv = tanh(ag);
            let o = sigmoid(ao);
            let c = f * cp + i * gv;
            let t = tanh(c);
            let hv = o * t;
            [i, f, gv, o, c, t, hv, hv]
        },
    );
}

#[inline(always)]
fn gru_fwd_row(
    h: usize,
    g: &mut [f32],
    hw: &[f32],
    hp: &[f32],
    hn_out: &mut [f32],
    hn: &mut [f32],
    y: &mut [f32],
) {
    let (gr, rest) = g.split_at_mut(h);
    let (gz, gn) = rest.split_at_mut(h);
    let (hr, hz, hnn) = (&hw[..h], &hw[h..2 * h], &hw[2 * h..3 * h]);
    lanes(
        h,
        [hr, hz, hnn, hp],
        [gr, gz, gn, hn_out, hn, y],
        #[inline(always)]
        |[hr, hz, hnn, hp], [xr, xz, xn, ..]| {
            let r = sigmoid(xr + hr);
            let z = sigmoid(xz + hz);
            let n = tanh(xn + r * hnn);
            let hv = n + z * (hp - n);
            [r, z, n, hnn, hv, hv]
        },
    );
}

#[inline(always)]
fn rnn_fwd_row(h: usize, g: &[f32], hn: &mut [f32], y: &mut [f32], use_tanh: bool) {
    if use_tanh {
        lanes(
            h,
            [g],
            [hn, y],
            #[inline(always)]
            |[a], _| {
                let v = tanh(a);
                [v, v]
            },
        );
    } else {
        lanes(
            h,
            [g],
            [hn, y],
            #[inline(always)]
            |[a], _| {
                let v = a.max(0.0);
                [v, v]
            },
        );
    }
}

/// Runs one direction backward from the output gradient `dy: [T·B, H]`; `x`, the weights and
/// `saved` are those of the forward pass.
pub(crate) fn backward(
    cell: CellCode,
    reverse: bool,
    valid: Option<&[bool]>,
    d: Dims,
    saved: &Saved,
    dy: &[f32],
    x: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    need: Need,
) -> Grads {
    simd(
        #[inline(always)]
        || backward_impl(cell, reverse, valid, d, saved, dy, x, w_ih, w_hh, need),
    )
}

#[inline(always)]
fn backward_impl(
    cell: CellCode,
    reverse: bool,
    valid: Option<&[bool]>,
    d: Dims,
    saved: &Saved,
    dy: &[f32],
    x: &[f32],
    w_ih: &[f32],
    w_hh: &[f32],
    need: Need,
) -> Grads {
    let Dims {
        time: tn,
        batch: bn,
        input: n_in,
        hidden: h,
    } = d;
    let gh = cell.gates() * h;
    let bh = bn * h;
    let rows = tn * bn;
    let gru = cell == CellCode::Gru;
    // dG for the input side; the GRU's hidden side differs in its n block (scaled by r).
    let mut dgx = vec![0.0f32; rows * gh];
    let mut dgh = if gru {
        vec![0.0f32; rows * gh]
    } else {
        Vec::new()
    };
    // W_hhᵀ as a row-major [G·H, H] copy: gemm then reads it in place every step, where the
    // strided view of W_hh made it repack all of W_hh per step (most of the time at batch 8).
    let mut w_hh_t = vec![0.0f32; gh * h];
    for i in 0..h {
        for (j, v) in w_hh[i * gh..][..gh].iter().enumerate() {
            w_hh_t[j * h + i] = *v;
        }
    }
    let mut carry = vec![0.0f32; bh];
    let mut carry_prev = vec![0.0f32; bh];
    let mut dc = if cell == CellCode::Lstm {
        vec![0.0f32; bh]
    } else {
        Vec::new()
    };
    for k in (0..tn).rev() {
        let t = if reverse { tn - 1 - k } else { k };
        let (prev, next) = slots(reverse, t);
        for b in 0..bn {
            let row = t * bn + b;
            let dh_in = &carry[b * h..][..h];
            let dh_out = &mut carry_prev[b * h..][..h];
            if !valid.is_none_or(|v| v[row]) {
                // The state was carried: so is its gradient (dc is left as it is).
                dh_out.copy_from_slice(dh_in);
                continue;
            }
            let dyr = &dy[row * h..][..h];
            let dg = &mut dgx[row * gh..][..gh];
            match cell {
                CellCode::Lstm => lstm_bwd_row(
                    h,
                    &saved.gates[row * gh..][..gh],
                    &saved.cells[prev * bh + b * h..][..h],
                    &saved.aux[row * h..][..h],
                    dyr,
                    dh_in,
                    &mut dc[b * h..][..h],
                    dg,
                    dh_out,
                ),
                CellCode::Gru => gru_bwd_row(
                    h,
                    &saved.gates[row * gh..][..gh],
                    &saved.aux[row * h..][..h],
                    &saved.states[prev * bh + b * h..][..h],
                    dyr,
                    dh_in,
                    dg,
                    &mut dgh[row * gh..][..gh],
                    dh_out,
                ),
                CellCode::RnnTanh | CellCode::RnnRelu => rnn_bwd_row(
                    h,
                    cell == CellCode::RnnTanh,
                    &saved.states[next * bh + b * h..][..h],
                    dyr,
                    dh_in,
                    dg,
                    dh_out,
                ),
            }
        }
        if k > 0 {
            // The first step processed read the initial state, a constant (zero, or carried
            // in detached from the previous chunk): no gradient to pass on.
            let src = if gru { &dgh } else { &dgx };
            matmul(
                &mut carry_prev,
                0,
                h,
                Mat::rows(src, t * bn * gh, bn, gh),
                Mat::rows(&w_hh_t, 0, gh, h),
                true,
            );
        }
        std::mem::swap(&mut carry, &mut carry_prev);
    }
    let dgh_all: &[f32] = if gru { &dgh } else { &dgx };
    let base = if reverse { bh } else { 0 };
    let mut g = Grads::default();
    if need.w_ih {
        let mut o = vec![0.0f32; n_in * gh];
        let xm = Mat::rows(x, 0, rows, n_in).t();
        matmul(&mut o, 0, gh, xm, Mat::rows(&dgx, 0, rows, gh), false);
        g.w_ih = Some(o);
    }
    if need.w_hh {
        let mut o = vec![0.0f32; h * gh];
        let hm = Mat::rows(&saved.states, base, rows, h).t();
        matmul(&mut o, 0, gh, hm, Mat::rows(dgh_all, 0, rows, gh), false);
        g.w_hh = Some(o);
    }
    if need.b_ih {
        g.b_ih = Some(column_sums(&dgx, rows, gh));
    }
    if need.b_hh {
        g.b_hh = Some(column_sums(dgh_all, rows, gh));
    }
    if need.x {
        let mut o = vec![0.0f32; rows * n_in];
        let wt = Mat::rows(w_ih, 0, n_in, gh).t();
        matmul(&mut o, 0, n_in, Mat::rows(&dgx, 0, rows, gh), wt, false);
        g.x = Some(o);
    }
    g
}

#[inline(always)]
fn column_sums(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut s = vec![0.0f32; cols];
    for r in 0..rows {
        for (a, v) in s.iter_mut().zip(&m[r * cols..][..cols]) {
            *a += v;
        }
    }
    s
}

/// One LSTM row: `dh_out` receives the direct part of dL/dh_{t-1} (zero; the recurrent GEMM
/// adds the rest), `dc` is updated in place to dL/dc_{t-1}.
#[inline(always)]
fn lstm_bwd_row(
    h: usize,
    g: &[f32],
    cp: &[f32],
    tc: &[f32],
    dy: &[f32],
    dh_in: &[f32],
    dc: &mut [f32],
    dg: &mut [f32],
    dh_out: &mut [f32],
) {
    let (gi, gf, gg, go) = (&g[..h], &g[h..2 * h], &g[2 * h..3 * h], &g[3 * h..4 * h]);
    let (di, rest) = dg.split_at_mut(h);
    let (df, rest) = rest.split_at_mut(h);
    let (dgg, d_o) = rest.split_at_mut(h);
    let (di, df, dgg, d_o) = (&mut di[..h], &mut df[..h], &mut dgg[..h], &mut d_o[..h]);
    let (cp, tc, dy, dh_in, dc, dh_out) = (
        &cp[..h],
        &tc[..h],
        &dy[..h],
        &dh_in[..h],
        &mut dc[..h],
        &mut dh_out[..h],
    );
    for j in 0..h {
        let dh = dy[j] + dh_in[j];
        let (i, f, gv, o, t) = (gi[j], gf[j], gg[j], go[j], tc[j]);
        let dcv = dh * o * (1.0 - t * t) + dc[j];
        di[j] = dcv * gv * i * (1.0 - i);
        df[j] = dcv * cp[j] * f * (1.0 - f);
        dgg[j] = dcv * i * (1.0 - gv * gv);
        d_o[j] = dh * t * o * (1.0 - o);
        dc[j] = dcv * f;
        dh_out[j] = 0.0;
    }
}

/// One GRU row: input-side `dgx = [dr, dz, dn]`, hidden-side `dgh = [dr, dz, dn·r]`, and
/// `dh_out = dh·z` (the direct path through `z·h_{t-1}`).
#[inline(always)]
fn gru_bwd_row(
    h: usize,
    g: &[f32],
    hnn: &[f32],
    hp: &[f32],
    dy: &[f32],
    dh_in: &[f32],
    dgx: &mut [f32],
    dgh: &mut [f32],
    dh_out: &mut [f32],
) {
    let (gr, gz, gn) = (&g[..h], &g[h..2 * h], &g[2 * h..3 * h]);
    let (xr, rest) = dgx.split_at_mut(h);
    let (xz, xn) = rest.split_at_mut(h);
    let (xr, xz, xn) = (&mut xr[..h], &mut xz[..h], &mut xn[..h]);
    let (hr, rest) = dgh.split_at_mut(h);
    let (hz, hn) = rest.split_at_mut(h);
    let (hr, hz, hn) = (&mut hr[..h], &mut hz[..h], &mut hn[..h]);
    let (hnn, hp, dy, dh_in, dh_out) =
        (&hnn[..h], &hp[..h], &dy[..h], &dh_in[..h], &mut dh_out[..h]);
    for j in 0..h {
        let dh = dy[j] + dh_in[j];
        let (r, z, n) = (gr[j], gz[j], gn[j]);
        let dan = dh * (1.0 - z) * (1.0 - n * n);
        let dar = dan * hnn[j] * r * (1.0 - r);
        let daz = dh * (hp[j] - n) * z * (1.0 - z);
        xr[j] = dar;
        xz[j] = daz;
        xn[j] = dan;
        hr[j] = dar;
        hz[j] = daz;
        hn[j] = dan * r;
        dh_out[j] = dh * z;
    }
}

/// One RNN row from the step's output `hv`.
#[inline(always)]
fn rnn_bwd_row(
    h: usize,
    use_tanh: bool,
    hv: &[f32],
    dy: &[f32],
    dh_in: &[f32],
    dg: &mut [f32],
    dh_out: &mut [f32],
) {
    let (hv, dy, dh_in, dg, dh_out) = (
        &hv[..h],
        &dy[..h],
        &dh_in[..h],
        &mut dg[..h],
        &mut dh_out[..h],
    );
    if use_tanh {
        for j in 0..h {
            dg[j] = (dy[j] + dh_in[j]) * (1.0 - hv[j] * hv[j]);
            dh_out[j] = 0.0;
        }
    } else {
        for j in 0..h {
            let dh = dy[j] + dh_in[j];
            dg[j] = if hv[j] > 0.0 { dh } else { 0.0 };
            dh_out[j] = 0.0;
        }
    }
}
