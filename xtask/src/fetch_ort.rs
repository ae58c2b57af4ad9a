//! `cargo xtask fetch-ort [--platform P] [--wheel FILE]`: the ONNX Runtime shared library from
//! the PyPI wheel `onnxruntime==1.31.1` (no CDN needed).
//!
//! 1. `python3 -m pip download --no-deps --only-binary=:all: --platform <tag>
//!    --python-version 3.12 onnxruntime==1.31.1` into `target/ort-wheels/<platform>/`
//!    (or the wheel given with `--wheel`, for offline machines);
//! 2. the wheel's sha256 must equal the pinned one;
//! 3. the library is unzipped to `target/onnxruntime/<platform>/` and its sha256 checked too;
//! 4. the library's path is printed (stdout, alone on the last line).
//!
//! `--gpu` assembles the optional GPU pack instead (see `gpu_pack.rs`).
//!
//! Idempotent: a library already in place with the pinned hash is left alone. `PYTHON`
//! overrides the interpreter (default `python3`).

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::wheels::{self, hash_ok, PinnedWheel};

pub const ORT_VERSION: &str = "1.31.1";

/// One platform's wheel and the library inside it, pinned by sha256.
#[derive(Debug)]
pub struct OrtPlatform {
    /// Name on the command line and the folder under `target/onnxruntime/`.
    pub name: &'static str,
    /// pip's `--platform` tag.
    pub pip_platform: &'static str,
    pub wheel: &'static str,
    pub wheel_sha256: &'static str,
    /// The library's path inside the wheel; the file keeps its name when extracted.
    pub member: &'static str,
    pub library_sha256: &'static str,
}

impl OrtPlatform {
    pub fn library_name(&self) -> &'static str {
        self.member.rsplit('/').next().expect("member has a name")
    }
}

/// Hashes computed from the wheels PyPI served on 2026-11-27.
pub const PLATFORMS: &[OrtPlatform] = &[
    OrtPlatform {
        name: "linux",
        pip_platform: "manylinux_2_28_x86_64",
        wheel: "onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
        wheel_sha256: "1f3dea47f2f0e5117c2404cea7d21fd253ae7836a3bf167a501cdfbb2600d536",
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        library_sha256: "fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3",
    },
    OrtPlatform {
        name: "linux-aarch64",
        pip_platform: "manylinux_2_28_aarch64",
        wheel: "onnxruntime-1.31.1-cp312-cp312-manylinux_2_28_aarch64.whl",
        wheel_sha256: "0b9a492176886992e0e875f06bc0367e333f5fff11711a2d642e18b02f3009cc",
        member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        library_sha256: "8aa3b76b28c778a2b1dd660d34161adb1d508c9ccd04ff9dc80e26eca5df8467",
    },
    OrtPlatform {
        name: "windows",
        pip_platform: "win_amd64",
        wheel: "onnxruntime-1.31.1-cp312-cp312-win_amd64.whl",
        wheel_sha256: "ae8a9a351efda685cc59a66226cdefaa37a126c1d66872ca23a2de9425326130",
        member: "onnxruntime/capi/onnxruntime.dll",
        library_sha256: "e45f61e50d8650885452be538a00bb14a715e46a1bc3691000ce947e89ed0306",
    },
    OrtPlatform {
        name: "macos-arm64",
        pip_platform: "macosx_14_0_arm64",
        wheel: "onnxruntime-1.31.1-cp312-cp312-macosx_14_0_arm64.whl",
        wheel_sha256: "96dd2564b10ea7153ad9c207e7cd8e5917cb3ba521e0e0a62ac03486fdc8d56c",
        member: "onnxruntime/capi/libonnxruntime.1.31.1.dylib",
        library_sha256: "d586cbe89effc085a09d3341b3cfbd5c322517f9d397aeb20814af21433f2b36",
    },
];

/// The platform of the machine running xtask.
pub fn host_platform() -> Result<&'static str> {
    Ok(match (std::env::consts::OS, std::env::consts::ARCH) {
        ("linux", "x86_64") => "linux",
        ("linux", "aarch64") => "linux-aarch64",
        ("windows", "x86_64") => "windows",
        ("macos", "aarch64") => "macos-arm64",
        ("macos", "x86_64") => "macos-x64",
        (os, arch) => bail!("no onnxruntime wheel known for {os}/{arch}; pass --platform"),
    })
}

pub fn platform(name: &str) -> Result<&'static OrtPlatform> {
    if name == "macos-x64" {
        bail!(
            "onnxruntime {ORT_VERSION} has no macOS x86_64 wheel on PyPI (Microsoft stopped \
             publishing them); use an Apple-silicon Mac (--platform macos-arm64)"
        );
    }
    PLATFORMS.iter().find(|p| p.name == name).with_context(|| {
        let names: Vec<_> = PLATFORMS.iter().map(|p| p.name).collect();
        format!("unknown platform {name:?}; known: {}", names.join(", "))
    })
}

pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// Where the library of `platform` ends up.
pub fn library_path(root: &Path, platform: &OrtPlatform) -> PathBuf {
    root.join("target/onnxruntime")
        .join(platform.name)
        .join(platform.library_name())
}

/// Makes sure the pinned wheel of `platform` is in the cache (or is `wheel`) and returns it.
fn obtain_wheel(root: &Path, platform: &OrtPlatform, wheel: Option<&Path>) -> Result<PathBuf> {
    if let Some(wheel) = wheel {
        let got = sha256_file(wheel)?;
        if got != platform.wheel_sha256 {
            bail!(
                "{} has sha256 {got}, expected {} ({})",
                wheel.display(),
                platform.wheel_sha256,
                platform.wheel
            );
        }
        return Ok(wheel.to_path_buf());
    }
    let cache = root.join("target/ort-wheels").join(platform.name);
    let pinned = PinnedWheel {
        package: "onnxruntime",
        version: ORT_VERSION,
        file: platform.wheel,
        sha256: platform.wheel_sha256,
    };
    let mut paths = wheels::obtain_all(&cache, &[pinned], platform.pip_platform)
        .context("offline? pass a wheel downloaded elsewhere with --wheel FILE")?;
    Ok(paths.remove(0))
}

fn extract(wheel: &Path, platform: &OrtPlatform, dest: &Path) -> Result<()> {
    let file = fs::File::open(wheel)?;
    let mut archive =
        zip::ZipArchive::new(file).with_context(|| format!("{} is not a zip", wheel.display()))?;
    let mut entry = archive
        .by_name(platform.member)
        .with_context(|| format!("{} has no {}", wheel.display(), platform.member))?;
    let dir = dest.parent().expect("library path has a folder");
    fs::create_dir_all(dir)?;
    let tmp = dest.with_extension("part");
    {
        let mut out = fs::File::create(&tmp)?;
        io::copy(&mut entry, &mut out)?;
    }
    wheels::require_hash(
        &tmp,
        platform.library_sha256,
        &format!("{} from {}", platform.member, platform.wheel),
    )?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o755))?;
    }
    fs::rename(&tmp, dest)?;
    Ok(())
}

/// Fetches (if needed) and returns the library path of `platform`.
pub fn fetch(root: &Path, platform: &OrtPlatform, wheel: Option<&Path>) -> Result<PathBuf> {
    let dest = library_path(root, platform);
    if hash_ok(&dest, platform.library_sha256) {
        eprintln!("fetch-ort: {} is up to date", dest.display());
        return Ok(dest);
    }
    let wheel = obtain_wheel(root, platform, wheel)?;
    extract(&wheel, platform, &dest)?;
    eprintln!(
        "fetch-ort: extracted {} (sha256 {})",
        dest.display(),
        platform.library_sha256
    );
    Ok(dest)
}

pub fn main(root: &Path, args: &[String]) -> Result<()> {
    let mut platform_name = None;
    let mut wheel = None;
    let mut gpu = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--platform" => platform_name = Some(it.next().context("--platform needs a value")?),
            "--wheel" => wheel = Some(PathBuf::from(it.next().context("--wheel needs a file")?)),
            "--gpu" => gpu = true,
            other => bail!(
                "fetch-ort: unknown argument {other:?}; usage: cargo xtask fetch-ort \
                 [--platform linux|linux-aarch64|windows|macos-arm64] [--wheel FILE] [--gpu]"
            ),
        }
    }
    let name = match platform_name {
        Some(n) => n.as_str(),
        None => host_platform()?,
    };
    if gpu {
        if wheel.is_some() {
            bail!(
                "fetch-ort: --wheel is for the CPU library; --gpu downloads its own pinned wheels"
            );
        }
        let pack = crate::gpu_pack::fetch(root, name)?;
        println!("{}", pack.display());
        return Ok(());
    }
    let path = fetch(root, platform(name)?, wheel.as_deref())?;
    println!("{}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_well_formed_and_unique() {
        for p in PLATFORMS {
            for h in [p.wheel_sha256, p.library_sha256] {
                assert_eq!(h.len(), 64, "{}", p.name);
                assert!(h
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            }
            assert!(p.wheel.contains(p.pip_platform), "{}", p.name);
            assert!(p.wheel.starts_with(&format!("onnxruntime-{ORT_VERSION}-")));
            assert!(p.member.starts_with("onnxruntime/capi/"));
        }
        let names: std::collections::HashSet<_> = PLATFORMS.iter().map(|p| p.name).collect();
        assert_eq!(names.len(), PLATFORMS.len());
    }

    #[test]
    fn unknown_and_unpublished_platforms_are_errors() {
        let e = platform("macos-x64").unwrap_err().to_string();
        assert!(e.contains("no macOS x86_64 wheel"), "{e}");
        let e = platform("amiga").unwrap_err().to_string();
        assert!(e.contains("known: linux"), "{e}");
        assert_eq!(
            platform("linux").unwrap().library_name(),
            "libonnxruntime.so.1.31.1"
        );
        assert_eq!(
            platform("windows").unwrap().library_name(),
            "onnxruntime.dll"
        );
    }

    #[test]
    fn a_wheel_with_the_wrong_hash_is_refused() {
        let dir = std::env::temp_dir().join(format!("xtask-fetch-ort-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let fake = dir.join("fake.whl");
        fs::write(&fake, b"not a wheel").unwrap();
        let e = obtain_wheel(&dir, platform("linux").unwrap(), Some(&fake))
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected 1f3dea47"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
