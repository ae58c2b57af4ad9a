//! The scan's inner loops.
//!
//! One batch × channel row at a time: the state `h[N]` stays in registers or a stack array,
//! each step reads `B[t, :]` and `C[t, :]` contiguously (B and C are transposed once per call to
//! [B, L, N]) and the `N` lanes run the same straight-line code (exp, multiply-add, product),
//! which the compiler vectorises. `exp` is a Cephes-style polynomial (about 1 ulp) so that it
//! vectorises too; std's `exp` is a libm call per element.

use std::ops::Range;

use crate::{ScanDims, ScanInputs};

/// Above this state size the fallback path keeps the state on the heap (once per call).
const MAX_STACK_STATE: usize = 256;

/// Instruction set of the inner loop, chosen at run time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Isa {
    pub(crate) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Isa::Avx2Fma;
            }
        }
        Isa::Portable
    }
}

/// Multiply-add: plain (two roundings) or fused (one rounding, only where the CPU has FMA:
/// without it `mul_add` is a slow libm call).
trait Mad {
    fn mad(a: f32, b: f32, c: f32) -> f32;
}

#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))] // the x86_64 paths without FMA
struct Plain;
impl Mad for Plain {
    #[inline(always)]
    fn mad(a: f32, b: f32, c: f32) -> f32 {
        a * b + c
    }
}

#[allow(dead_code)] // used by the AVX2 path (x86_64) and the portable path on aarch64
struct Fused;
impl Mad for Fused {
    #[inline(always)]
    fn mad(a: f32, b: f32, c: f32) -> f32 {
        a.mul_add(b, c)
    }
}

/// The portable path's multiply-add: NEON always has FMA; x86_64's baseline (SSE2) does not.
#[cfg(target_arch = "aarch64")]
type PortableMad = Fused;
#[cfg(not(target_arch = "aarch64"))]
type PortableMad = Plain;

/// `exp(x)` for `f32` with branch-free selects. 0 below -87, +inf above 88, NaN stays NaN.
#[inline(always)]
fn exp_f32<M: Mad>(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds to an integer, which then sits in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    const LO: f32 = -87.0;
    const HI: f32 = 88.0;
    let xc = if x < LO { LO } else { x };
    let xc = if xc > HI { HI } else { xc };
    let t = M::mad(xc, LOG2E, MAGIC);
    let n = t - MAGIC;
    let ni = t.to_bits().wrapping_sub(MAGIC.to_bits()) as i32;
    let r = M::mad(n, -LN2_HI, xc);
    let r = M::mad(n, -LN2_LO, r);
    let mut p = 1.987_569_1e-4f32;
    p = M::mad(p, r, 1.398_2e-3);
    p = M::mad(p, r, 8.333_452e-3);
    p = M::mad(p, r, 4.166_579_6e-2);
    p = M::mad(p, r, 1.666_666_5e-1);
    p = M::mad(p, r, 0.5);
    let e = M::mad(p, r * r, r) + 1.0;
    let scale = f32::from_bits((ni.wrapping_add(127) as u32) << 23);
    let res = e * scale;
    let res = if x < LO { 0.0 } else { res };
    if x > HI {
        f32::INFINITY
    } else {
        res
    }
}

#[cfg(test)]
pub(crate) fn exp_portable(x: f32) -> f32 {
    exp_f32::<PortableMad>(x)
}

/// Sum with a fixed 8-lane tree for multiples of 8 (vector adds), in order otherwise.
#[inline(always)]
fn hsum<const N: usize>(v: &[f32; N]) -> f32 {
    if N >= 8 && N.is_multiple_of(8) {
        let mut acc = [0.0f32; 8];
        for ch in v.chunks_exact(8) {
            for i in 0..8 {
                acc[i] += ch[i];
            }
        }
        let a4 = [
            acc[0] + acc[4],
            acc[1] + acc[5],
            acc[2] + acc[6],
            acc[3] + acc[7],
        ];
        (a4[0] + a4[2]) + (a4[1] + a4[3])
    } else {
        v.iter().sum()
    }
}

/// Steps per block in [`row_fixed`]: the block's exps are computed first, all independent of
/// one another (throughput-bound vector code), then the recurrence runs over the block.
const TIME_BLOCK: usize = 8;

/// One row's inputs (row = batch · D + channel): x and delta [L], A [N], B and C transposed
/// [L, N], the skip weight D.
struct Row<'r> {
    x: &'r [f32],
    dt: &'r [f32],
    a: &'r [f32],
    bt: &'r [f32],
    ct: &'r [f32],
    dskip: f32,
}

/// One row with the state size known at compile time (`row.a` has N elements).
#[inline(always)]
fn row_fixed<const N: usize, M: Mad>(row: &Row<'_>, y: &mut [f32]) {
    let Row {
        x,
        dt,
        bt,
        ct,
        dskip,
        ..
    } = *row;
    let a: &[f32; N] = row.a.try_into().expect("N");
    let mut h = [0.0f32; N];
    let mut decay = [[0.0f32; N]; TIME_BLOCK];
    let mut dbx = [[0.0f32; N]; TIME_BLOCK];
    let blocks = x
        .chunks(TIME_BLOCK)
        .zip(dt.chunks(TIME_BLOCK))
        .zip(y.chunks_mut(TIME_BLOCK))
        .zip(bt.chunks(TIME_BLOCK * N).zip(ct.chunks(TIME_BLOCK * N)));
    for (((xs, ds), ys), (bs, cs)) in blocks {
        // 1. decay = exp(delta A) and delta B x for every step of the block.
        let prep = xs
            .iter()
            .zip(ds)
            .zip(bs.chunks_exact(N))
            .zip(decay.iter_mut().zip(dbx.iter_mut()));
        for (((&xt, &dtt), bn), (dec, u)) in prep {
            let bn: &[f32; N] = bn.try_into().expect("chunks_exact(N)");
            let dx = dtt * xt;
            for n in 0..N {
                dec[n] = exp_f32::<M>(dtt * a[n]);
                u[n] = dx * bn[n];
            }
        }
        // 2. The recurrence and the read-out.
        let steps = ys
            .iter_mut()
            .zip(xs)
            .zip(cs.chunks_exact(N))
            .zip(decay.iter().zip(dbx.iter()));
        for (((yt, &xt), cn), (dec, u)) in steps {
            let cn: &[f32; N] = cn.try_into().expect("chunks_exact(N)");
            let mut prod = [0.0f32; N];
            for n in 0..N {
                h[n] = M::mad(dec[n], h[n], u[n]);
                prod[n] = h[n] * cn[n];
            }
            *yt = M::mad(dskip, xt, hsum(&prod));
        }
    }
}

/// One row with any state size; `h` is the caller's buffer of exactly N floats.
#[inline(always)]
fn row_dyn<M: Mad>(row: &Row<'_>, y: &mut [f32], h: &mut [f32]) {
    let Row {
        x,
        dt,
        a,
        bt,
        ct,
        dskip,
    } = *row;
    let n_state = h.len();
    h.fill(0.0);
    let steps = x
        .iter()
        .zip(dt)
        .zip(y.iter_mut())
        .zip(bt.chunks_exact(n_state).zip(ct.chunks_exact(n_state)));
    for (((&xt, &dtt), yt), (bn, cn)) in steps {
        let dx = dtt * xt;
        for ((hn, &an), &bv) in h.iter_mut().zip(a).zip(bn) {
            let decay = exp_f32::<M>(dtt * an);
            *hn = M::mad(decay, *hn, dx * bv);
        }
        let mut acc = 0.0f32;
        for (&hn, &cv) in h.iter().zip(cn) {
            acc = M::mad(hn, cv, acc);
        }
        *yt = M::mad(dskip, xt, acc);
    }
}

/// Inputs of one scan call with B and C transposed to [B, L, N].
pub(crate) struct Prepared<'a> {
    x: &'a [f32],
    delta: &'a [f32],
    a: &'a [f32],
    d: &'a [f32],
    bt: Vec<f32>,
    ct: Vec<f32>,
    dims: ScanDims,
}

/// [B, N, L] -> [B, L, N]. Reads run along L (contiguous); writes stride N.
fn transpose_bnl(src: &[f32], dims: ScanDims) -> Vec<f32> {
    let ScanDims {
        batch, state, len, ..
    } = dims;
    let mut dst = vec![0.0f32; src.len()];
    if state == 0 || len == 0 {
        return dst;
    }
    for bi in 0..batch {
        let s = &src[bi * state * len..(bi + 1) * state * len];
        let d = &mut dst[bi * state * len..(bi + 1) * state * len];
        for (n, srow) in s.chunks_exact(len).enumerate() {
            for (t, &v) in srow.iter().enumerate() {
                d[t * state + n] = v;
            }
        }
    }
    dst
}

impl<'a> Prepared<'a> {
    /// The slices must already have the lengths `dims` implies
    /// ([`ScanInputs::check_lengths`]).
    pub(crate) fn new(inputs: &ScanInputs<'a>) -> Self {
        Self {
            x: inputs.x,
            delta: inputs.delta,
            a: inputs.a,
            d: inputs.d,
            bt: transpose_bnl(inputs.b, inputs.dims),
            ct: transpose_bnl(inputs.c, inputs.dims),
            dims: inputs.dims,
        }
    }

    pub(crate) fn dims(&self) -> ScanDims {
        self.dims
    }

    /// Scans rows `rows` (row = batch · D + channel) into `y_rows` ((rows.len()) · L floats).
    pub(crate) fn scan_rows(&self, rows: Range<usize>, y_rows: &mut [f32], isa: Isa) {
        assert_eq!(y_rows.len(), rows.len() * self.dims.len, "output rows");
        assert!(
            rows.end <= self.dims.batch * self.dims.channels,
            "row range"
        );
        match isa {
            Isa::Portable => self.scan_rows_impl::<PortableMad>(rows, y_rows),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Isa::Avx2Fma` is only produced by `Isa::detect` when the CPU has both.
            Isa::Avx2Fma => unsafe { self.scan_rows_avx2(rows, y_rows) },
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn scan_rows_avx2(&self, rows: Range<usize>, y_rows: &mut [f32]) {
        self.scan_rows_impl::<Fused>(rows, y_rows)
    }

    #[inline(always)]
    fn scan_rows_impl<M: Mad>(&self, rows: Range<usize>, y_rows: &mut [f32]) {
        let ScanDims {
            channels,
            state,
            len,
            ..
        } = self.dims;
        if len == 0 {
            return;
        }
        let mut stack = [0.0f32; MAX_STACK_STATE];
        let mut heap = Vec::new();
        let h: &mut [f32] = if state <= MAX_STACK_STATE {
            &mut stack[..state]
        } else {
            heap.resize(state, 0.0);
            &mut heap
        };
        for (row, y) in rows.zip(y_rows.chunks_exact_mut(len)) {
            let bi = row / channels;
            let di = row % channels;
            let row = Row {
                x: &self.x[row * len..(row + 1) * len],
                dt: &self.delta[row * len..(row + 1) * len],
                a: &self.a[di * state..(di + 1) * state],
                bt: &self.bt[bi * len * state..(bi + 1) * len * state],
                ct: &self.ct[bi * len * state..(bi + 1) * len * state],
                dskip: self.d[di],
            };
            match state {
                // No state at all: only the skip term.
                0 => {
                    for (yt, &xt) in y.iter_mut().zip(row.x) {
                        *yt = row.dskip * xt;
                    }
                }
                4 => row_fixed::<4, M>(&row, y),
                8 => row_fixed::<8, M>(&row, y),
                16 => row_fixed::<16, M>(&row, y),
                32 => row_fixed::<32, M>(&row, y),
                64 => row_fixed::<64, M>(&row, y),
                _ => row_dyn::<M>(&row, y, h),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_matches_std_over_the_range() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let got = exp_portable(x) as f64;
            let want = (x as f64).exp();
            worst = worst.max(((got - want) / want).abs());
            x += 0.0137;
        }
        assert!(worst < 3e-7, "relative error {worst}");
    }

    #[test]
    fn exp_edges() {
        assert_eq!(exp_portable(0.0), 1.0);
        assert_eq!(exp_portable(-1e4), 0.0);
        assert_eq!(exp_portable(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_portable(1e4), f32::INFINITY);
        assert!(exp_portable(f32::NAN).is_nan());
        let tiny = exp_portable(-86.9);
        assert!(tiny > 0.0 && tiny < 2e-38);
    }

    #[test]
    fn isa_paths_agree() {
        // Both instruction-set paths (where the CPU has AVX2) and every state-size path.
        let mut rng = crate::testing::Rng(17);
        for state in [1usize, 3, 4, 8, 16, 32, 64, 300] {
            let dims = ScanDims::new(2, 3, state, 37);
            let inp = crate::testing::inputs(&mut rng, dims);
            let inputs = ScanInputs::new(&inp, dims);
            let p = Prepared::new(&inputs);
            let rows = dims.batch * dims.channels;
            let mut y0 = vec![0.0; rows * dims.len];
            p.scan_rows(0..rows, &mut y0, Isa::Portable);
            let mut yr = vec![0.0; rows * dims.len];
            crate::selective_scan_reference(&inputs, &mut yr).unwrap();
            crate::testing::assert_close(&y0, &yr, 1e-5, "portable vs reference");
            let isa = Isa::detect();
            let mut y1 = vec![0.0; rows * dims.len];
            p.scan_rows(0..rows, &mut y1, isa);
            crate::testing::assert_close(&y1, &yr, 1e-5, "detected isa vs reference");
        }
    }
}
