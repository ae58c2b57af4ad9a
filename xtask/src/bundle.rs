//! `cargo xtask bundle <package> [cargo build args]` and `cargo xtask install`.
//!
//! `bundle` delegates building and bundling to `nice_plug_xtask` (CLAP + VST3 named by
//! `bundler.toml`), then puts the ONNX Runtime library where the plugin looks for it (see
//! `smdim_inference::runtime::candidate_paths`: `<dir of the plugin binary>/onnxruntime/`):
//!
//! - `target/bundled/onnxruntime/<lib>` beside `SMDIM.clap` (a CLAP is a single file);
//! - `target/bundled/SMDIM.vst3/Contents/<arch>-linux/onnxruntime/<lib>` inside the VST3.
//!
//! The plugin binaries are then stripped of debug info (`strip --strip-debug`: symbols stay, so
//! backtraces keep function names; about 59 MB → 11 MB); `--keep-debug` skips that.
//!
//! `install [--clap-dir D] [--vst3-dir D] [--data-dir D]` copies both bundles to the user's
//! plugin folders (`~/.clap`, `~/.vst3` on Linux), the library beside the CLAP, and the library
//! into the per-user data folder (`$XDG_DATA_HOME/smdim/onnxruntime`) that the plugin also
//! searches. `--gpu` also copies the GPU pack (`cargo xtask fetch-ort --gpu`, about 2 GB) to
//! `<data folder>/onnxruntime-gpu`, where the plugin looks for it when a GPU provider is chosen.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::fetch_ort;

/// The plugin's bundle name (must match `[smdim] name` in `bundler.toml`).
pub const BUNDLE_NAME: &str = "SMDIM";

fn vst3_arch_dir() -> &'static str {
    if cfg!(target_os = "windows") {
        "x86_64-win"
    } else if cfg!(target_os = "macos") {
        "MacOS"
    } else if cfg!(target_arch = "aarch64") {
        "aarch64-linux"
    } else {
        "x86_64-linux"
    }
}

/// The ONNX Runtime library for this machine, fetched if missing.
fn ort_library(root: &Path) -> Result<PathBuf> {
    let platform = fetch_ort::platform(fetch_ort::host_platform()?)?;
    let path = fetch_ort::library_path(root, platform);
    if !path.is_file() {
        eprintln!("ONNX Runtime library missing; running fetch-ort");
        fetch_ort::main(root, &[])?;
    }
    if !path.is_file() {
        bail!("fetch-ort did not produce {}", path.display());
    }
    Ok(path)
}

fn copy_file(from: &Path, to: &Path) -> Result<()> {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    // Remove first: overwriting a library a running host has mapped would corrupt it.
    if to.exists() {
        std::fs::remove_file(to).with_context(|| format!("removing {}", to.display()))?;
    }
    std::fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            copy_file(&entry.path(), &target)?;
        }
    }
    Ok(())
}

pub fn bundled_dir(root: &Path) -> PathBuf {
    root.join("target/bundled")
}

/// `strip --strip-debug` in place; a missing `strip` only warns (the bundle still works).
fn strip_debug(binary: &Path) -> Result<()> {
    if cfg!(target_os = "windows") {
        return Ok(());
    }
    match std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg(binary)
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("strip {} failed: {status}", binary.display()),
        Err(e) => {
            eprintln!(
                "warning: strip not available ({e}); {} keeps its debug info",
                binary.display()
            );
            Ok(())
        }
    }
}

pub fn bundle(root: &Path, args: &[String]) -> Result<()> {
    let keep_debug = args.iter().any(|a| a == "--keep-debug");
    // The plugin embeds the CUDA scan kernel when it exists at build time (smdim-scan-op's
    // build.rs). Without it the bundle still works everywhere; GPU sessions then run the scan
    // on the CPU twin.
    if let Err(e) = crate::build_ops::build_cuda_kernel(root) {
        eprintln!("warning: bundling without the CUDA scan kernel: {e:#}");
    }
    let mut forwarded = vec!["bundle".to_string()];
    forwarded.extend(args.iter().filter(|a| *a != "--keep-debug").cloned());
    nice_plug_xtask::main_with_args("cargo xtask", forwarded)?;
    std::env::set_current_dir(root)?;

    let bundled = bundled_dir(root);
    // nice_plug_xtask also copies a *binary* named like the package as a "standalone" bundle;
    // ours is the `smdim` CLI of another crate, not a plugin build: remove that copy.
    let stray = bundled.join(BUNDLE_NAME);
    if stray.is_file() {
        std::fs::remove_file(&stray)?;
    }
    let clap = bundled.join(format!("{BUNDLE_NAME}.clap"));
    let vst3 = bundled.join(format!("{BUNDLE_NAME}.vst3"));
    if !clap.is_file() || !vst3.is_dir() {
        bail!(
            "bundling did not produce {} and {}",
            clap.display(),
            vst3.display()
        );
    }
    if !keep_debug {
        strip_debug(&clap)?;
        let vst3_bin = vst3.join("Contents").join(vst3_arch_dir());
        for entry in std::fs::read_dir(&vst3_bin)? {
            let path = entry?.path();
            if path.is_file() {
                strip_debug(&path)?;
            }
        }
    }
    let library = ort_library(root)?;
    let name = library.file_name().context("library path has no name")?;
    let beside_clap = bundled.join("onnxruntime").join(name);
    copy_file(&library, &beside_clap)?;
    let in_vst3 = vst3
        .join("Contents")
        .join(vst3_arch_dir())
        .join("onnxruntime")
        .join(name);
    copy_file(&library, &in_vst3)?;
    eprintln!(
        "ONNX Runtime: {} and {}",
        beside_clap.display(),
        in_vst3.display()
    );
    Ok(())
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .context("no HOME folder; pass --clap-dir, --vst3-dir and --data-dir")
}

fn default_dirs() -> Result<(PathBuf, PathBuf, PathBuf)> {
    let home = home()?;
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".local/share"))
        .join("smdim");
    if cfg!(target_os = "macos") {
        let plugins = home.join("Library/Audio/Plug-Ins");
        Ok((plugins.join("CLAP"), plugins.join("VST3"), data))
    } else if cfg!(target_os = "windows") {
        let common = std::env::var_os("COMMONPROGRAMFILES")
            .map(PathBuf::from)
            .context("COMMONPROGRAMFILES is not set")?;
        Ok((common.join("CLAP"), common.join("VST3"), data))
    } else {
        Ok((home.join(".clap"), home.join(".vst3"), data))
    }
}

pub fn install(root: &Path, args: &[String]) -> Result<()> {
    let (mut clap_dir, mut vst3_dir, mut data_dir) = default_dirs()?;
    let mut gpu = false;
    let mut i = 0;
    while i < args.len() {
        if args[i] == "--gpu" {
            gpu = true;
            i += 1;
            continue;
        }
        let value = args.get(i + 1).map(PathBuf::from);
        match (args[i].as_str(), value) {
            ("--clap-dir", Some(v)) => clap_dir = v,
            ("--vst3-dir", Some(v)) => vst3_dir = v,
            ("--data-dir", Some(v)) => data_dir = v,
            (other, _) => bail!("install: unexpected argument {other:?}"),
        }
        i += 2;
    }
    let bundled = bundled_dir(root);
    let clap = bundled.join(format!("{BUNDLE_NAME}.clap"));
    let vst3 = bundled.join(format!("{BUNDLE_NAME}.vst3"));
    let runtime = bundled.join("onnxruntime");
    let pack = root.join(crate::gpu_pack::PACK_DIR);
    if gpu && !pack.join("manifest.json").is_file() {
        bail!(
            "no GPU pack in {}: run `cargo xtask fetch-ort --gpu` first",
            pack.display()
        );
    }
    if !clap.is_file() || !vst3.is_dir() || !runtime.is_dir() {
        bail!(
            "no bundles in {}: run `cargo xtask bundle smdim --release` first",
            bundled.display()
        );
    }
    copy_file(&clap, &clap_dir.join(format!("{BUNDLE_NAME}.clap")))?;
    copy_dir(&runtime, &clap_dir.join("onnxruntime"))?;
    let vst3_target = vst3_dir.join(format!("{BUNDLE_NAME}.vst3"));
    if vst3_target.exists() {
        std::fs::remove_dir_all(&vst3_target)
            .with_context(|| format!("removing the old {}", vst3_target.display()))?;
    }
    copy_dir(&vst3, &vst3_target)?;
    copy_dir(&runtime, &data_dir.join("onnxruntime"))?;
    println!(
        "installed {}",
        clap_dir.join(format!("{BUNDLE_NAME}.clap")).display()
    );
    println!("installed {}", vst3_target.display());
    println!(
        "ONNX Runtime also in {}",
        data_dir.join("onnxruntime").display()
    );
    if gpu {
        let target = data_dir.join("onnxruntime-gpu");
        if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("removing the old {}", target.display()))?;
        }
        copy_dir(&pack, &target)?;
        println!("GPU pack in {}", target.display());
    }
    Ok(())
}
