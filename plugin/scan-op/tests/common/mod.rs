//! ONNX Runtime for the tests: the library from `cargo xtask fetch-ort`, loaded once.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use ort::environment::Environment;

/// `ORT_DYLIB_PATH` if set, else the library `cargo xtask fetch-ort` extracts for this host.
pub fn ort_library() -> PathBuf {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let (platform, name) = match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => ("linux", "libonnxruntime.so.1.31.1"),
        ("linux", "aarch64") => ("linux-aarch64", "libonnxruntime.so.1.31.1"),
        ("windows", _) => ("windows", "onnxruntime.dll"),
        ("macos", _) => ("macos-arm64", "libonnxruntime.1.31.1.dylib"),
        (os, arch) => panic!("no ONNX Runtime library known for {os}/{arch}; set ORT_DYLIB_PATH"),
    };
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/onnxruntime")
        .join(platform)
        .join(name)
}

/// The process's ONNX Runtime environment. Panics (the test FAILS) when the library is missing.
pub fn environment() -> &'static Environment {
    static ENV: OnceLock<Environment> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = ort_library();
        assert!(
            path.is_file(),
            "ONNX Runtime library not found at {}: run `cargo xtask fetch-ort` \
             (or set ORT_DYLIB_PATH to libonnxruntime)",
            path.display()
        );
        ort::init_from(&path)
            .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
            .with_name("smdim-scan-op-tests")
            .build()
            .expect("ONNX Runtime environment")
    })
}
