//! Embeds the CUDA kernel built by `cargo xtask build-ops` (a fatbin of
//! `cuda/selective_scan.cu`) so users need no CUDA toolkit. Without it the crate still builds;
//! the CUDA twin then reports that it was built without the kernel.
//!
//! `SMDIM_CUDA_FATBIN` names another fatbin. Otherwise `target/ops/cuda/` of this workspace is
//! watched (created if missing, so cargo notices when build-ops writes the file later).

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out =
        PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo")).join("selective_scan.fatbin");
    println!("cargo:rerun-if-env-changed=SMDIM_CUDA_FATBIN");
    println!("cargo:rerun-if-changed=build.rs");
    let source = match env::var_os("SMDIM_CUDA_FATBIN") {
        Some(path) => {
            let path = PathBuf::from(path);
            assert!(
                path.is_file(),
                "SMDIM_CUDA_FATBIN={} is not a file",
                path.display()
            );
            Some(path)
        }
        None => {
            let dir = manifest.join("../../target/ops/cuda");
            let _ = fs::create_dir_all(&dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            Some(dir.join("selective_scan.fatbin")).filter(|p| p.is_file())
        }
    };
    match source {
        Some(path) => {
            println!("cargo:rerun-if-changed={}", path.display());
            fs::copy(&path, &out).unwrap_or_else(|e| panic!("copying {}: {e}", path.display()));
        }
        None => fs::write(&out, b"").expect("writing OUT_DIR"),
    }
}
