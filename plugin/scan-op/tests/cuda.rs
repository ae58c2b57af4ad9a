//! The CUDA twin without a GPU (CI): the embedded fatbin covers every target architecture and
//! names the kernel with the right parameters; with both twins registered a CPU session runs the
//! CPU kernel; the driver's absence is a clear error, not a panic. On a machine with a GPU the
//! kernel itself is compared with the CPU reference.
//! Needs `cargo xtask build-ops` before the build (the fatbin) and `cargo xtask fetch-ort`.

mod common;

use ort::session::Session;
use ort::value::Tensor;
use smdim_scan_op::cuda::fatbin::{self, EntryKind};
use smdim_scan_op::cuda::{self, KERNEL_NAME};
use smdim_scan_op::testing::{inputs, max_scaled_err, Rng};
use smdim_scan_op::{operator_domain, selective_scan_reference, ScanDims, ScanInputs};

fn embedded() -> &'static [u8] {
    cuda::kernel_image().expect(
        "this build has no CUDA kernel: run `cargo xtask build-ops` before `cargo test` \
         (tests/run_all.sh does)",
    )
}

#[test]
fn the_embedded_fatbin_covers_sm80_to_sm90_and_ships_ptx() {
    let entries = fatbin::entries(embedded()).unwrap();
    let sass: Vec<u32> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Sass)
        .map(|e| e.arch)
        .collect();
    for arch in [80, 86, 89, 90] {
        assert!(sass.contains(&arch), "no sm_{arch} code in {sass:?}");
    }
    for e in entries.iter().filter(|e| e.kind == EntryKind::Sass) {
        assert!(
            e.payload.starts_with(b"\x7fELF"),
            "sm_{} is not a cubin",
            e.arch
        );
    }
    let ptx: Vec<_> = entries
        .iter()
        .filter(|e| e.kind == EntryKind::Ptx)
        .collect();
    assert_eq!(ptx.len(), 1, "one PTX entry for future GPUs");
    assert_eq!(ptx[0].arch, 90);
    let text = ptx[0].ptx_text().expect("uncompressed PTX text");
    let entry = format!(".entry {KERNEL_NAME}(");
    let at = text
        .find(&entry)
        .unwrap_or_else(|| panic!("no `{entry}` in the PTX"));
    // Seven pointers and three ints, in the order the launch passes them.
    let signature = &text[at..at + text[at..].find(')').unwrap()];
    let params: Vec<&str> = signature.lines().filter(|l| l.contains(".param")).collect();
    assert_eq!(params.len(), 10, "{signature}");
    assert!(
        params[..7].iter().all(|p| p.contains(".u64")),
        "{signature}"
    );
    assert!(
        params[7..].iter().all(|p| p.contains(".u32")),
        "{signature}"
    );
}

#[test]
fn a_cpu_session_with_both_twins_runs_the_cpu_kernel() {
    let mut session = Session::builder(common::environment())
        .unwrap()
        .with_operators(operator_domain().unwrap())
        .unwrap()
        .commit_from_memory(include_bytes!("data/selective_scan.onnx"))
        .unwrap();
    let dims = ScanDims::new(1, 8, 16, 64);
    let inp = inputs(&mut Rng(5), dims);
    let shapes = [
        vec![1, 8, 64],
        vec![1, 8, 64],
        vec![8, 16],
        vec![1, 16, 64],
        vec![1, 16, 64],
        vec![8],
    ];
    let tensors: Vec<Tensor<f32>> = inp
        .iter()
        .zip(shapes)
        .map(|(v, s)| Tensor::from_array((s, v.clone())).unwrap())
        .collect();
    let [x, dt, a, b, c, d]: [Tensor<f32>; 6] = tensors.try_into().ok().unwrap();
    let cpu_before = smdim_scan_op::cpu_kernel_runs();
    let outputs = session.run(ort::inputs![x, dt, a, b, c, d]).unwrap();
    let (_, y) = outputs[0].try_extract_tensor::<f32>().unwrap();
    let mut want = vec![0.0; dims.x_len().unwrap()];
    selective_scan_reference(&ScanInputs::new(&inp, dims), &mut want).unwrap();
    assert!(max_scaled_err(y, &want) < 1e-5);
    assert!(
        smdim_scan_op::cpu_kernel_runs() > cpu_before,
        "the CPU twin did not run"
    );
    assert_eq!(
        cuda::kernels_created(),
        0,
        "a CPU session instantiated the CUDA twin"
    );
}

/// Realistic shapes: the shipped configs' inner width and state, short and long sequences,
/// lengths that are not multiples of the tile or of 4 (the scalar load path), batch > 1.
const SHAPES: [ScanDims; 5] = [
    ScanDims::new(1, 256, 16, 2048),
    ScanDims::new(2, 128, 16, 512),
    ScanDims::new(1, 64, 16, 1000),
    ScanDims::new(3, 17, 7, 1531),
    ScanDims::new(1, 5, 64, 3),
];

#[test]
fn the_gpu_kernel_equals_the_reference_or_the_driver_is_missing() {
    match cuda::driver_ready() {
        Err(reason) => {
            // No GPU here (CI): the reason must tell a user what is missing.
            assert!(reason.contains("CUDA driver"), "{reason}");
        }
        Ok(()) => {
            for dims in SHAPES {
                let inp = inputs(&mut Rng(dims.len as u64), dims);
                let scan = ScanInputs::new(&inp, dims);
                let (got, _) = cuda::standalone::scan(&scan, 1).unwrap();
                let mut want = vec![0.0; dims.x_len().unwrap()];
                selective_scan_reference(&scan, &mut want).unwrap();
                let err = max_scaled_err(&got, &want);
                assert!(err < 1e-4, "{dims:?}: scaled error {err}");
            }
        }
    }
}
