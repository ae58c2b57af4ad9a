//! Wheels from PyPI pinned by sha256: downloaded with pip (no other host is reachable from a
//! build machine), checked, and unpacked with their file modes.
//!
//! Used for the CUDA compiler (`build-ops`) and the GPU runtime pack (`fetch-ort --gpu`).
//! The ONNX Runtime CPU wheel has its own, older path in `fetch_ort.rs`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

use crate::fetch_ort::sha256_file;

/// One wheel file, pinned.
#[derive(Debug, Clone, Copy)]
pub struct PinnedWheel {
    /// Distribution name as pip knows it.
    pub package: &'static str,
    pub version: &'static str,
    /// The exact file PyPI serves for the platform it is pinned for.
    pub file: &'static str,
    pub sha256: &'static str,
}

/// `nvidia-cuda-runtime` 13.0.96 (CUDA 13.0 update 2), pinned once: `build-ops` unpacks it
/// beside nvcc (the runtime headers it compiles against) and the GPU pack ships its
/// `libcudart` (`gpu_pack::WHEELS`). Hashes from the files PyPI served on 2026-11-27.
pub const CUDA_RUNTIME_X86_64: PinnedWheel = PinnedWheel {
    package: "nvidia-cuda-runtime",
    version: "13.0.96",
    file: "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
    sha256: "7f82250d7782aa23b6cfe765ecc7db554bd3c2870c43f3d1821f1d18aebf0548",
};

/// [`CUDA_RUNTIME_X86_64`] for Linux aarch64 (`build-ops` only; the GPU pack is x86_64).
pub const CUDA_RUNTIME_AARCH64: PinnedWheel = PinnedWheel {
    package: "nvidia-cuda-runtime",
    version: "13.0.96",
    file: "nvidia_cuda_runtime-13.0.96-py3-none-manylinux2014_aarch64.manylinux_2_17_aarch64.whl",
    sha256: "ef9bcbe90493a2b9d810e43d249adb3d02e98dd30200d86607d8d02687c43f55",
};

/// The Python interpreter that runs pip (`PYTHON`, default `python3`).
pub fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Downloads `wheels` (those not already cached with the right hash) into `cache` with one pip
/// call, then checks every hash. `pip_platform` is pip's `--platform` tag (pip may not accept a
/// wheel of an older manylinux tag for it: group wheels by the tag they were pinned with).
pub fn obtain_all(
    cache: &Path,
    wheels: &[PinnedWheel],
    pip_platform: &str,
) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let missing: Vec<&PinnedWheel> = wheels
        .iter()
        .filter(|w| !hash_ok(&cache.join(w.file), w.sha256))
        .collect();
    if !missing.is_empty() {
        for w in &missing {
            let _ = fs::remove_file(cache.join(w.file));
        }
        pip_download(&python(), cache, &missing, pip_platform)?;
    }
    let mut paths = Vec::with_capacity(wheels.len());
    for w in wheels {
        let path = cache.join(w.file);
        if !path.is_file() {
            bail!(
                "pip finished but {} is not there (pip picked another file for this platform?)",
                path.display()
            );
        }
        require_hash(&path, w.sha256, w.file)?;
        paths.push(path);
    }
    Ok(paths)
}

/// One `pip download` of exactly `wheels` (no dependencies) into `cache`.
fn pip_download(
    python: &str,
    cache: &Path,
    wheels: &[&PinnedWheel],
    pip_platform: &str,
) -> Result<()> {
    let mut cmd = Command::new(python);
    cmd.args([
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--platform",
        pip_platform,
        "--python-version",
        "3.12",
        "--disable-pip-version-check",
        "-d",
    ])
    .arg(cache);
    for w in wheels {
        cmd.arg(format!("{}=={}", w.package, w.version));
    }
    eprintln!("xtask: {cmd:?}");
    let out = match cmd.output() {
        Ok(out) => out,
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "`{python}` not found: downloading wheels needs Python 3 with pip \
             (set PYTHON=/path/to/python3)"
        ),
        Err(e) => return Err(e).with_context(|| format!("starting {python}")),
    };
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(12).collect();
    let tail = tail.into_iter().rev().collect::<Vec<_>>().join("\n");
    if stderr.contains("No module named pip") {
        bail!("`{python}` has no pip module: install pip (e.g. `{python} -m ensurepip`) and retry\n{tail}");
    }
    bail!(
        "pip could not download {} ({}): is PyPI reachable (network, proxy, pip index \
         settings)?\npip said:\n{tail}",
        wheels
            .iter()
            .map(|w| format!("{}=={}", w.package, w.version))
            .collect::<Vec<_>>()
            .join(" "),
        out.status
    )
}

/// Deletes `path` and fails unless it has the pinned hash, so a bad download or extraction is
/// never left where a later run would pick it up. `what` names it in the error.
pub fn require_hash(path: &Path, want: &str, what: &str) -> Result<()> {
    let got = sha256_file(path)?;
    if got != want {
        fs::remove_file(path)?;
        bail!("{what} has sha256 {got}, expected {want}: refusing it (deleted)");
    }
    Ok(())
}

/// The file exists and has the pinned hash.
pub fn hash_ok(path: &Path, want: &str) -> bool {
    path.is_file() && sha256_file(path).map(|h| h == want).unwrap_or(false)
}

/// Unpacks members of `wheel` into `dest`, keeping Unix file modes (nvcc's tools must stay
/// executable). `target(name)` says where a member goes, relative to `dest` (`None`: left
/// out), so callers can lay files out without unpacking twice. Member names that would leave
/// the archive's root are refused. Returns the number of files written.
pub fn extract(
    wheel: &Path,
    dest: &Path,
    mut target: impl FnMut(&str) -> Result<Option<PathBuf>>,
) -> Result<usize> {
    let file = fs::File::open(wheel).with_context(|| format!("opening {}", wheel.display()))?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip", wheel.display()))?;
    let mut written = 0;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i)?;
        let name = entry.name()?.into_owned();
        if entry.is_dir() {
            continue;
        }
        if entry.enclosed_name().is_none() {
            bail!("{} has an unsafe member name {name:?}", wheel.display());
        }
        let Some(relative) = target(&name)? else {
            continue;
        };
        let out_path = dest.join(relative);
        fs::create_dir_all(out_path.parent().expect("member has a folder"))?;
        let tmp = out_path.with_extension("part");
        {
            let mut out =
                fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
            io::copy(&mut entry, &mut out)?;
        }
        #[cfg(unix)]
        if let Some(mode) = entry.unix_mode() {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&tmp, fs::Permissions::from_mode(mode & 0o777))?;
        }
        fs::rename(&tmp, &out_path)?;
        written += 1;
    }
    Ok(written)
}

/// A marker file saying `dest` holds exactly `wheels`; lets repeated runs skip the unpacking.
pub fn stamp(wheels: &[PinnedWheel]) -> String {
    wheels
        .iter()
        .map(|w| format!("{} {}\n", w.file, w.sha256))
        .collect()
}

/// True when `dir/.complete` records exactly `wheels`.
pub fn is_complete(dir: &Path, wheels: &[PinnedWheel]) -> bool {
    fs::read_to_string(dir.join(".complete")).is_ok_and(|s| s == stamp(wheels))
}

pub fn mark_complete(dir: &Path, wheels: &[PinnedWheel]) -> Result<()> {
    fs::write(dir.join(".complete"), stamp(wheels))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-wheels-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn write_zip(path: &Path, members: &[(&str, &[u8], u32)]) {
        let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
        for (name, data, mode) in members {
            let options = zip::write::SimpleFileOptions::default().unix_permissions(*mode);
            zip.start_file(*name, options).unwrap();
            io::Write::write_all(&mut zip, data).unwrap();
        }
        zip.finish().unwrap();
    }

    #[test]
    fn extract_keeps_modes_and_filters() {
        let dir = temp_dir("extract");
        let wheel = dir.join("t.whl");
        write_zip(
            &wheel,
            &[
                ("pkg/bin/tool", b"#!/bin/sh\n", 0o755),
                ("pkg/include/a.h", b"int a;", 0o644),
                ("pkg-1.dist-info/RECORD", b"", 0o644),
            ],
        );
        let out = dir.join("out");
        let n = extract(&wheel, &out, |name| {
            Ok(name.starts_with("pkg/").then(|| PathBuf::from(name)))
        })
        .unwrap();
        assert_eq!(n, 2);
        assert_eq!(fs::read(out.join("pkg/include/a.h")).unwrap(), b"int a;");
        assert!(!out.join("pkg-1.dist-info").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(out.join("pkg/bin/tool"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_member_escaping_the_folder_is_refused() {
        let dir = temp_dir("escape");
        let wheel = dir.join("evil.whl");
        write_zip(&wheel, &[("../outside", b"x", 0o644)]);
        let e = extract(&wheel, &dir.join("out"), |name| {
            Ok(Some(PathBuf::from(name)))
        })
        .unwrap_err()
        .to_string();
        assert!(e.contains("unsafe member name"), "{e}");
        assert!(!dir.join("outside").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_cached_wheel_with_a_wrong_hash_is_downloaded_again_or_refused() {
        let dir = temp_dir("hash");
        let wheel = PinnedWheel {
            package: "smdim-test-package-that-does-not-exist",
            version: "0.0.1",
            file: "x.whl",
            sha256: "0000000000000000000000000000000000000000000000000000000000000000",
        };
        fs::write(dir.join("x.whl"), b"tampered").unwrap();
        // The tampered file is deleted before pip runs; pip then fails (no such package, or no
        // network): either way an error, never the tampered file.
        let e = obtain_all(&dir, &[wheel], "manylinux_2_28_x86_64").unwrap_err();
        assert!(!dir.join("x.whl").exists(), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_with_the_wrong_hash_is_deleted_and_refused() {
        let dir = temp_dir("require");
        let file = dir.join("lib.so");
        fs::write(&file, b"abc").unwrap();
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        require_hash(&file, abc, "lib.so").unwrap();
        assert!(file.is_file());
        let e = require_hash(&file, &"0".repeat(64), "lib.so from x.whl")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("lib.so from x.whl has sha256 ba7816bf"),
            "{e}"
        );
        assert!(!file.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_missing_python_is_a_clear_error() {
        let wheel = PinnedWheel {
            package: "onnxruntime",
            version: "1.31.1",
            file: "x.whl",
            sha256: "00",
        };
        let e = pip_download(
            "/nonexistent/python3",
            &std::env::temp_dir(),
            &[&wheel],
            "manylinux_2_28_x86_64",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("not found") && e.contains("PYTHON="), "{e}");
    }

    #[test]
    fn the_stamp_names_every_pin() {
        let dir = temp_dir("stamp");
        let wheels = [
            PinnedWheel {
                package: "a",
                version: "1",
                file: "a.whl",
                sha256: "aa",
            },
            PinnedWheel {
                package: "b",
                version: "2",
                file: "b.whl",
                sha256: "bb",
            },
        ];
        assert!(!is_complete(&dir, &wheels));
        mark_complete(&dir, &wheels).unwrap();
        assert!(is_complete(&dir, &wheels));
        assert!(!is_complete(&dir, &wheels[..1]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
