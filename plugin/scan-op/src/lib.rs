//! The `smdim::SelectiveScan` operator: Mamba's selective scan on the CPU, as plain functions
//! and as an ONNX Runtime custom operator.
//!
//! Semantics (`model-export/smdim/scan.py`, `selective_scan_ref`), all tensors `f32`, row-major:
//!
//! ```text
//! x, delta: [B, D, L]   A: [D, N]   B, C: [B, N, L]   D: [D]   ->   y: [B, D, L]
//! h[-1] = 0
//! h[t]  = exp(delta[t] * A) * h[t-1] + delta[t] * B[t] * x[t]      (h: [N] per batch and channel)
//! y[t]  = sum_n C[t, n] * h[t, n] + D * x[t]
//! ```
//!
//! * [`selective_scan`]: the fast kernel on plain slices ([`ScanInputs`]; one thread). The state lives in a
//!   fixed-size array for the common state sizes (4, 8, 16, 32, 64) and in a stack buffer
//!   otherwise (a heap buffer once per call above 256); B and C are transposed once per call so
//!   that every step reads contiguous state vectors; `exp` is a polynomial the compiler
//!   vectorises; AVX2 + FMA is picked at run time where the CPU has it.
//! * [`selective_scan_reference`]: the naive loop, for tests and benchmarks.
//! * [`SelectiveScan`] / [`operator_domain`]: the `ort` operator; the kernel splits batch ×
//!   channels over ONNX Runtime's intra-op thread pool (`ComputeContext::par_for`).
//! * [`cuda::SelectiveScanCuda`]: its CUDA twin for sessions on the CUDA execution provider
//!   (a parallel scan in `cuda/selective_scan.cu`, embedded as a fatbin, see [`cuda`]).
//!
//! Nothing here panics across the FFI boundary: shape errors are `ort` errors, and the kernel
//! and shape inference catch any panic and turn it into an error.

pub mod cuda;
mod kernel;
mod op;
#[cfg(test)]
#[path = "../tests/common/mod.rs"]
mod test_common;

pub use op::{cpu_kernel_runs, operator_domain, SelectiveScan, SelectiveScanKernel};

/// The operator's ONNX domain.
pub const DOMAIN: &str = "smdim";
/// The operator's name in [`DOMAIN`].
pub const OP_NAME: &str = "SelectiveScan";

/// Sizes of one scan: `batch` = B, `channels` = D, `state` = N, `len` = L.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ScanDims {
    pub batch: usize,
    pub channels: usize,
    pub state: usize,
    pub len: usize,
}

impl ScanDims {
    pub const fn new(batch: usize, channels: usize, state: usize, len: usize) -> Self {
        Self {
            batch,
            channels,
            state,
            len,
        }
    }

    /// Elements of `x`, `delta` and `y` (B·D·L), `None` on overflow.
    pub fn x_len(&self) -> Option<usize> {
        self.batch.checked_mul(self.channels)?.checked_mul(self.len)
    }

    /// Elements of `A` (D·N).
    pub fn a_len(&self) -> Option<usize> {
        self.channels.checked_mul(self.state)
    }

    /// Elements of `B` and `C` (B·N·L).
    pub fn bc_len(&self) -> Option<usize> {
        self.batch.checked_mul(self.state)?.checked_mul(self.len)
    }

    /// Elements of `D` (D).
    pub fn d_len(&self) -> usize {
        self.channels
    }
}

/// Why a scan was refused. Nothing is written to `y` when this is returned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScanError {
    /// A slice has the wrong number of elements for the given [`ScanDims`].
    Length {
        input: &'static str,
        expected: usize,
        actual: usize,
    },
    /// A tensor has the wrong shape (operator inputs).
    Shape {
        input: &'static str,
        expected: String,
        actual: Vec<i64>,
    },
    /// The element counts overflow `usize`.
    Overflow(ScanDims),
}

impl std::fmt::Display for ScanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanError::Length {
                input,
                expected,
                actual,
            } => write!(
                f,
                "smdim::SelectiveScan: `{input}` has {actual} elements, expected {expected}"
            ),
            ScanError::Shape {
                input,
                expected,
                actual,
            } => write!(
                f,
                "smdim::SelectiveScan: input `{input}` has shape {actual:?}, expected {expected}"
            ),
            ScanError::Overflow(dims) => {
                write!(f, "smdim::SelectiveScan: sizes overflow: {dims:?}")
            }
        }
    }
}

impl std::error::Error for ScanError {}

impl From<ScanError> for ort::Error {
    fn from(e: ScanError) -> Self {
        ort::Error::new(e.to_string())
    }
}

/// The six inputs of one scan and their sizes: `x`, `delta` [B, D, L], `A` [D, N], `B`, `C`
/// [B, N, L], `D` [D]. Built once and handed to every scan function.
#[derive(Clone, Copy, Debug)]
pub struct ScanInputs<'a> {
    pub x: &'a [f32],
    pub delta: &'a [f32],
    pub a: &'a [f32],
    pub b: &'a [f32],
    pub c: &'a [f32],
    pub d: &'a [f32],
    pub dims: ScanDims,
}

impl<'a> ScanInputs<'a> {
    /// From `[x, delta, A, B, C, D]`, the operator's input order (slices or vectors).
    pub fn new<T: AsRef<[f32]>>(inputs: &'a [T; 6], dims: ScanDims) -> Self {
        let [x, delta, a, b, c, d] = inputs;
        Self {
            x: x.as_ref(),
            delta: delta.as_ref(),
            a: a.as_ref(),
            b: b.as_ref(),
            c: c.as_ref(),
            d: d.as_ref(),
            dims,
        }
    }

    /// `[x, delta, A, B, C, D]`.
    pub fn slices(&self) -> [&'a [f32]; 6] {
        [self.x, self.delta, self.a, self.b, self.c, self.d]
    }

    /// Checks every slice's length, and that of the output `y`, against `dims`.
    pub fn check_lengths(&self, y_len: usize) -> Result<(), ScanError> {
        let dims = self.dims;
        let overflow = || ScanError::Overflow(dims);
        let xl = dims.x_len().ok_or_else(overflow)?;
        let al = dims.a_len().ok_or_else(overflow)?;
        let bl = dims.bc_len().ok_or_else(overflow)?;
        let checks: [(&'static str, usize, usize); 7] = [
            ("x", xl, self.x.len()),
            ("delta", xl, self.delta.len()),
            ("A", al, self.a.len()),
            ("B", bl, self.b.len()),
            ("C", bl, self.c.len()),
            ("D", dims.d_len(), self.d.len()),
            ("y", xl, y_len),
        ];
        for (input, expected, actual) in checks {
            if expected != actual {
                return Err(ScanError::Length {
                    input,
                    expected,
                    actual,
                });
            }
        }
        Ok(())
    }
}

/// The fast selective scan on one thread: writes `y` ([B, D, L]).
///
/// Allocates two buffers of B·L·N floats per call (B and C transposed); nothing per step.
pub fn selective_scan(inputs: &ScanInputs<'_>, y: &mut [f32]) -> Result<(), ScanError> {
    selective_scan_threaded(inputs, y, 1)
}

/// The same scan split over `threads` scoped threads (batch × channels), for callers outside
/// ONNX Runtime. `threads <= 1` runs on the calling thread.
pub fn selective_scan_threaded(
    inputs: &ScanInputs<'_>,
    y: &mut [f32],
    threads: usize,
) -> Result<(), ScanError> {
    inputs.check_lengths(y.len())?;
    let dims = inputs.dims;
    let prepared = kernel::Prepared::new(inputs);
    let rows = dims.batch * dims.channels;
    let isa = kernel::Isa::detect();
    let threads = threads.clamp(1, rows.max(1));
    if threads == 1 || dims.len == 0 {
        prepared.scan_rows(0..rows, y, isa);
        return Ok(());
    }
    let per = rows.div_ceil(threads);
    std::thread::scope(|s| {
        for (i, ys) in y.chunks_mut(per * dims.len).enumerate() {
            let prepared = &prepared;
            let start = i * per;
            let end = start + ys.len() / dims.len;
            s.spawn(move || prepared.scan_rows(start..end, ys, isa));
        }
    });
    Ok(())
}

/// The naive reference: a direct transcription of `selective_scan_ref` (scalar `exp`, the
/// state indexed straight out of the [B, N, L] layouts). Slow; for tests and benchmarks.
pub fn selective_scan_reference(inputs: &ScanInputs<'_>, y: &mut [f32]) -> Result<(), ScanError> {
    inputs.check_lengths(y.len())?;
    let ScanInputs {
        x,
        delta,
        a,
        b,
        c,
        d,
        dims,
    } = *inputs;
    let ScanDims {
        batch,
        channels,
        state,
        len,
    } = dims;
    let mut h = vec![0.0f32; state];
    for bi in 0..batch {
        for di in 0..channels {
            h.fill(0.0);
            let row = (bi * channels + di) * len;
            for t in 0..len {
                let dt = delta[row + t];
                let xt = x[row + t];
                let mut acc = 0.0f32;
                for (n, hn) in h.iter_mut().enumerate() {
                    let bn = b[(bi * state + n) * len + t];
                    let cn = c[(bi * state + n) * len + t];
                    *hn = (dt * a[di * state + n]).exp() * *hn + dt * bn * xt;
                    acc += cn * *hn;
                }
                y[row + t] = acc + d[di] * xt;
            }
        }
    }
    Ok(())
}

/// Deterministic inputs and comparisons for tests and benchmarks (not part of the API).
#[doc(hidden)]
pub mod testing {
    use crate::ScanDims;

    /// SplitMix64: small, deterministic, good enough for test data.
    #[derive(Clone, Debug)]
    pub struct Rng(pub u64);

    impl Rng {
        pub fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [lo, hi).
        pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
            let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
            lo + (hi - lo) * u
        }

        /// Uniform integer in [lo, hi].
        pub fn range(&mut self, lo: usize, hi: usize) -> usize {
            lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
        }

        pub fn vec(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
            (0..n).map(|_| self.uniform(lo, hi)).collect()
        }
    }

    /// `[x, delta, A, B, C, D]` shaped like a trained Mamba block's: delta = softplus(..) > 0,
    /// A = -exp(..) < 0.
    pub fn inputs(rng: &mut Rng, dims: ScanDims) -> [Vec<f32>; 6] {
        let xl = dims.x_len().expect("dims");
        let bl = dims.bc_len().expect("dims");
        let x = rng.vec(xl, -2.0, 2.0);
        let delta = (0..xl)
            .map(|_| (1.0 + rng.uniform(-4.0, 1.0).exp()).ln())
            .collect();
        let a = (0..dims.a_len().expect("dims"))
            .map(|_| -rng.uniform(-1.0, 2.8).exp())
            .collect();
        let b = rng.vec(bl, -1.0, 1.0);
        let c = rng.vec(bl, -1.0, 1.0);
        let d = rng.vec(dims.channels, -1.0, 1.0);
        [x, delta, a, b, c, d]
    }

    /// Largest `|got - want| / (1 + |want|)`; panics on a length mismatch or a non-finite value.
    pub fn max_scaled_err(got: &[f32], want: &[f32]) -> f32 {
        assert_eq!(got.len(), want.len(), "lengths");
        got.iter()
            .zip(want)
            .map(|(&g, &w)| {
                assert!(
                    g.is_finite() && w.is_finite(),
                    "non-finite: got {g}, want {w}"
                );
                (g - w).abs() / (1.0 + w.abs())
            })
            .fold(0.0, f32::max)
    }

    /// Asserts `|got - want| <= tol * (1 + |want|)` everywhere.
    pub fn assert_close(got: &[f32], want: &[f32], tol: f32, what: &str) {
        let err = max_scaled_err(got, want);
        assert!(err <= tol, "{what}: scaled error {err} > {tol}");
    }
}
