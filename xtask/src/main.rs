//! `cargo xtask <command>`: build chores that need more than cargo.
//!
//! - `demo`: the main job: fetch ONNX Runtime, build the CLI, generate an 8-bar phrase with the
//!   shipped model, bundle the plugin.
//! - `fetch-ort [--platform P] [--wheel FILE]`: the ONNX Runtime library from the PyPI wheel
//!   (sha256-pinned) into `target/onnxruntime/<platform>/` (see `fetch_ort.rs`).
//! - `fetch-ort --gpu`: the optional GPU pack (onnxruntime-gpu, CUDA 13, cuDNN 9; Linux x86_64)
//!   into `target/onnxruntime/linux-gpu/` (see `gpu_pack.rs`).
//! - `build-ops [--no-cuda | --cuda-only]`: the `smdim::SelectiveScan` custom-op library and the
//!   CUDA kernel (nvcc from PyPI) into `target/ops/` (see `build_ops.rs`).
//!
//! - `bundle <package> [--release]`: the plugin's CLAP and VST3 bundles with the ONNX Runtime
//!   library inside/beside them (see `bundle.rs`).
//! - `install [--clap-dir D] [--vst3-dir D] [--data-dir D] [--gpu]`: copy the bundles to the
//!   user's plugin folders (`--gpu`: and the GPU pack to the data folder).

mod build_ops;
mod bundle;
mod fetch_ort;
mod gpu_pack;
mod wheels;

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

/// The main job: the ONNX Runtime library, the CLI, an 8-bar phrase from the shipped model,
/// and the plugin bundles.
fn demo(root: &Path) -> Result<()> {
    fetch_ort::main(root, &[])?;
    // Before any build, so the CLI and the plugin embed the same CUDA kernel (and the crates
    // are not rebuilt when `bundle` compiles it).
    if let Err(e) = build_ops::build_cuda_kernel(root) {
        eprintln!("warning: building without the CUDA scan kernel: {e:#}");
    }
    run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "smdim-cli",
    ]))?;
    let smdim = root.join("target/release/smdim");
    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir)?;
    let mid = out_dir.join("phrase.mid");
    run(Command::new(&smdim)
        .args([
            "generate", "--bars", "8", "--tempo", "120", "--seed", "7", "--out",
        ])
        .arg(&mid))?;
    run(Command::new(&smdim).arg("midi-info").arg(&mid))?;
    bundle::bundle(root, &["smdim".to_string(), "--release".to_string()])?;
    println!(
        "\nphrase: {}\nplugin: {} and {} (`cargo xtask install` copies them to your plugin folders)",
        mid.display(),
        root.join("target/bundled/SMDIM.clap").display(),
        root.join("target/bundled/SMDIM.vst3").display()
    );
    Ok(())
}

fn main() -> Result<()> {
    let root = workspace_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&root),
        Some("fetch-ort") => fetch_ort::main(&root, &args[1..]),
        Some("build-ops") => build_ops::main(&root, &args[1..]),
        Some("bundle") => bundle::bundle(&root, &args[1..]),
        Some("install") => bundle::install(&root, &args[1..]),
        None | Some("help") | Some("--help") => {
            println!(
                "usage: cargo xtask <command>\n\ncommands:\n  \
                 demo       the main job: ONNX Runtime, CLI, an 8-bar phrase, the plugin bundles\n  \
                 fetch-ort  [--platform linux|linux-aarch64|windows|macos-arm64] [--wheel FILE]\n             \
                 the ONNX Runtime {} library from PyPI into target/onnxruntime/<platform>/\n  \
                 fetch-ort --gpu  the optional GPU pack (CUDA 13 + cuDNN 9, 1.4 GB download, Linux x86_64)\n             \
                 into target/onnxruntime/linux-gpu/ (`install --gpu` copies it for the plugin)\n  \
                 build-ops  [--no-cuda|--cuda-only] the smdim custom-op library and CUDA kernel into target/ops/\n  \
                 bundle     smdim --release: target/bundled/SMDIM.clap and SMDIM.vst3 with ONNX Runtime\n  \
                 install    [--clap-dir D] [--vst3-dir D] [--data-dir D] [--gpu]: copy the bundles to the plugin folders\n  \
                 help       this text",
                fetch_ort::ORT_VERSION
            );
            Ok(())
        }
        Some(other) => bail!("unknown xtask command {other:?}; run `cargo xtask help`"),
    }
}
