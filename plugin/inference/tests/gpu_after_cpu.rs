//! ONNX Runtime loads once per process: after a CPU session loaded the CPU library, asking for
//! CUDA cannot switch to the GPU pack, and the reason says to restart. Its own test binary.

use std::path::PathBuf;

use smdim_inference::runtime::GPU_PACK_ENV;
use smdim_inference::{Denoiser, LoadOptions, ModelSource, Provider, ProviderChoice};

#[test]
fn cuda_after_a_cpu_session_asks_for_a_restart() {
    // A pack that exists (a manifest) but is never opened: its libraries are garbage.
    let pack = std::env::temp_dir().join(format!("smdim-later-pack-{}", std::process::id()));
    std::fs::create_dir_all(pack.join("cuda")).unwrap();
    std::fs::write(
        pack.join("manifest.json"),
        r#"{"library": "libonnxruntime.so.1.31.1", "preload": ["cuda/libcudart.so.13"]}"#,
    )
    .unwrap();
    std::fs::write(pack.join("cuda/libcudart.so.13"), b"garbage").unwrap();
    std::env::set_var(GPU_PACK_ENV, &pack);
    let tiny = ModelSource::from_onnx_path(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.onnx"),
    );
    let options = |provider| LoadOptions {
        provider,
        threads: 1,
        ..Default::default()
    };

    let cpu = Denoiser::load(&tiny, &options(ProviderChoice::Cpu))
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-ort` first)"));
    assert_eq!(cpu.provider, Provider::Cpu);
    assert!(cpu.fallbacks.is_empty());

    let cuda = Denoiser::load(&tiny, &options(ProviderChoice::Cuda)).unwrap();
    assert_eq!(cuda.provider, Provider::Cpu);
    assert_eq!(cuda.fallbacks.len(), 1);
    let (skipped, why) = &cuda.fallbacks[0];
    let why = why.to_string();
    assert_eq!(*skipped, Provider::Cuda);
    assert!(why.contains("restart"), "{why}");
    assert!(why.contains(&pack.display().to_string()), "{why}");
    assert!(
        !why.contains("failed to load"),
        "the pack is never opened: {why}"
    );
    std::fs::remove_dir_all(&pack).unwrap();
}
