//! A GPU pack whose libraries are not libraries: no panic, the failing file named, and the CPU
//! library runs the session. Its own test binary because ONNX Runtime loads once per process.

use std::path::PathBuf;

use smdim_inference::runtime::{loaded_library, GPU_PACK_ENV};
use smdim_inference::{Denoiser, LoadOptions, ModelSource, Provider, ProviderChoice, Style};

#[test]
fn a_pack_with_garbage_libraries_falls_back_to_the_cpu_naming_the_file() {
    let pack = std::env::temp_dir().join(format!("smdim-broken-pack-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&pack);
    std::fs::create_dir_all(pack.join("cuda")).unwrap();
    std::fs::write(
        pack.join("manifest.json"),
        r#"{"format": 1, "library": "libonnxruntime.so.1.31.1",
            "preload": ["cuda/libcudart.so.13", "cuda/libcublas.so.13"], "tensorrt_preload": []}"#,
    )
    .unwrap();
    std::fs::write(pack.join("cuda/libcudart.so.13"), b"not an ELF file").unwrap();
    std::fs::write(pack.join("cuda/libcublas.so.13"), b"nor this").unwrap();
    std::fs::write(pack.join("libonnxruntime.so.1.31.1"), b"garbage").unwrap();
    std::env::set_var(GPU_PACK_ENV, &pack);

    let options = LoadOptions {
        provider: ProviderChoice::Cuda,
        threads: 1,
        ..Default::default()
    };
    let tiny = ModelSource::from_onnx_path(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.onnx"),
    );
    let mut denoiser = Denoiser::load(&tiny, &options)
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-ort` first)"));
    assert_eq!(denoiser.provider, Provider::Cpu);
    assert_eq!(denoiser.fallbacks.len(), 1, "{:?}", denoiser.fallbacks);
    let (skipped, why) = denoiser.fallbacks[0].clone();
    let why = why.to_string();
    assert_eq!(skipped, Provider::Cuda);
    // The first library in manifest order is the one named, with the loader's own message.
    assert!(why.starts_with("libcudart.so.13 failed to load: "), "{why}");
    assert!(
        why.contains("libcudart.so.13:"),
        "the loader's message names the file: {why}"
    );
    let library = loaded_library().unwrap();
    assert!(!library.starts_with(&pack), "{}", library.display());
    let mut logits = Vec::new();
    denoiser.logits(&[3; 8], Style::Any, &mut logits).unwrap();
    assert!(logits.iter().all(|x| x.is_finite()));
    std::fs::remove_dir_all(&pack).unwrap();
}
