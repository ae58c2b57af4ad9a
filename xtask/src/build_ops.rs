//! `cargo xtask build-ops`: the C-ABI custom-op library (`plugin/scan-op-lib`, a cdylib
//! exporting `RegisterCustomOps`) in release, copied to `target/ops/<lib>smdim_scan_op<ext>`
//! (`libsmdim_scan_op.so` on Linux). Its path is printed on stdout.
//!
//! The crate is outside the workspace (its ort has the `alternative-backend` feature), so it
//! is built with its own manifest into `target/ops-build/`.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// `target/ops/libsmdim_scan_op.so` (platform prefix and suffix).
pub fn library_path(root: &Path) -> PathBuf {
    root.join("target/ops").join(format!(
        "{}smdim_scan_op{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ))
}

pub fn build(root: &Path) -> Result<PathBuf> {
    let manifest = root.join("plugin/scan-op-lib/Cargo.toml");
    let target_dir = root.join("target/ops-build");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.current_dir(root.join("plugin/scan-op-lib"))
        .arg("build")
        .arg("--release")
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&target_dir)
        // The outer `cargo run` sets these for xtask; they must not leak into this build.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_MANIFEST_DIR");
    eprintln!("build-ops: {cmd:?}");
    let status = cmd.status().context("starting cargo")?;
    if !status.success() {
        bail!("building plugin/scan-op-lib failed: {status}");
    }
    let built = target_dir.join("release").join(format!(
        "{}smdim_scan_op_lib{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    ));
    if !built.is_file() {
        bail!("cargo succeeded but {} is missing", built.display());
    }
    let dest = library_path(root);
    std::fs::create_dir_all(dest.parent().expect("has a parent"))?;
    // Copy to a temporary name and rename, so a process that has the old file mapped keeps it.
    let tmp = dest.with_extension("part");
    std::fs::copy(&built, &tmp)
        .with_context(|| format!("copying {} to {}", built.display(), tmp.display()))?;
    std::fs::rename(&tmp, &dest)?;
    Ok(dest)
}

pub fn main(root: &Path, args: &[String]) -> Result<()> {
    if let Some(arg) = args.first() {
        bail!("build-ops takes no arguments, got {arg:?}");
    }
    let path = build(root)?;
    println!("{}", path.display());
    Ok(())
}
