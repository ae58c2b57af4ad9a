//! A session asking for CUDA where there is no GPU pack (CI): the CPU library, a CPU session,
//! and the reason. Its own test binary because ONNX Runtime loads once per process.

use std::path::PathBuf;

use smdim_inference::runtime::{loaded_library, GPU_PACK_ENV};
use smdim_inference::{Denoiser, LoadOptions, ModelSource, Provider, ProviderChoice, Style};

fn options(provider: ProviderChoice) -> LoadOptions {
    LoadOptions {
        provider,
        threads: 1,
        ..Default::default()
    }
}

#[test]
fn cuda_without_a_gpu_pack_runs_on_the_cpu_and_says_why() {
    // An empty folder as the only place to look: no pack, whatever this machine has elsewhere.
    let empty = std::env::temp_dir().join(format!("smdim-no-pack-{}", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    std::env::set_var(GPU_PACK_ENV, &empty);
    let tiny = ModelSource::from_onnx_path(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.onnx"),
    );

    let mut denoiser = Denoiser::load(&tiny, &options(ProviderChoice::Cuda))
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-ort` first)"));
    assert_eq!(denoiser.provider, Provider::Cpu);
    assert_eq!(denoiser.fallbacks.len(), 1, "{:?}", denoiser.fallbacks);
    let (skipped, why) = denoiser.fallbacks[0].clone();
    let why = why.to_string();
    assert_eq!(skipped, Provider::Cuda);
    assert!(why.starts_with("GPU pack not found"), "{why}");
    assert!(why.contains(&empty.display().to_string()), "{why}");
    assert!(why.contains("cargo xtask fetch-ort --gpu"), "{why}");
    let library = loaded_library().unwrap();
    assert_eq!(library.file_name().unwrap(), "libonnxruntime.so.1.31.1");
    assert!(!library.starts_with(&empty));
    let mut logits = Vec::new();
    denoiser.logits(&[3; 8], Style::Any, &mut logits).unwrap();
    assert!(!logits.is_empty() && logits.iter().all(|x| x.is_finite()));

    // Auto asks for TensorRT and CUDA: both passed over with the same reason.
    let auto = Denoiser::load(&tiny, &options(ProviderChoice::Auto)).unwrap();
    assert_eq!(auto.provider, Provider::Cpu);
    let skipped: Vec<Provider> = auto.fallbacks.iter().map(|(p, _)| *p).collect();
    assert_eq!(skipped, [Provider::TensorRt, Provider::Cuda]);
    assert!(
        auto.fallbacks.iter().all(|(_, w)| w.to_string() == why),
        "{:?}",
        auto.fallbacks
    );
    std::fs::remove_dir_all(&empty).unwrap();
}
