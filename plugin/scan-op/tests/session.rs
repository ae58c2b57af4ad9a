//! The operator inside a real ONNX Runtime session (in-process registration through
//! `operator_domain()`), on the committed one-node graph `tests/data/selective_scan.onnx`.
//! Needs the library from `cargo xtask fetch-ort` (or ORT_DYLIB_PATH); FAILS without it.

mod common;

use ort::session::Session;
use ort::value::Tensor;
use smdim_scan_op::testing::{assert_close, inputs, Rng};
use smdim_scan_op::{operator_domain, selective_scan_reference, ScanDims, ScanInputs};

const MODEL: &[u8] = include_bytes!("data/selective_scan.onnx");

fn session(threads: usize) -> Session {
    Session::builder(common::environment())
        .unwrap()
        .with_intra_threads(threads)
        .unwrap()
        .with_operators(operator_domain().unwrap())
        .unwrap()
        .commit_from_memory(MODEL)
        .unwrap()
}

fn shapes(d: ScanDims) -> [Vec<usize>; 6] {
    let ScanDims {
        batch: b,
        channels: c,
        state: n,
        len: l,
    } = d;
    [
        vec![b, c, l],
        vec![b, c, l],
        vec![c, n],
        vec![b, n, l],
        vec![b, n, l],
        vec![c],
    ]
}

fn run(
    session: &mut Session,
    inp: &[Vec<f32>; 6],
    shapes: [Vec<usize>; 6],
) -> ort::Result<(Vec<i64>, Vec<f32>)> {
    let tensors: Vec<Tensor<f32>> = inp
        .iter()
        .zip(shapes)
        .map(|(v, s)| Tensor::from_array((s, v.clone())))
        .collect::<ort::Result<_>>()?;
    let [x, dt, a, b, c, d]: [Tensor<f32>; 6] = tensors.try_into().ok().unwrap();
    let outputs = session.run(ort::inputs![x, dt, a, b, c, d])?;
    let (shape, y) = outputs[0].try_extract_tensor::<f32>()?;
    Ok((shape.to_vec(), y.to_vec()))
}

fn reference(inp: &[Vec<f32>; 6], dims: ScanDims) -> Vec<f32> {
    let mut y = vec![0.0; dims.x_len().unwrap()];
    selective_scan_reference(&ScanInputs::new(inp, dims), &mut y).unwrap();
    y
}

#[test]
fn session_output_equals_the_reference() {
    let mut rng = Rng(11);
    for threads in [1, 2] {
        let mut s = session(threads);
        // Small shapes (one task) and large ones (split over the intra-op pool).
        for dims in [
            ScanDims::new(1, 3, 16, 5),
            ScanDims::new(2, 64, 16, 256),
            ScanDims::new(1, 40, 7, 100),
            ScanDims::new(3, 17, 64, 33),
        ] {
            let inp = inputs(&mut rng, dims);
            let (shape, y) = run(&mut s, &inp, shapes(dims)).unwrap();
            let ScanDims {
                batch,
                channels,
                len,
                ..
            } = dims;
            assert_eq!(shape, vec![batch as i64, channels as i64, len as i64]);
            assert_close(
                &y,
                &reference(&inp, dims),
                2e-5,
                &format!("{threads} threads {dims:?}"),
            );
        }
    }
}

#[test]
fn mismatched_shapes_are_errors_not_panics() {
    let mut s = session(2);
    let dims = ScanDims::new(2, 4, 8, 10);
    let inp = inputs(&mut Rng(12), dims);
    let names = ["delta", "A", "B", "C", "D"];
    for (i, name) in names.iter().enumerate() {
        let i = i + 1;
        let mut sh = shapes(dims);
        let mut bad = inp.clone();
        // One dimension off by one (and the data resized to match the claimed shape). A's
        // last dimension defines N, so A gets a wrong D instead.
        let dim = if *name == "A" { 0 } else { sh[i].len() - 1 };
        sh[i][dim] += 1;
        bad[i] = vec![0.5; sh[i].iter().product()];
        let err = run(&mut s, &bad, sh).expect_err(name).to_string();
        assert!(
            err.contains(&format!("input `{name}`")),
            "{name}: unexpected message: {err}"
        );
    }
    // Wrong rank of x: the graph declares rank 3, so ONNX Runtime refuses it before the kernel
    // (the kernel's own rank check is covered by the unit tests of `dims_from_shapes`).
    let mut sh = shapes(dims);
    sh[0] = vec![2, 40];
    let err = run(&mut s, &inp, sh).unwrap_err().to_string();
    assert!(err.contains("rank") && err.contains('x'), "{err}");
    // The session still works afterwards.
    let (_, y) = run(&mut s, &inp, shapes(dims)).unwrap();
    assert_close(&y, &reference(&inp, dims), 2e-5, "after errors");
}
