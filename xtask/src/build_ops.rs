//! `cargo xtask build-ops [--no-cuda | --cuda-only]`:
//!
//! 1. the C-ABI custom-op library (`plugin/scan-op-lib`, a cdylib exporting
//!    `RegisterCustomOps`) in release, copied to `target/ops/<lib>smdim_scan_op<ext>`
//!    (`libsmdim_scan_op.so` on Linux). The crate is outside the workspace (its ort has the
//!    `alternative-backend` feature), so it is built with its own manifest into
//!    `target/ops-build/`;
//! 2. the CUDA kernel `plugin/scan-op/cuda/selective_scan.cu` compiled by nvcc into
//!    `target/ops/cuda/selective_scan.fatbin` (SASS for sm_80/86/89/90 and compute_90 PTX that
//!    newer GPUs JIT-compile). nvcc comes from PyPI's NVIDIA wheels (sha256-pinned, unpacked
//!    into `target/cuda-toolchain/`), so no CUDA toolkit and no GPU are needed. The
//!    `smdim-scan-op` crate embeds the fatbin when it is built afterwards (its build.rs).
//!
//! The paths written are printed on stdout, one per line.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::wheels::{self, PinnedWheel};

/// GPU architectures compiled to machine code; `PTX_ARCH` is also shipped as PTX so later GPUs
/// (Blackwell and on) JIT-compile it.
pub const SASS_ARCHS: [u32; 4] = [80, 86, 89, 90];
pub const PTX_ARCH: u32 = 90;

/// nvcc and what it needs from PyPI (CUDA 13.0; the runtime wheel is the GPU pack's own pin,
/// [`wheels::CUDA_RUNTIME_X86_64`]). Hashes from the files PyPI served on 2026-11-27.
const CUDA_TOOLCHAIN_X86_64: [PinnedWheel; 4] = [
    PinnedWheel {
        package: "nvidia-cuda-nvcc",
        version: "13.0.88",
        file: "nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        sha256: "56fe502eb77625a12f25172caa3cdddb4e4c8ba2c8c17dba44b164761b380f03",
    },
    wheels::CUDA_RUNTIME_X86_64,
    PinnedWheel {
        package: "nvidia-cuda-crt",
        version: "13.0.88",
        file: "nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        sha256: "2c8043c7c9e02492716426e9919fc78d2c5b3b2a7a768a88e952676b08aa55a4",
    },
    PinnedWheel {
        package: "nvidia-nvvm",
        version: "13.0.88",
        file: "nvidia_nvvm-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
        sha256: "c5f41ffeb6466944a026dfa5317d7d85355c119bbec279205d22f1869d1054e0",
    },
];

const CUDA_TOOLCHAIN_AARCH64: [PinnedWheel; 4] = [
    PinnedWheel {
        package: "nvidia-cuda-nvcc",
        version: "13.0.88",
        file: "nvidia_cuda_nvcc-13.0.88-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
        sha256: "c7ff28f86a24effdc6c034fa15230c549a273e4771b10a7fec14996f8cf3307f",
    },
    wheels::CUDA_RUNTIME_AARCH64,
    PinnedWheel {
        package: "nvidia-cuda-crt",
        version: "13.0.88",
        file: "nvidia_cuda_crt-13.0.88-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
        sha256: "ee2ea2a97073e02ee62bb27841f437332be2c248e3eac013df07997ada39c003",
    },
    PinnedWheel {
        package: "nvidia-nvvm",
        version: "13.0.88",
        file: "nvidia_nvvm-13.0.88-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
        sha256: "c4376a291d72d22a315d9d2f69bdae8f8cd83a627f75bad395cee49a0fe65dc1",
    },
];

/// The toolchain wheels and pip platform tag for the machine running xtask.
fn cuda_toolchain() -> Result<(&'static [PinnedWheel], &'static str)> {
    match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => Ok((&CUDA_TOOLCHAIN_X86_64, "manylinux2014_x86_64")),
        ("linux", "aarch64") => Ok((&CUDA_TOOLCHAIN_AARCH64, "manylinux2014_aarch64")),
        (os, arch) => bail!(
            "build-ops compiles the CUDA kernel on Linux only (this is {os}/{arch}); the fatbin \
             is GPU code and the same for every host: copy target/ops/cuda/ from a Linux build, \
             or run `cargo xtask build-ops --no-cuda`"
        ),
    }
}

/// The CUDA kernel source.
pub fn kernel_source(root: &Path) -> PathBuf {
    root.join("plugin/scan-op/cuda/selective_scan.cu")
}

/// Where the fatbin goes; `plugin/scan-op/build.rs` reads the same path.
pub fn fatbin_path(root: &Path) -> PathBuf {
    root.join("target/ops/cuda/selective_scan.fatbin")
}

/// Unpacks nvcc from PyPI into `target/cuda-toolchain/` (once) and returns the nvcc binary.
fn install_nvcc(root: &Path) -> Result<PathBuf> {
    let (pins, pip_platform) = cuda_toolchain()?;
    let dir = root.join("target/cuda-toolchain");
    let nvcc = dir.join("nvidia/cu13/bin/nvcc");
    if wheels::is_complete(&dir, pins) && nvcc.is_file() {
        return Ok(nvcc);
    }
    let _ = std::fs::remove_dir_all(&dir);
    let paths = wheels::obtain_all(&root.join("target/cuda-wheels"), pins, pip_platform)?;
    for path in &paths {
        wheels::extract(path, &dir, |name| {
            Ok(name.starts_with("nvidia/").then(|| PathBuf::from(name)))
        })?;
    }
    if !nvcc.is_file() {
        bail!("the nvcc wheel did not contain {}", nvcc.display());
    }
    wheels::mark_complete(&dir, pins)?;
    Ok(nvcc)
}

/// The nvcc arguments that turn `source` into the fatbin at `output`.
pub fn nvcc_args(source: &Path, output: &Path) -> Vec<String> {
    let mut args = vec![
        "-fatbin".to_string(),
        "-O3".into(),
        "-std=c++17".into(),
        // Uncompressed: the PTX stays readable text inside (the tests check its entry point),
        // and the whole file is ~130 KB.
        "--no-compress".into(),
    ];
    for arch in SASS_ARCHS {
        args.push("-gencode".into());
        args.push(format!("arch=compute_{arch},code=sm_{arch}"));
    }
    args.push("-gencode".into());
    args.push(format!("arch=compute_{PTX_ARCH},code=compute_{PTX_ARCH}"));
    args.push("-o".into());
    args.push(output.display().to_string());
    args.push(source.display().to_string());
    args
}

/// What the fatbin is built from: the source's hash, nvcc's arguments and the toolchain pins.
fn kernel_stamp(root: &Path) -> Result<String> {
    let (pins, _) = cuda_toolchain()?;
    Ok(format!(
        "{}\n{}\n{}",
        crate::fetch_ort::sha256_file(&kernel_source(root))?,
        nvcc_args(Path::new("SOURCE"), Path::new("OUTPUT")).join(" "),
        wheels::stamp(pins)
    ))
}

/// Compiles the CUDA kernel to `target/ops/cuda/selective_scan.fatbin`, unless the fatbin there
/// was built from the same source, arguments and toolchain (`demo` and `bundle` both ask, and
/// an untouched fatbin keeps cargo from rebuilding the crates that embed it).
pub fn build_cuda_kernel(root: &Path) -> Result<PathBuf> {
    let dest = fatbin_path(root);
    let stamp_path = dest.with_extension("stamp");
    let stamp = kernel_stamp(root)?;
    if dest.is_file() && std::fs::read_to_string(&stamp_path).is_ok_and(|s| s == stamp) {
        eprintln!("build-ops: {} is up to date", dest.display());
        return Ok(dest);
    }
    let nvcc = install_nvcc(root)?;
    std::fs::create_dir_all(dest.parent().expect("has a parent"))?;
    let tmp = dest.with_extension("part");
    let mut cmd = Command::new(&nvcc);
    cmd.args(nvcc_args(&kernel_source(root), &tmp));
    eprintln!("build-ops: {cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", nvcc.display()))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let hint = if stderr.contains("failed to preprocess host compiler properties")
            || stderr.contains("gcc")
            || stderr.contains("g++")
        {
            "\n(nvcc needs a host C++ compiler: `apt-get install g++`)"
        } else {
            ""
        };
        bail!("nvcc failed ({}):\n{stderr}{hint}", out.status);
    }
    std::fs::rename(&tmp, &dest)?;
    std::fs::write(&stamp_path, stamp)?;
    Ok(dest)
}

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
    let (mut library, mut cuda) = (true, true);
    for arg in args {
        match arg.as_str() {
            "--no-cuda" => cuda = false,
            "--cuda-only" => library = false,
            other => bail!("build-ops: unknown argument {other:?} (--no-cuda, --cuda-only)"),
        }
    }
    if !library && !cuda {
        bail!("build-ops: --no-cuda and --cuda-only together build nothing");
    }
    // The kernel first: the library embeds it (smdim-scan-op's build.rs).
    if cuda {
        println!("{}", build_cuda_kernel(root)?.display());
    }
    if library {
        println!("{}", build(root)?.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_architecture_is_compiled_and_ptx_is_kept() {
        let args = nvcc_args(Path::new("k.cu"), Path::new("k.fatbin"));
        for arch in SASS_ARCHS {
            assert!(
                args.contains(&format!("arch=compute_{arch},code=sm_{arch}")),
                "{args:?}"
            );
        }
        assert!(args.contains(&format!("arch=compute_{PTX_ARCH},code=compute_{PTX_ARCH}")));
        assert!(args.contains(&"--no-compress".to_string()));
        assert_eq!(args.last().map(String::as_str), Some("k.cu"));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn the_stamp_follows_the_kernel_source() {
        let root = std::env::temp_dir().join(format!("xtask-stamp-{}", std::process::id()));
        let source = kernel_source(&root);
        std::fs::create_dir_all(source.parent().unwrap()).unwrap();
        std::fs::write(&source, "__global__ void k() {}").unwrap();
        let before = kernel_stamp(&root).unwrap();
        assert_eq!(kernel_stamp(&root).unwrap(), before);
        std::fs::write(&source, "__global__ void k(int) {}").unwrap();
        assert_ne!(kernel_stamp(&root).unwrap(), before);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_toolchain_and_the_gpu_pack_share_one_cuda_runtime_pin() {
        let runtime = |pins: &[PinnedWheel]| -> Vec<(&str, &str, &str)> {
            pins.iter()
                .filter(|w| w.package == "nvidia-cuda-runtime")
                .map(|w| (w.version, w.file, w.sha256))
                .collect()
        };
        let x86 = wheels::CUDA_RUNTIME_X86_64;
        let pin = [(x86.version, x86.file, x86.sha256)];
        assert_eq!(runtime(&CUDA_TOOLCHAIN_X86_64), pin);
        assert_eq!(runtime(crate::gpu_pack::WHEELS), pin);
        let arm = wheels::CUDA_RUNTIME_AARCH64;
        assert_eq!(
            runtime(&CUDA_TOOLCHAIN_AARCH64),
            [(arm.version, arm.file, arm.sha256)]
        );
        assert_eq!(arm.version, x86.version);
    }

    #[test]
    fn toolchain_pins_are_well_formed() {
        for pins in [&CUDA_TOOLCHAIN_X86_64, &CUDA_TOOLCHAIN_AARCH64] {
            for w in pins {
                assert_eq!(w.sha256.len(), 64, "{}", w.file);
                assert!(w.sha256.bytes().all(|b| b.is_ascii_hexdigit()));
                let dist = w.package.replace('-', "_");
                assert!(
                    w.file.starts_with(&format!("{dist}-{}-", w.version)),
                    "{}",
                    w.file
                );
            }
        }
        assert!(CUDA_TOOLCHAIN_X86_64
            .iter()
            .all(|w| w.file.contains("x86_64")));
        assert!(CUDA_TOOLCHAIN_AARCH64
            .iter()
            .all(|w| w.file.contains("aarch64")));
    }
}
