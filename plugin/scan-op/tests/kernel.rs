//! The fast kernel against the naive reference (no ONNX Runtime needed).
#![allow(clippy::needless_range_loop)] // index loops mirror the formulas

use smdim_scan_op::testing::{assert_close, inputs, max_scaled_err, Rng};
use smdim_scan_op::{
    selective_scan, selective_scan_reference, selective_scan_threaded, ScanDims, ScanError,
    ScanInputs,
};

fn both(inp: &[Vec<f32>; 6], dims: ScanDims) -> (Vec<f32>, Vec<f32>) {
    let n = dims.x_len().unwrap();
    let (mut fast, mut slow) = (vec![f32::NAN; n], vec![f32::NAN; n]);
    let scan = ScanInputs::new(inp, dims);
    selective_scan(&scan, &mut fast).unwrap();
    selective_scan_reference(&scan, &mut slow).unwrap();
    (fast, slow)
}

#[test]
fn random_shapes_match_the_reference() {
    let mut rng = Rng(1);
    for case in 0..200 {
        let state = match case % 4 {
            0 => 16,
            1 => [4, 8, 32, 64][rng.range(0, 3)],
            _ => rng.range(1, 40),
        };
        let dims = ScanDims::new(rng.range(1, 3), rng.range(1, 9), state, rng.range(1, 70));
        let inp = inputs(&mut rng, dims);
        let (fast, slow) = both(&inp, dims);
        assert_close(&fast, &slow, 2e-5, &format!("case {case} {dims:?}"));
    }
}

#[test]
fn long_sequences_stay_accurate() {
    let mut rng = Rng(2);
    for state in [16, 5] {
        let dims = ScanDims::new(1, 8, state, 4096);
        let mut inp = inputs(&mut rng, dims);
        // Slow decay too (A near 0): the state integrates over thousands of steps.
        for a in inp[2].iter_mut().step_by(3) {
            *a = -1e-3;
        }
        let (fast, slow) = both(&inp, dims);
        let err = max_scaled_err(&fast, &slow);
        assert!(err < 1e-4, "state {state}: scaled error {err}");
        assert!(
            slow.iter().any(|v| v.abs() > 10.0),
            "the long memory should build up"
        );
    }
}

#[test]
fn length_one() {
    let mut rng = Rng(3);
    let dims = ScanDims::new(2, 3, 16, 1);
    let inp = inputs(&mut rng, dims);
    let (fast, slow) = both(&inp, dims);
    assert_close(&fast, &slow, 1e-6, "L = 1");
    // Closed form at t = 0: y = delta * x * sum_n B[n] C[n] + D x.
    let [x, dt, _, b, c, d] = &inp;
    for bi in 0..2 {
        for di in 0..3 {
            let r = bi * 3 + di;
            let bc: f32 = (0..16).map(|n| b[bi * 16 + n] * c[bi * 16 + n]).sum();
            let want = dt[r] * x[r] * bc + d[di] * x[r];
            assert!((fast[r] - want).abs() < 1e-5 * (1.0 + want.abs()), "{r}");
        }
    }
}

#[test]
fn large_negative_a_forgets_at_once() {
    let mut rng = Rng(4);
    let dims = ScanDims::new(1, 4, 16, 50);
    let mut inp = inputs(&mut rng, dims);
    inp[2].fill(-1e4);
    let (fast, slow) = both(&inp, dims);
    assert_close(&fast, &slow, 1e-6, "A = -1e4");
    // exp(delta * -1e4) == 0, so h[t] = delta[t] B[t] x[t] with no memory.
    let [x, dt, _, b, c, d] = &inp;
    for di in 0..4 {
        for t in 0..50 {
            let r = di * 50 + t;
            let bc: f32 = (0..16).map(|n| b[n * 50 + t] * c[n * 50 + t]).sum();
            let want = dt[r] * x[r] * bc + d[di] * x[r];
            assert!(
                (fast[r] - want).abs() < 1e-5 * (1.0 + want.abs()),
                "{di} {t}"
            );
        }
    }
}

#[test]
fn zero_delta_gives_the_skip_term_only() {
    let mut rng = Rng(5);
    for state in [16, 7] {
        let dims = ScanDims::new(2, 3, state, 33);
        let mut inp = inputs(&mut rng, dims);
        inp[1].fill(0.0);
        let (fast, slow) = both(&inp, dims);
        assert_close(&fast, &slow, 0.0, "delta = 0");
        let [x, _, _, _, _, d] = &inp;
        for (i, &y) in fast.iter().enumerate() {
            let di = (i / 33) % 3;
            assert_eq!(y, d[di] * x[i], "{i}");
        }
    }
}

#[test]
fn state_sizes_one_and_sixty_four() {
    let mut rng = Rng(6);
    for state in [1, 64] {
        let dims = ScanDims::new(2, 5, state, 300);
        let inp = inputs(&mut rng, dims);
        let (fast, slow) = both(&inp, dims);
        assert_close(&fast, &slow, 2e-5, &format!("N = {state}"));
    }
}

#[test]
fn threaded_equals_single_threaded() {
    let mut rng = Rng(7);
    let dims = ScanDims::new(2, 37, 16, 129);
    let inp = inputs(&mut rng, dims);
    let (single, _) = both(&inp, dims);
    for threads in [0, 1, 2, 3, 8, 200] {
        let mut y = vec![f32::NAN; single.len()];
        selective_scan_threaded(&ScanInputs::new(&inp, dims), &mut y, threads).unwrap();
        assert_eq!(y, single, "threads {threads}");
    }
}

#[test]
fn empty_dimensions_are_fine() {
    for dims in [
        ScanDims::new(0, 4, 16, 8),
        ScanDims::new(1, 4, 16, 0),
        ScanDims::new(1, 2, 0, 5),
    ] {
        let mut rng = Rng(8);
        let inp = inputs(&mut rng, dims);
        let (fast, slow) = both(&inp, dims);
        assert_eq!(fast, slow, "{dims:?}");
    }
    // N = 0: no state, y = D x.
    let dims = ScanDims::new(1, 2, 0, 5);
    let inp = inputs(&mut Rng(9), dims);
    let (fast, _) = both(&inp, dims);
    for (i, &y) in fast.iter().enumerate() {
        assert_eq!(y, inp[5][i / 5] * inp[0][i]);
    }
}

#[test]
fn wrong_lengths_are_errors_and_leave_y_alone() {
    let dims = ScanDims::new(1, 2, 4, 3);
    let inp = inputs(&mut Rng(10), dims);
    let names = ["x", "delta", "A", "B", "C", "D"];
    for (i, name) in names.iter().enumerate() {
        let mut bad = inp.clone();
        bad[i].push(0.0);
        let mut y = vec![7.0; 6];
        for f in [selective_scan, selective_scan_reference] {
            let err = f(&ScanInputs::new(&bad, dims), &mut y).unwrap_err();
            assert!(
                matches!(err, ScanError::Length { input, .. } if input == *name),
                "{name}: {err:?}"
            );
            assert!(err.to_string().contains(name));
        }
        assert_eq!(y, vec![7.0; 6]);
    }
    let mut short_y = vec![0.0; 5];
    let scan = ScanInputs::new(&inp, dims);
    let err = selective_scan(&scan, &mut short_y).unwrap_err();
    assert!(matches!(
        err,
        ScanError::Length {
            input: "y",
            expected: 6,
            actual: 5
        }
    ));
    let huge = ScanDims::new(usize::MAX, 2, 1, 2);
    let err = selective_scan(&ScanInputs { dims: huge, ..scan }, &mut short_y).unwrap_err();
    assert!(matches!(err, ScanError::Overflow(_)), "{err:?}");
}
