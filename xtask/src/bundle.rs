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
//! `--target windows` (or `--target x86_64-pc-windows-gnu`) cross-builds for Windows x64 with
//! Debian's mingw-w64 and writes `target/bundled/windows/SMDIM.clap` (a DLL) and
//! `target/bundled/windows/SMDIM.vst3` (`Contents/x86_64-win/`), each with `onnxruntime.dll`
//! from the pinned win_amd64 wheel in an `onnxruntime/` folder beside the plugin binary. The
//! Linux bundles in `target/bundled/` are left as they were.
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

/// The Rust target triple of `--target windows`.
pub const WINDOWS_TRIPLE: &str = "x86_64-pc-windows-gnu";

/// What a bundle is built for: this machine, or Windows x64 from Linux.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Host,
    Windows,
}

impl Target {
    fn vst3_arch_dir(self) -> &'static str {
        if self == Target::Windows || cfg!(target_os = "windows") {
            "x86_64-win"
        } else if cfg!(target_os = "macos") {
            "MacOS"
        } else if cfg!(target_arch = "aarch64") {
            "aarch64-linux"
        } else {
            "x86_64-linux"
        }
    }

    fn ort_platform(self) -> Result<&'static str> {
        match self {
            Target::Host => fetch_ort::host_platform(),
            Target::Windows => Ok("windows"),
        }
    }

    /// The `strip` that understands this target's binaries.
    fn strip(self) -> Option<&'static str> {
        match self {
            Target::Windows if !cfg!(target_os = "windows") => Some("x86_64-w64-mingw32-strip"),
            _ if cfg!(target_os = "windows") => None,
            _ => Some("strip"),
        }
    }
}

/// Splits `--target windows` off the arguments given to cargo; other targets pass through.
fn parse_target(args: &[String]) -> Result<(Target, Vec<String>)> {
    let mut target = Target::Host;
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let (name, step) = match args[i].strip_prefix("--target=") {
            Some(name) => (Some(name.to_string()), 1),
            None if args[i] == "--target" => (args.get(i + 1).cloned(), 2),
            None => (None, 1),
        };
        match name.as_deref() {
            Some("windows") | Some(WINDOWS_TRIPLE) => target = Target::Windows,
            Some(other) => bail!(
                "bundle: unknown --target {other:?}; supported: windows ({WINDOWS_TRIPLE}), or                  none for this machine"
            ),
            None => rest.push(args[i].clone()),
        }
        i += step;
    }
    if target == Target::Windows {
        rest.push(format!("--target={WINDOWS_TRIPLE}"));
    }
    Ok((target, rest))
}

/// The ONNX Runtime library for `target`, fetched if missing.
fn ort_library(root: &Path, target: Target) -> Result<PathBuf> {
    let name = target.ort_platform()?;
    let platform = fetch_ort::platform(name)?;
    let path = fetch_ort::library_path(root, platform);
    if !path.is_file() {
        eprintln!("ONNX Runtime library missing; running fetch-ort");
        fetch_ort::main(root, &["--platform".to_string(), name.to_string()])?;
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
fn strip_debug(binary: &Path, target: Target) -> Result<()> {
    let Some(strip) = target.strip() else {
        return Ok(());
    };
    match std::process::Command::new(strip)
        .arg("--strip-debug")
        .arg(binary)
        .status()
    {
        Ok(status) if status.success() => Ok(()),
        Ok(status) => bail!("strip {} failed: {status}", binary.display()),
        Err(e) => {
            eprintln!(
                "warning: {strip} not available ({e}); {} keeps its debug info",
                binary.display()
            );
            Ok(())
        }
    }
}

pub fn bundle(root: &Path, args: &[String]) -> Result<()> {
    let keep_debug = args.iter().any(|a| a == "--keep-debug");
    let (target, args) = parse_target(args)?;
    // The plugin embeds the CUDA scan kernel when it exists at build time (smdim-scan-op's
    // build.rs). Without it the bundle still works everywhere; GPU sessions then run the scan
    // on the CPU twin.
    if let Err(e) = crate::build_ops::build_cuda_kernel(root) {
        eprintln!("warning: bundling without the CUDA scan kernel: {e:#}");
    }
    let mut forwarded = vec!["bundle".to_string()];
    forwarded.extend(args.iter().filter(|a| *a != "--keep-debug").cloned());
    let host_bundles = bundled_dir(root);
    // nice_plug_xtask writes every target's CLAP to the same `target/bundled/SMDIM.clap`: keep
    // this machine's aside while a Windows build writes there.
    let host_clap = host_bundles.join(format!("{BUNDLE_NAME}.clap"));
    let parked = host_bundles.join(format!(".{BUNDLE_NAME}.clap.host"));
    if target == Target::Windows && host_clap.is_file() {
        std::fs::rename(&host_clap, &parked)?;
    }
    let built = nice_plug_xtask::main_with_args("cargo xtask", forwarded);
    std::env::set_current_dir(root)?;
    let bundled = match target {
        Target::Host => {
            built?;
            host_bundles.clone()
        }
        Target::Windows => {
            let moved = built.and_then(|()| move_windows_bundles(&host_bundles));
            if parked.is_file() {
                std::fs::rename(&parked, &host_clap)?;
            }
            moved?
        }
    };
    // nice_plug_xtask also copies a *binary* named like the package as a "standalone" bundle;
    // ours is the `smdim` CLI of another crate, not a plugin build: remove that copy.
    for stray in [BUNDLE_NAME.to_string(), format!("{BUNDLE_NAME}.exe")] {
        let stray = host_bundles.join(stray);
        if stray.is_file() {
            std::fs::remove_file(&stray)?;
        }
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
    let arch = target.vst3_arch_dir();
    if !keep_debug {
        strip_debug(&clap, target)?;
        let vst3_bin = vst3.join("Contents").join(arch);
        for entry in std::fs::read_dir(&vst3_bin)? {
            let path = entry?.path();
            if path.is_file() {
                strip_debug(&path, target)?;
            }
        }
    }
    let library = ort_library(root, target)?;
    let name = library.file_name().context("library path has no name")?;
    let beside_clap = bundled.join("onnxruntime").join(name);
    copy_file(&library, &beside_clap)?;
    let in_vst3 = vst3
        .join("Contents")
        .join(arch)
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

/// Moves what a Windows build left in `target/bundled` (its CLAP, and the `x86_64-win` part of
/// the VST3 bundle) to `target/bundled/windows/`, which is returned.
fn move_windows_bundles(bundled: &Path) -> Result<PathBuf> {
    let out = bundled.join("windows");
    let clap = bundled.join(format!("{BUNDLE_NAME}.clap"));
    let vst3 = bundled.join(format!("{BUNDLE_NAME}.vst3"));
    let arch = vst3.join("Contents").join("x86_64-win");
    if !clap.is_file() || !arch.is_dir() {
        bail!(
            "the Windows build did not produce {} and {}",
            clap.display(),
            arch.display()
        );
    }
    let out_vst3 = out.join(format!("{BUNDLE_NAME}.vst3"));
    if out_vst3.exists() {
        std::fs::remove_dir_all(&out_vst3)?;
    }
    std::fs::create_dir_all(out_vst3.join("Contents"))?;
    copy_file(&clap, &out.join(format!("{BUNDLE_NAME}.clap")))?;
    std::fs::remove_file(&clap)?;
    std::fs::rename(&arch, out_vst3.join("Contents").join("x86_64-win"))?;
    // A VST3 folder that held only the Windows part (no Linux bundle built yet) goes too.
    let contents = vst3.join("Contents");
    if std::fs::read_dir(&contents)?.next().is_none() {
        std::fs::remove_dir_all(&vst3)?;
    }
    Ok(out)
}

fn home() -> Result<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
        .context("no HOME folder; pass --clap-dir, --vst3-dir and --data-dir")
}

fn default_dirs() -> Result<(PathBuf, PathBuf, PathBuf)> {
    let home = home()?;
    // The plugin's `smdim_inference::runtime::user_data_dir`.
    let data = dirs::data_dir()
        .context("no per-user data folder; pass --data-dir")?
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
