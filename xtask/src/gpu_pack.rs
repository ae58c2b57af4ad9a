//! `cargo xtask fetch-ort --gpu`: the optional GPU runtime pack (Linux x86_64 only for now).
//!
//! The CPU library stays the default (29 MB). The pack is `onnxruntime-gpu` (a CUDA 13 build of
//! the same ONNX Runtime version) plus the CUDA 13 / cuDNN 9 runtime libraries it needs, all
//! from PyPI wheels pinned by sha256 (see [`WHEELS`]), laid out in
//! `target/onnxruntime/linux-gpu/` for the engine (`smdim_inference::runtime`):
//!
//! - `libonnxruntime.so.1.31.1`, `libonnxruntime_providers_{shared,cuda,tensorrt}.so` at the
//!   top: ONNX Runtime loads its provider libraries from its own folder;
//! - the NVIDIA libraries flat under `cuda/`;
//! - `manifest.json`: versions and the `preload` order (dependencies first, from the libraries'
//!   `DT_NEEDED`), which the engine dlopens with `RTLD_GLOBAL` before loading ONNX Runtime, so
//!   the CUDA provider finds them without `LD_LIBRARY_PATH`.
//!
//! About 1.4 GB of wheels (cached in `target/gpu-wheels/`), 2.0 GB unpacked. Idempotent: a
//! `.complete` stamp naming every pinned wheel skips the unpacking.
//!
//! TensorRT is not in the pack: `tensorrt-cu13-libs` on PyPI is only a stub that downloads from
//! pypi.nvidia.com, which build machines cannot reach, so it cannot be pinned here. The TensorRT
//! provider then falls back to CUDA with that reason; `tensorrt_preload` in the manifest is the
//! place for those libraries once they can be fetched.
//! TODO(windows): the same layout from the `win_amd64` wheels (DLLs, `LoadLibraryExW`).

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::fetch_ort::ORT_VERSION;
use crate::wheels::{self, PinnedWheel};

/// Folder under the workspace the pack is assembled in (the engine's dev-tree location).
pub const PACK_DIR: &str = "target/onnxruntime/linux-gpu";
/// Download cache of the pinned wheels.
pub const WHEEL_CACHE: &str = "target/gpu-wheels";
/// CUDA version the libraries belong to, and the lowest `cuDriverGetVersion` that runs them
/// (13000 = CUDA 13.0, NVIDIA driver 580 or newer).
pub const CUDA_VERSION: &str = "13.0";
pub const MIN_DRIVER_CUDA: u32 = 13000;

/// The CUDA 13.0 update 2 libraries (the toolkit `onnxruntime-gpu` 1.31 is built with) and a
/// cuDNN 9 of the same month; hashes as PyPI lists them, checked against the downloads on
/// 2026-11-27. `onnxruntime-gpu` declares cuda-runtime/nvrtc/cufft/curand/cudnn as extras;
/// cuBLAS (a `DT_NEEDED` of the CUDA provider) and nvJitLink (of cuFFT) it does not.
pub const WHEELS: &[PinnedWheel] = &[
    PinnedWheel {
        package: "onnxruntime-gpu",
        version: ORT_VERSION,
        file: "onnxruntime_gpu-1.31.1-cp312-cp312-manylinux_2_28_x86_64.whl",
        sha256: "05d548956197b9d01f59b625de740e0d6be3593f874e241a12dc0362650ecdf7",
    },
    wheels::CUDA_RUNTIME_X86_64,
    PinnedWheel {
        package: "nvidia-cublas",
        version: "13.1.0.3",
        file: "nvidia_cublas-13.1.0.3-py3-none-manylinux_2_27_x86_64.whl",
        sha256: "ee8722c1f0145ab246bccb9e452153b5e0515fd094c3678df50b2a0888b8b171",
    },
    PinnedWheel {
        package: "nvidia-curand",
        version: "10.4.0.35",
        file: "nvidia_curand-10.4.0.35-py3-none-manylinux_2_27_x86_64.whl",
        sha256: "1aee33a5da6e1db083fe2b90082def8915f30f3248d5896bcec36a579d941bfc",
    },
    PinnedWheel {
        package: "nvidia-cufft",
        version: "12.0.0.61",
        file: "nvidia_cufft-12.0.0.61-py3-none-manylinux2014_x86_64.manylinux_2_17_x86_64.whl",
        sha256: "6c44f692dce8fd5ffd3e3df134b6cdb9c2f72d99cf40b62c32dde45eea9ddad3",
    },
    PinnedWheel {
        package: "nvidia-cuda-nvrtc",
        version: "13.0.88",
        file: "nvidia_cuda_nvrtc-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
        sha256: "ad9b6d2ead2435f11cbb6868809d2adeeee302e9bb94bcf0539c7a40d80e8575",
    },
    PinnedWheel {
        package: "nvidia-nvjitlink",
        version: "13.0.88",
        file: "nvidia_nvjitlink-13.0.88-py3-none-manylinux2010_x86_64.manylinux_2_12_x86_64.whl",
        sha256: "13a74f429e23b921c1109976abefacc69835f2f433ebd323d3946e11d804e47b",
    },
    PinnedWheel {
        package: "nvidia-cudnn-cu13",
        version: "9.14.0.64",
        file: "nvidia_cudnn_cu13-9.14.0.64-py3-none-manylinux_2_27_x86_64.whl",
        sha256: "024ce8f7571d322991ecadbe82907df2e89b5f36597d03436413ec6dd7c9fe54",
    },
];

/// Libraries the pack may rely on the system for: glibc, libstdc++, zlib (cuDNN) and the
/// NVIDIA driver's `libcuda.so.1` (the engine checks for it and names it when it is missing).
const SYSTEM_LIBRARIES: &[&str] = &[
    "libc.so.6",
    "libm.so.6",
    "libdl.so.2",
    "librt.so.1",
    "libpthread.so.0",
    "libgcc_s.so.1",
    "libstdc++.so.6",
    "ld-linux-x86-64.so.2",
    "libz.so.1",
    "libcuda.so.1",
];

/// The TensorRT provider links these; they are not in the pack (see the module docs).
const TENSORRT_PROVIDER: &str = "libonnxruntime_providers_tensorrt.so";

/// Where a wheel member goes in the pack, `None` for members left out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// Beside `libonnxruntime` (ONNX Runtime and its provider libraries).
    Top,
    /// Under `cuda/`, preloaded by the engine.
    Cuda,
}

pub fn place(member: &str) -> Option<Place> {
    let name = member.rsplit('/').next()?;
    if let Some(dir) = member.strip_suffix(name) {
        if dir == "onnxruntime/capi/" {
            let ort = name == format!("libonnxruntime.so.{ORT_VERSION}")
                || (name.starts_with("libonnxruntime_providers_") && name.ends_with(".so"));
            return ort.then_some(Place::Top);
        }
        // CUDA 13 wheels use nvidia/cu13/lib/, cuDNN nvidia/cudnn/lib/.
        let nvidia_lib = dir.starts_with("nvidia/") && dir.ends_with("/lib/");
        // Not needed by ONNX Runtime: the BLAS/FFTW drop-in shims and NVRTC's alternate builds.
        let unused = name.starts_with("libnvblas")
            || name.starts_with("libcufftw")
            || name.contains(".alt.");
        if nvidia_lib && name.contains(".so") && !unused {
            return Some(Place::Cuda);
        }
    }
    None
}

/// pip's `--platform` tag for a wheel file: the last (most specific) of its platform tags.
/// pip does not treat an older manylinux tag as compatible with a newer `--platform`, so the
/// wheels are downloaded in groups of equal tags.
pub fn pip_platform(file: &str) -> &str {
    let stem = file.strip_suffix(".whl").unwrap_or(file);
    let platform = stem.rsplit('-').next().unwrap_or(stem);
    platform.rsplit('.').next().unwrap_or(platform)
}

/// `DT_SONAME` and `DT_NEEDED` of an ELF64 little-endian shared library. `object` reads
/// through a cache of the parts it touches, so the (up to 540 MB) file is not loaded.
pub fn elf_dependencies(path: &Path) -> Result<(Option<String>, Vec<String>)> {
    use object::elf::{FileHeader64, DT_NEEDED, DT_NULL, DT_SONAME};
    use object::read::elf::{Dyn, FileHeader};
    use object::LittleEndian;

    let file = fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let cache = object::ReadCache::new(file);
    let not_elf = || format!("{} is not an ELF64 little-endian library", path.display());
    let header = FileHeader64::<LittleEndian>::parse(&cache).with_context(not_elf)?;
    let endian = header.endian().with_context(not_elf)?;
    let sections = header.sections(endian, &cache).with_context(not_elf)?;
    // The index that comes with the entries is their string table's (the section's link).
    let Some((entries, strings_index)) = sections.dynamic(endian, &cache).with_context(not_elf)?
    else {
        bail!("{} has no dynamic section", path.display());
    };
    let strings = sections
        .strings(endian, &cache, strings_index)
        .with_context(not_elf)?;
    let (mut soname, mut needed) = (None, Vec::new());
    for entry in entries {
        let tag = entry.tag(endian);
        if tag == DT_NULL {
            break;
        }
        if tag == DT_NEEDED || tag == DT_SONAME {
            let name = entry
                .string(endian, strings)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .with_context(not_elf)?;
            if tag == DT_NEEDED {
                needed.push(name);
            } else {
                soname = Some(name);
            }
        }
    }
    Ok((soname, needed))
}

/// Orders `libs` (file name → needed names) so that every library comes after the pack
/// libraries it needs; ties in name order, so the manifest is reproducible.
pub fn preload_order(libs: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    fn visit(
        name: &str,
        libs: &BTreeMap<String, Vec<String>>,
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(name.to_string()) {
            return;
        }
        for dep in &libs[name] {
            if libs.contains_key(dep) {
                visit(dep, libs, seen, out);
            }
        }
        out.push(name.to_string());
    }
    let (mut seen, mut out) = (BTreeSet::new(), Vec::new());
    for name in libs.keys() {
        visit(name, libs, &mut seen, &mut out);
    }
    out
}

/// `manifest.json`, read by `smdim_inference::runtime` (`PackManifest`).
pub fn manifest_json(preload: &[String], wheels: &[PinnedWheel]) -> String {
    let packages: serde_json::Map<String, serde_json::Value> = wheels
        .iter()
        .map(|w| (w.package.to_string(), w.version.into()))
        .collect();
    let manifest = serde_json::json!({
        "format": 1,
        "platform": "linux-x86_64",
        "onnxruntime": ORT_VERSION,
        "library": format!("libonnxruntime.so.{ORT_VERSION}"),
        "cuda": CUDA_VERSION,
        "min_driver_cuda": MIN_DRIVER_CUDA,
        "preload": preload,
        "tensorrt_preload": [],
        "packages": packages,
    });
    serde_json::to_string_pretty(&manifest).expect("a JSON value serialises") + "\n"
}

/// Unpacks `wheel_files` (the pinned `wheels`, same order) into `dest` in the pack layout,
/// checks that every library's dependencies are in the pack or the system, and writes the
/// manifest. Built in a sibling folder and renamed, so an interrupted run leaves no half pack.
pub fn assemble(
    wheel_files: &[PathBuf],
    wheels: &[PinnedWheel],
    dest: &Path,
) -> Result<Vec<String>> {
    let staging = dest.with_extension("part");
    let _ = fs::remove_dir_all(&staging);
    let result = assemble_in(wheel_files, wheels, &staging);
    if result.is_err() {
        let _ = fs::remove_dir_all(&staging);
        return result;
    }
    if dest.exists() {
        fs::remove_dir_all(dest).with_context(|| format!("removing the old {}", dest.display()))?;
    }
    fs::rename(&staging, dest)?;
    result
}

fn assemble_in(
    wheel_files: &[PathBuf],
    wheels: &[PinnedWheel],
    staging: &Path,
) -> Result<Vec<String>> {
    for wheel in wheel_files {
        wheels::extract(wheel, staging, |member| {
            let Some(place) = place(member) else {
                return Ok(None);
            };
            let name = member.rsplit('/').next().expect("member has a name");
            let to = match place {
                Place::Top => PathBuf::from(name),
                Place::Cuda => Path::new("cuda").join(name),
            };
            if staging.join(&to).exists() {
                bail!("{name} comes from two wheels");
            }
            Ok(Some(to))
        })?;
    }

    let library = format!("libonnxruntime.so.{ORT_VERSION}");
    for required in [
        library.as_str(),
        "libonnxruntime_providers_shared.so",
        "libonnxruntime_providers_cuda.so",
    ] {
        if !staging.join(required).is_file() {
            bail!("the wheels hold no {required}");
        }
    }
    let cuda = dependencies_in(&staging.join("cuda"), None)?;
    let top = dependencies_in(staging, Some(TENSORRT_PROVIDER))?;
    for (name, needed) in cuda.iter().chain(&top) {
        for dep in needed {
            let known = cuda.contains_key(dep)
                || top.contains_key(dep)
                || SYSTEM_LIBRARIES.contains(&dep.as_str())
                // ONNX Runtime's own soname.
                || dep == "libonnxruntime.so.1";
            if !known {
                bail!(
                    "{name} needs {dep}, which no pinned wheel provides: the pins are incomplete"
                );
            }
        }
    }
    let preload: Vec<String> = preload_order(&cuda)
        .into_iter()
        .map(|n| format!("cuda/{n}"))
        .collect();
    fs::write(
        staging.join("manifest.json"),
        manifest_json(&preload, wheels),
    )?;
    wheels::mark_complete(staging, wheels)?;
    Ok(preload)
}

/// File name -> `DT_NEEDED` of every library directly in `dir` except `skip` (none when `dir`
/// does not exist).
fn dependencies_in(dir: &Path, skip: Option<&str>) -> Result<BTreeMap<String, Vec<String>>> {
    let mut libs = BTreeMap::new();
    if !dir.is_dir() {
        return Ok(libs);
    }
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .expect("file")
            .to_string_lossy()
            .into_owned();
        if path.is_file() && Some(name.as_str()) != skip {
            libs.insert(name, elf_dependencies(&path)?.1);
        }
    }
    Ok(libs)
}

fn dir_size(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// Fetches (if needed) and assembles the pack; returns its folder.
pub fn fetch(root: &Path, platform: &str) -> Result<PathBuf> {
    if platform != "linux" {
        bail!(
            "the GPU pack exists for Linux x86_64 only (asked for {platform:?}); on Windows, \
             install onnxruntime-gpu and the CUDA 13 runtime yourself and point SMDIM_ORT_LIBRARY \
             at its onnxruntime.dll"
        );
    }
    let dest = root.join(PACK_DIR);
    if wheels::is_complete(&dest, WHEELS) {
        eprintln!("fetch-ort --gpu: {} is up to date", dest.display());
        return Ok(dest);
    }
    let cache = root.join(WHEEL_CACHE);
    let mut tags: Vec<&str> = WHEELS.iter().map(|w| pip_platform(w.file)).collect();
    tags.sort_unstable();
    tags.dedup();
    let mut files = BTreeMap::new();
    for tag in tags {
        let group: Vec<PinnedWheel> = WHEELS
            .iter()
            .copied()
            .filter(|w| pip_platform(w.file) == tag)
            .collect();
        for (w, path) in group.iter().zip(wheels::obtain_all(&cache, &group, tag)?) {
            files.insert(w.file, path);
        }
    }
    let files: Vec<PathBuf> = WHEELS.iter().map(|w| files[w.file].clone()).collect();
    let preload = assemble(&files, WHEELS, &dest)?;
    eprintln!(
        "fetch-ort --gpu: {} ({} NVIDIA libraries, {:.1} GB)",
        dest.display(),
        preload.len(),
        dir_size(&dest) as f64 / 1e9
    );
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pins_are_well_formed_and_unique() {
        let mut files = BTreeSet::new();
        let mut packages = BTreeSet::new();
        for w in WHEELS {
            assert_eq!(w.sha256.len(), 64, "{}", w.package);
            assert!(w
                .sha256
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
            let dist = w.package.replace('-', "_");
            assert!(
                w.file.starts_with(&format!("{dist}-{}-", w.version)),
                "{}",
                w.file
            );
            assert!(w.file.ends_with("x86_64.whl"), "{}", w.file);
            assert!(
                pip_platform(w.file).starts_with("manylinux_2_"),
                "{}",
                w.file
            );
            assert!(files.insert(w.file) && packages.insert(w.package));
        }
        assert_eq!(WHEELS[0].package, "onnxruntime-gpu");
        assert_eq!(pip_platform(WHEELS[1].file), "manylinux_2_17_x86_64");
    }

    #[test]
    fn members_are_placed_by_role() {
        assert_eq!(
            place("onnxruntime/capi/libonnxruntime.so.1.31.1"),
            Some(Place::Top)
        );
        assert_eq!(
            place("onnxruntime/capi/libonnxruntime_providers_cuda.so"),
            Some(Place::Top)
        );
        assert_eq!(
            place("onnxruntime/capi/onnxruntime_pybind11_state.so"),
            None
        );
        assert_eq!(
            place("nvidia/cu13/lib/libcublasLt.so.13"),
            Some(Place::Cuda)
        );
        assert_eq!(
            place("nvidia/cudnn/lib/libcudnn_graph.so.9"),
            Some(Place::Cuda)
        );
        assert_eq!(place("nvidia/cu13/lib/libnvrtc.alt.so.13"), None);
        assert_eq!(place("nvidia/cu13/lib/libcufftw.so.12"), None);
        assert_eq!(place("nvidia/cu13/include/cuda.h"), None);
        assert_eq!(place("nvidia_cublas-13.1.0.3.dist-info/RECORD"), None);
    }

    /// A minimal ELF64 shared object: a `.dynamic` with SONAME and NEEDED, and its `.dynstr`.
    fn fake_elf(soname: &str, needed: &[&str]) -> Vec<u8> {
        let mut strings = vec![0u8];
        let mut add = |s: &str| {
            let at = strings.len() as u64;
            strings.extend_from_slice(s.as_bytes());
            strings.push(0);
            at
        };
        let mut dynamic: Vec<(u64, u64)> = needed.iter().map(|n| (1, add(n))).collect();
        dynamic.push((14, add(soname)));
        dynamic.push((0, 0));
        let strings_at = 64u64;
        let dynamic_at = strings_at + strings.len() as u64;
        let sections_at = dynamic_at + 16 * dynamic.len() as u64;
        let mut elf = vec![0u8; 64];
        elf[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
        elf[0x28..0x30].copy_from_slice(&sections_at.to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        // Section names: any string table will do (every name is "").
        elf[0x3e..0x40].copy_from_slice(&2u16.to_le_bytes());
        elf.extend_from_slice(&strings);
        for (tag, value) in &dynamic {
            elf.extend_from_slice(&tag.to_le_bytes());
            elf.extend_from_slice(&value.to_le_bytes());
        }
        let section = |kind: u32, offset: u64, size: u64, link: u32| {
            let mut s = vec![0u8; 64];
            s[4..8].copy_from_slice(&kind.to_le_bytes());
            s[24..32].copy_from_slice(&offset.to_le_bytes());
            s[32..40].copy_from_slice(&size.to_le_bytes());
            s[40..44].copy_from_slice(&link.to_le_bytes());
            s
        };
        elf.extend(section(0, 0, 0, 0));
        elf.extend(section(6, dynamic_at, 16 * dynamic.len() as u64, 2));
        elf.extend(section(3, strings_at, strings.len() as u64, 0));
        elf
    }

    fn write_zip(path: &Path, members: &[(&str, Vec<u8>)]) {
        let mut zip = zip::ZipWriter::new(fs::File::create(path).unwrap());
        for (name, data) in members {
            let options = zip::write::SimpleFileOptions::default().unix_permissions(0o755);
            zip.start_file(*name, options).unwrap();
            std::io::Write::write_all(&mut zip, data).unwrap();
        }
        zip.finish().unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("xtask-gpu-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn elf_dependencies_are_read_from_the_dynamic_section() {
        let dir = temp_dir("elf");
        let lib = dir.join("libx.so.1");
        fs::write(&lib, fake_elf("libx.so.1", &["liby.so.2", "libc.so.6"])).unwrap();
        let (soname, needed) = elf_dependencies(&lib).unwrap();
        assert_eq!(soname.as_deref(), Some("libx.so.1"));
        assert_eq!(needed, ["liby.so.2", "libc.so.6"]);
        fs::write(&lib, b"garbage").unwrap();
        let e = elf_dependencies(&lib).unwrap_err().to_string();
        assert!(e.contains("not an ELF64"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn preload_puts_dependencies_first() {
        let libs: BTreeMap<String, Vec<String>> = [
            ("libcublas.so.13", vec!["libcublasLt.so.13", "libc.so.6"]),
            ("libcublasLt.so.13", vec![]),
            (
                "libcudnn_adv.so.9",
                vec!["libcudnn_ops.so.9", "libcudnn_graph.so.9"],
            ),
            ("libcudnn_graph.so.9", vec![]),
            ("libcudnn_ops.so.9", vec!["libcudnn_graph.so.9"]),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
        .collect();
        let order = preload_order(&libs);
        assert_eq!(order.len(), libs.len());
        let at = |n: &str| order.iter().position(|x| x == n).unwrap();
        for (lib, needed) in &libs {
            for dep in needed.iter().filter(|d| libs.contains_key(*d)) {
                assert!(at(dep) < at(lib), "{dep} before {lib}: {order:?}");
            }
        }
    }

    fn fake_wheels(dir: &Path, cublas_needs: &[&str]) -> Vec<PathBuf> {
        let ort = dir.join("ort.whl");
        write_zip(
            &ort,
            &[
                (
                    "onnxruntime/capi/libonnxruntime.so.1.31.1",
                    fake_elf("libonnxruntime.so.1", &["libc.so.6"]),
                ),
                (
                    "onnxruntime/capi/libonnxruntime_providers_shared.so",
                    fake_elf("libonnxruntime_providers_shared.so", &[]),
                ),
                (
                    "onnxruntime/capi/libonnxruntime_providers_cuda.so",
                    fake_elf("", &["libcublas.so.13", "libcudart.so.13", "libcuda.so.1"]),
                ),
                (
                    "onnxruntime/capi/libonnxruntime_providers_tensorrt.so",
                    fake_elf("", &["libnvinfer.so.10"]),
                ),
                (
                    "onnxruntime/capi/onnxruntime_pybind11_state.so",
                    b"python".to_vec(),
                ),
            ],
        );
        let cuda = dir.join("cuda.whl");
        write_zip(
            &cuda,
            &[
                (
                    "nvidia/cu13/lib/libcublas.so.13",
                    fake_elf("libcublas.so.13", cublas_needs),
                ),
                (
                    "nvidia/cu13/lib/libcublasLt.so.13",
                    fake_elf("libcublasLt.so.13", &[]),
                ),
                (
                    "nvidia/cu13/lib/libcudart.so.13",
                    fake_elf("libcudart.so.13", &[]),
                ),
                (
                    "nvidia/cu13/lib/libnvblas.so.13",
                    fake_elf("libnvblas.so.13", &["libcublas.so.13"]),
                ),
                ("nvidia/cu13/include/cublas.h", b"/* header */".to_vec()),
            ],
        );
        vec![ort, cuda]
    }

    const FAKE_PINS: &[PinnedWheel] = &[
        PinnedWheel {
            package: "onnxruntime-gpu",
            version: "1.31.1",
            file: "ort.whl",
            sha256: "aa",
        },
        PinnedWheel {
            package: "nvidia-cublas",
            version: "13.1.0.3",
            file: "cuda.whl",
            sha256: "bb",
        },
    ];

    #[test]
    fn the_pack_layout_and_manifest() {
        let dir = temp_dir("layout");
        let files = fake_wheels(&dir, &["libcublasLt.so.13"]);
        let dest = dir.join("linux-gpu");
        fs::create_dir_all(dest.join("stale")).unwrap();
        let preload = assemble(&files, FAKE_PINS, &dest).unwrap();
        assert_eq!(
            preload,
            [
                "cuda/libcublasLt.so.13",
                "cuda/libcublas.so.13",
                "cuda/libcudart.so.13"
            ]
        );
        let mut top: Vec<String> = fs::read_dir(&dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(
            top,
            [
                ".complete",
                "cuda",
                "libonnxruntime.so.1.31.1",
                "libonnxruntime_providers_cuda.so",
                "libonnxruntime_providers_shared.so",
                "libonnxruntime_providers_tensorrt.so",
                "manifest.json",
            ]
        );
        assert_eq!(
            fs::read_dir(dest.join("cuda")).unwrap().count(),
            3,
            "no nvblas, no headers"
        );
        assert!(wheels::is_complete(&dest, FAKE_PINS));
        assert!(!dest.with_extension("part").exists());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(dest.join("cuda/libcudart.so.13"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o755);
        }
        let manifest = fs::read_to_string(dest.join("manifest.json")).unwrap();
        assert!(
            manifest.contains("\"library\": \"libonnxruntime.so.1.31.1\""),
            "{manifest}"
        );
        assert!(
            manifest.contains("\"min_driver_cuda\": 13000"),
            "{manifest}"
        );
        assert!(
            manifest.contains("\"nvidia-cublas\": \"13.1.0.3\""),
            "{manifest}"
        );
        let listed = manifest.find("cuda/libcublasLt.so.13").unwrap();
        assert!(
            listed < manifest.find("cuda/libcublas.so.13\"").unwrap(),
            "{manifest}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_dependency_no_wheel_provides_is_an_error() {
        let dir = temp_dir("incomplete");
        let files = fake_wheels(&dir, &["libcublasLt.so.13", "libnvJitLink.so.13"]);
        let dest = dir.join("linux-gpu");
        let e = assemble(&files, FAKE_PINS, &dest).unwrap_err().to_string();
        assert!(
            e.contains("libcublas.so.13 needs libnvJitLink.so.13"),
            "{e}"
        );
        assert!(!dest.exists(), "no half pack");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_platforms_are_refused_with_a_hint() {
        let e = fetch(Path::new("/nonexistent"), "windows")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("Linux x86_64 only") && e.contains("SMDIM_ORT_LIBRARY"),
            "{e}"
        );
    }
}
