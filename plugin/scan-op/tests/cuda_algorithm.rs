//! The CUDA kernel's decomposition of the scan, replayed on the CPU step by step: tiles of
//! THREADS x ITEMS steps, each thread folding its ITEMS steps into one affine map, a warp-level
//! Hillis-Steele scan of those maps (lane i combines with lane i - offset), warp totals combined
//! in order, and the state carried between tiles. It catches order-of-composition and padding
//! mistakes without a GPU; `tests/cuda.rs` runs the real kernel where there is one.

use smdim_scan_op::testing::{inputs, max_scaled_err, Rng};
use smdim_scan_op::{selective_scan_reference, ScanDims};

const THREADS: usize = 128;
const ITEMS: usize = 8;
const WARP: usize = 32;

#[derive(Clone, Copy)]
struct Affine {
    a: f32,
    b: f32,
}

/// `first`, then `then` (the kernel's `compose`).
fn compose(first: Affine, then: Affine) -> Affine {
    Affine {
        a: first.a * then.a,
        b: then.a.mul_add(first.b, then.b),
    }
}

const IDENTITY: Affine = Affine { a: 1.0, b: 0.0 };

fn kernel_model(inp: &[Vec<f32>; 6], dims: ScanDims) -> Vec<f32> {
    let [x, delta, a_mat, b_mat, c_mat, d_vec] = inp;
    let ScanDims {
        batch,
        channels,
        state,
        len,
    } = dims;
    let mut y = vec![0.0; dims.x_len().unwrap()];
    for bi in 0..batch {
        for ch in 0..channels {
            let row = (bi * channels + ch) * len;
            let mut carry = vec![0.0f32; state];
            for tile in (0..len).step_by(THREADS * ITEMS) {
                let t_of = |tid: usize, k: usize| tile + tid * ITEMS + k;
                let mut acc: Vec<[f32; ITEMS]> = (0..THREADS)
                    .map(|tid| {
                        std::array::from_fn(|k| {
                            let t = t_of(tid, k);
                            if t < len {
                                d_vec[ch] * x[row + t]
                            } else {
                                0.0
                            }
                        })
                    })
                    .collect();
                for n in 0..state {
                    let an = a_mat[ch * state + n];
                    let step = |tid: usize, k: usize| {
                        let t = t_of(tid, k);
                        if t >= len {
                            return (IDENTITY, 0.0);
                        }
                        let dt = delta[row + t];
                        let bn = b_mat[(bi * state + n) * len + t];
                        let cn = c_mat[(bi * state + n) * len + t];
                        (
                            Affine {
                                a: (dt * an).exp(),
                                b: dt * bn * x[row + t],
                            },
                            cn,
                        )
                    };
                    let local: Vec<Affine> = (0..THREADS)
                        .map(|tid| (0..ITEMS).fold(IDENTITY, |m, k| compose(m, step(tid, k).0)))
                        .collect();
                    // Warp scan exactly as the shuffles do it: all lanes read before any writes.
                    let mut inclusive = local.clone();
                    let mut offset = 1;
                    while offset < WARP {
                        let earlier = inclusive.clone();
                        for tid in 0..THREADS {
                            let lane = tid % WARP;
                            if lane >= offset {
                                inclusive[tid] = compose(earlier[tid - offset], earlier[tid]);
                            }
                        }
                        offset <<= 1;
                    }
                    let warp_total: Vec<Affine> = (0..THREADS / WARP)
                        .map(|w| inclusive[w * WARP + WARP - 1])
                        .collect();
                    let mut last_h = 0.0;
                    for tid in 0..THREADS {
                        let (lane, warp) = (tid % WARP, tid / WARP);
                        let exclusive = if lane == 0 {
                            IDENTITY
                        } else {
                            inclusive[tid - 1]
                        };
                        let before = warp_total[..warp]
                            .iter()
                            .fold(IDENTITY, |m, &w| compose(m, w));
                        let before = compose(before, exclusive);
                        let mut h = before.a.mul_add(carry[n], before.b);
                        for (k, out) in acc[tid].iter_mut().enumerate() {
                            let (m, cn) = step(tid, k);
                            h = m.a.mul_add(h, m.b);
                            *out = cn.mul_add(h, *out);
                        }
                        last_h = h;
                    }
                    carry[n] = last_h;
                }
                for (tid, items) in acc.iter().enumerate() {
                    for (k, &v) in items.iter().enumerate() {
                        let t = t_of(tid, k);
                        if t < len {
                            y[row + t] = v;
                        }
                    }
                }
            }
        }
    }
    y
}

#[test]
fn the_tiled_block_scan_equals_the_sequential_scan() {
    let mut rng = Rng(21);
    for dims in [
        ScanDims::new(1, 2, 16, 2048),
        ScanDims::new(2, 3, 4, 1025),
        ScanDims::new(1, 1, 3, 1),
        ScanDims::new(1, 2, 16, 3000),
    ] {
        let inp = inputs(&mut rng, dims);
        let mut want = vec![0.0; dims.x_len().unwrap()];
        let [x, dt, a, b, c, d] = &inp;
        selective_scan_reference(x, dt, a, b, c, d, dims, &mut want).unwrap();
        let got = kernel_model(&inp, dims);
        let err = max_scaled_err(&got, &want);
        assert!(err < 1e-4, "{dims:?}: scaled error {err}");
    }
}
