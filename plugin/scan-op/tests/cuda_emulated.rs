//! The real CUDA kernel source (`cuda/selective_scan.cu`), compiled with g++ against a small
//! CPU emulation of CUDA (`tests/emulation/`: one thread per CUDA thread, barriers for
//! `__syncthreads` and warp shuffles), must equal the sequential reference. Without a GPU this
//! is what runs the kernel's own indexing, tiling, float4 and scalar loads, carry between tiles
//! and synchronisation. Needs g++ (C++20); tests/run_all.sh installs it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use smdim_scan_op::testing::{inputs, max_scaled_err, Rng};
use smdim_scan_op::{selective_scan_reference, ScanDims, ScanInputs};

fn emulator() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/emulation");
        let bin = Path::new(env!("CARGO_TARGET_TMPDIR")).join("smdim_scan_kernel_emulated");
        let out = Command::new(std::env::var("CXX").unwrap_or_else(|_| "g++".into()))
            .args(["-std=c++20", "-O2", "-pthread", "-Wall", "-Wno-unknown-pragmas", "-Werror"])
            .arg("-o")
            .arg(&bin)
            .arg(dir.join("run_kernel.cpp"))
            .output()
            .expect("g++ not found: the emulation test compiles the CUDA kernel as C++ (apt-get install g++)");
        assert!(
            out.status.success(),
            "compiling the kernel under emulation failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bin
    })
}

fn run_emulated(inp: &[Vec<f32>; 6], dims: ScanDims, tag: &str) -> Vec<f32> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let input = dir.join(format!("emu-in-{tag}-{}.bin", std::process::id()));
    let output = dir.join(format!("emu-out-{tag}-{}.bin", std::process::id()));
    let mut bytes = Vec::new();
    for v in [dims.batch, dims.channels, dims.state, dims.len] {
        bytes.extend_from_slice(&(v as i32).to_le_bytes());
    }
    for tensor in inp {
        for f in tensor {
            bytes.extend_from_slice(&f.to_le_bytes());
        }
    }
    std::fs::write(&input, bytes).unwrap();
    let status = Command::new(emulator())
        .arg(&input)
        .arg(&output)
        .status()
        .unwrap();
    assert!(
        status.success(),
        "{dims:?}: emulated kernel exited with {status}"
    );
    let y: Vec<f32> = std::fs::read(&output)
        .unwrap()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    y
}

#[test]
fn the_kernel_source_under_emulation_equals_the_reference() {
    let mut rng = Rng(77);
    // Two tiles and a partial third (carry), len % 4 != 0 (scalar loads), one step, several
    // batches and channels (grid indexing), state sizes 1..64.
    for (i, dims) in [
        ScanDims::new(1, 2, 16, 2048),
        ScanDims::new(2, 3, 7, 1531),
        ScanDims::new(1, 1, 32, 2600),
        ScanDims::new(3, 2, 1, 5),
        ScanDims::new(1, 1, 4, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let inp = inputs(&mut rng, dims);
        let got = run_emulated(&inp, dims, &i.to_string());
        let mut want = vec![0.0; dims.x_len().unwrap()];
        selective_scan_reference(&ScanInputs::new(&inp, dims), &mut want).unwrap();
        let err = max_scaled_err(&got, &want);
        assert!(err < 1e-4, "{dims:?}: scaled error {err}");
    }
}
