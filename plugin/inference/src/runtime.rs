//! Finding and loading the ONNX Runtime shared library.
//!
//! ort is built with `load-dynamic`: nothing links against ONNX Runtime, and the first ort call
//! without a successful [`ensure_loaded`] would try `dlopen("libonnxruntime.so")` and panic if
//! that fails. Every entry point of this crate calls [`ensure_loaded`] first, so a missing or
//! broken library is an error value with the paths that were searched, never a panic.
//!
//! GPU providers need the GPU pack (`cargo xtask fetch-ort --gpu`): a CUDA build of ONNX Runtime
//! and the CUDA/cuDNN libraries it needs. ONNX Runtime loads once per process, so the choice
//! is made at the first load: a session asking for CUDA or TensorRT loads the pack (after
//! preloading its NVIDIA libraries, see [`load`]); anything that goes wrong there is recorded
//! as the reason in [`GpuSupport`] and the CPU library is loaded instead.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::{FallbackReason, InferenceError};

/// Overrides the search: the full path of the ONNX Runtime library.
pub const LIBRARY_ENV: &str = "SMDIM_ORT_LIBRARY";

/// Overrides the GPU pack search: the pack's folder (the one holding `manifest.json`).
pub const GPU_PACK_ENV: &str = "SMDIM_GPU_PACK";

/// The pack's folder name beside the plugin binary and in the per-user data folder
/// (`cargo xtask install --gpu`).
pub const GPU_PACK_DIR: &str = "onnxruntime-gpu";

/// ONNX Runtime version the engine is built and tested against (`cargo xtask fetch-ort`).
pub const ORT_VERSION: &str = "1.31.1";

/// File names of the library, most specific first.
pub fn library_names() -> &'static [&'static str] {
    if cfg!(target_os = "windows") {
        &["onnxruntime.dll"]
    } else if cfg!(target_os = "macos") {
        &["libonnxruntime.1.31.1.dylib", "libonnxruntime.dylib"]
    } else {
        &[
            "libonnxruntime.so.1.31.1",
            "libonnxruntime.so.1",
            "libonnxruntime.so",
        ]
    }
}

fn platform_dir() -> &'static str {
    if cfg!(target_os = "windows") {
        "windows"
    } else if cfg!(all(target_os = "macos", target_arch = "aarch64")) {
        "macos-arm64"
    } else if cfg!(target_os = "macos") {
        "macos-x64"
    } else {
        "linux"
    }
}

/// Directory holding the binary this code is in: the plugin's `.so`/`.dll` inside a host, or
/// the executable. Resolving relative to it lets a plugin bundle carry its own runtime.
pub fn own_binary_dir() -> Option<PathBuf> {
    #[cfg(unix)]
    {
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        let address = own_binary_dir as *const libc::c_void;
        // SAFETY: dladdr only reads the loader's tables; `info` is a valid out-pointer.
        if unsafe { libc::dladdr(address, &mut info) } != 0 && !info.dli_fname.is_null() {
            // SAFETY: dli_fname is a NUL-terminated path owned by the loader.
            let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
            use std::os::unix::ffi::OsStrExt;
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(name.to_bytes()));
            if let Some(dir) = path
                .canonicalize()
                .ok()
                .and_then(|p| p.parent().map(Path::to_path_buf))
            {
                return Some(dir);
            }
        }
    }
    #[cfg(windows)]
    {
        use std::os::windows::ffi::OsStringExt;
        use windows_sys::Win32::System::LibraryLoader::{
            GetModuleFileNameW, GetModuleHandleExW, GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS,
            GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
        };
        let mut module = std::ptr::null_mut();
        let flags =
            GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT;
        let address = own_binary_dir as *const u16;
        // SAFETY: with FROM_ADDRESS the name argument is an address inside this module; the
        // handle is written to `module` and not reference-counted (nothing to free).
        if unsafe { GetModuleHandleExW(flags, address, &mut module) } != 0 {
            let mut name = vec![0u16; 32_768];
            // SAFETY: `name` has room for `name.len()` UTF-16 units.
            let len = unsafe { GetModuleFileNameW(module, name.as_mut_ptr(), name.len() as u32) };
            let len = len as usize;
            if len > 0 && len < name.len() {
                let path = PathBuf::from(std::ffi::OsString::from_wide(&name[..len]));
                if let Some(dir) = path.parent() {
                    return Some(dir.to_path_buf());
                }
            }
        }
    }
    std::env::current_exe()
        .ok()?
        .parent()
        .map(Path::to_path_buf)
}

/// Every place the library is looked for, in order. An explicit `SMDIM_ORT_LIBRARY` is the
/// only candidate: a user who names a library wants that one or an error, not a surprise.
pub fn candidate_paths(extra_dirs: &[PathBuf]) -> Vec<PathBuf> {
    if let Some(path) = std::env::var_os(LIBRARY_ENV) {
        return vec![PathBuf::from(path)];
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(dir) = own_binary_dir() {
        // Beside the binary, and in a bundle's lib/ or Resources/ folders.
        dirs.push(dir.join("onnxruntime"));
        dirs.push(dir.clone());
        dirs.push(dir.join("../lib"));
        dirs.push(dir.join("../Resources"));
    }
    dirs.extend(extra_dirs.iter().cloned());
    // Development tree: where `cargo xtask fetch-ort` puts it.
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dirs.push(workspace.join("target/onnxruntime").join(platform_dir()));
    let mut paths = Vec::new();
    for dir in dirs {
        for name in library_names() {
            paths.push(dir.join(name));
        }
    }
    paths
}

/// Per-user data folder (`$XDG_DATA_HOME/smdim` or `~/.local/share/smdim` on Linux,
/// `%APPDATA%\smdim` on Windows, `~/Library/Application Support/smdim` on macOS), where
/// `cargo xtask install` puts the runtime and, with `--gpu`, the GPU pack.
pub fn user_data_dir() -> Option<PathBuf> {
    Some(dirs::data_dir()?.join("smdim"))
}

/// Every folder the GPU pack is looked for in, in order. `SMDIM_GPU_PACK` is the only one when
/// set, as with `SMDIM_ORT_LIBRARY`.
pub fn gpu_pack_candidates() -> Vec<PathBuf> {
    if let Some(dir) = std::env::var_os(GPU_PACK_ENV) {
        return vec![PathBuf::from(dir)];
    }
    let mut dirs = Vec::new();
    if let Some(dir) = own_binary_dir() {
        dirs.push(dir.join(GPU_PACK_DIR));
    }
    if let Some(dir) = user_data_dir() {
        dirs.push(dir.join(GPU_PACK_DIR));
    }
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    dirs.push(workspace.join("target/onnxruntime/linux-gpu"));
    dirs
}

/// The first of `candidates` holding a `manifest.json`, or the reason for the user.
pub fn find_gpu_pack(candidates: &[PathBuf]) -> Result<PathBuf, FallbackReason> {
    candidates
        .iter()
        .find(|dir| dir.join("manifest.json").is_file())
        .cloned()
        .ok_or_else(|| FallbackReason::PackNotFound {
            looked_in: candidates.to_vec(),
        })
}

/// `manifest.json` of a GPU pack, written by `cargo xtask fetch-ort --gpu`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct PackManifest {
    /// ONNX Runtime's file name, relative to the pack.
    pub library: String,
    /// NVIDIA libraries relative to the pack, dependencies first.
    pub preload: Vec<String>,
    /// TensorRT's libraries, when the pack has them; preloaded after `preload`.
    #[serde(default)]
    pub tensorrt_preload: Vec<String>,
    /// Lowest `cuDriverGetVersion` the libraries run on (13000: CUDA 13.0, driver 580).
    #[serde(default)]
    pub min_driver_cuda: Option<i32>,
}

impl PackManifest {
    pub fn read(dir: &Path) -> Result<PackManifest, FallbackReason> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| FallbackReason::PackManifest {
            path: path.clone(),
            message: e.to_string(),
        })?;
        serde_json::from_str(&text).map_err(|e| FallbackReason::PackManifest {
            message: format!("malformed: {e}"),
            path,
        })
    }
}

/// A GPU pack whose CUDA libraries and driver are in place.
#[derive(Debug)]
struct PackReady {
    /// Why TensorRT cannot run, if it cannot.
    tensorrt: Option<FallbackReason>,
}

/// Whether the loaded ONNX Runtime can run the GPU providers.
#[derive(Debug, Clone)]
pub enum GpuSupport {
    /// The GPU pack's ONNX Runtime with its CUDA libraries preloaded; `tensorrt` holds why the
    /// TensorRT provider cannot work, if it cannot.
    Pack {
        dir: PathBuf,
        tensorrt: Option<FallbackReason>,
    },
    /// A library named by `SMDIM_ORT_LIBRARY`: ONNX Runtime itself says which providers work.
    External,
    /// The CPU library, loaded because the first session asked for the CPU only.
    NotRequested,
    /// The CPU library, loaded because the GPU pack could not be used: why.
    Unavailable(FallbackReason),
}

impl GpuSupport {
    /// Why the CUDA provider (`tensorrt`: the TensorRT one) cannot be used, or `None` to let
    /// ONNX Runtime try it.
    pub fn unavailable(&self, tensorrt: bool) -> Option<FallbackReason> {
        match self {
            GpuSupport::Pack {
                tensorrt: Some(why),
                ..
            } if tensorrt => Some(why.clone()),
            GpuSupport::Pack { .. } | GpuSupport::External => None,
            GpuSupport::Unavailable(why) => Some(why.clone()),
            GpuSupport::NotRequested => Some(FallbackReason::CpuRuntimeLoaded),
        }
    }
}

/// The process's ONNX Runtime: the environment every session shares, the library it came from
/// and what it can do on the GPU.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub environment: ort::environment::Environment,
    pub library: PathBuf,
    pub gpu: GpuSupport,
}

static LOADED: Mutex<Option<Runtime>> = Mutex::new(None);

/// Loads ONNX Runtime (the CPU library) once per process and returns its environment. Later
/// calls return the one already loaded.
pub fn ensure_loaded(
    extra_dirs: &[PathBuf],
) -> Result<ort::environment::Environment, InferenceError> {
    load(extra_dirs, false).map(|runtime| runtime.environment)
}

/// Loads ONNX Runtime once per process. With `want_gpu` (and no `SMDIM_ORT_LIBRARY`), the GPU
/// pack is tried first: its NVIDIA libraries are dlopened `RTLD_NOW | RTLD_GLOBAL` in manifest
/// order so the CUDA provider library, which ONNX Runtime dlopens later, finds them already
/// loaded; then the NVIDIA driver is checked and the pack's ONNX Runtime loaded (it runs CPU
/// sessions too). If any step fails, the CPU library is loaded and the reason kept in
/// [`Runtime::gpu`].
pub fn load(extra_dirs: &[PathBuf], want_gpu: bool) -> Result<Runtime, InferenceError> {
    let mut loaded = LOADED.lock();
    if let Some(runtime) = loaded.as_ref() {
        let mut runtime = runtime.clone();
        if want_gpu && matches!(runtime.gpu, GpuSupport::NotRequested) {
            // No pack at all is the more useful answer than "restart".
            if let Err(why) = find_gpu_pack(&gpu_pack_candidates()) {
                runtime.gpu = GpuSupport::Unavailable(why);
            }
        }
        return Ok(runtime);
    }
    let external = std::env::var_os(LIBRARY_ENV).is_some();
    let mut gpu = if external {
        GpuSupport::External
    } else if want_gpu {
        let pack = find_gpu_pack(&gpu_pack_candidates()).and_then(|dir| {
            let manifest = PackManifest::read(&dir)?;
            let ready = preload::pack(&dir, &manifest)?;
            Ok((dir, manifest, ready.tensorrt))
        });
        match pack {
            Ok((dir, manifest, tensorrt)) => {
                let path = dir.join(&manifest.library);
                match init(&path) {
                    Ok(environment) => {
                        let runtime = Runtime {
                            environment,
                            library: path,
                            gpu: GpuSupport::Pack { dir, tensorrt },
                        };
                        *loaded = Some(runtime.clone());
                        return Ok(runtime);
                    }
                    Err(message) => {
                        GpuSupport::Unavailable(FallbackReason::PackRuntime { path, message })
                    }
                }
            }
            Err(why) => GpuSupport::Unavailable(why),
        }
    } else {
        GpuSupport::NotRequested
    };
    let candidates = candidate_paths(extra_dirs);
    let Some(path) = candidates.iter().find(|p| p.is_file()).cloned() else {
        return Err(InferenceError::RuntimeMissing {
            searched: candidates,
        });
    };
    match init(&path) {
        Ok(environment) => {
            if let (GpuSupport::NotRequested, Ok(pack)) =
                (&gpu, find_gpu_pack(&gpu_pack_candidates()))
            {
                gpu = GpuSupport::Unavailable(FallbackReason::CpuRuntimeLoadedFrom {
                    library: path.clone(),
                    pack,
                });
            }
            let runtime = Runtime {
                environment,
                library: path,
                gpu,
            };
            *loaded = Some(runtime.clone());
            Ok(runtime)
        }
        Err(message) => Err(InferenceError::RuntimeLoad { path, message }),
    }
}

/// ONNX Runtime's own switch for its telemetry (Microsoft's builds collect by default).
const DISABLE_TELEMETRY_ENV: &str = "ORT_DISABLE_TELEMETRY";

fn init(path: &Path) -> Result<ort::environment::Environment, String> {
    // Microsoft's Linux builds start their telemetry (a device id and a queue of events naming
    // the process, OS and CPU under ~/.cache/Microsoft/DeveloperTools) when the environment is
    // created, before `with_telemetry(false)` can switch events off; only this variable stops
    // that. It is set once per process, under `LOADED`'s lock, before the library is first
    // used; a user's own value is left alone.
    if std::env::var_os(DISABLE_TELEMETRY_ENV).is_none() {
        std::env::set_var(DISABLE_TELEMETRY_ENV, "1");
    }
    // ort may panic on a library it cannot use (e.g. missing symbols); keep that inside.
    let result = std::panic::catch_unwind(|| {
        let builder = ort::init_from(path).map_err(|e| e.to_string())?;
        // A local tool collects nothing: Microsoft's builds enable telemetry by default, which on
        // Linux also writes a device id and an event queue under ~/.cache/Microsoft.
        builder
            .with_name("smdim")
            .with_telemetry(false)
            .build()
            .map_err(|e| e.to_string())
    });
    result.unwrap_or_else(|_| Err("ONNX Runtime panicked while loading".into()))
}

/// The library loaded by [`ensure_loaded`] or [`load`], if any.
pub fn loaded_library() -> Option<PathBuf> {
    LOADED
        .lock()
        .as_ref()
        .map(|runtime| runtime.library.clone())
}

#[cfg(all(target_os = "linux", target_arch = "x86_64"))]
mod preload {
    use std::ffi::c_int;
    use std::path::Path;

    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};

    use super::{PackManifest, PackReady};
    use crate::error::FallbackReason;

    /// dlopens `path` with its symbols visible to libraries loaded later (the CUDA provider).
    fn open(path: impl AsRef<std::ffi::OsStr>) -> Result<Library, String> {
        // SAFETY: the libraries' initialisers are NVIDIA's, run as documented.
        unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())
    }

    /// dlopens `libs` of `dir` in order and keeps them loaded for the life of the process
    /// (ONNX Runtime relies on them); on a failure, names the file.
    fn open_all(dir: &Path, libs: &[String]) -> Result<(), FallbackReason> {
        for lib in libs {
            let path = dir.join(lib);
            let name = path
                .file_name()
                .map_or(lib.as_str().into(), |n| n.to_string_lossy());
            let library = open(&path).map_err(|message| FallbackReason::PackLibrary {
                name: name.into_owned(),
                message,
            })?;
            std::mem::forget(library);
        }
        Ok(())
    }

    /// Preloads the pack's libraries and checks the driver. A pack without TensorRT still runs
    /// CUDA: TensorRT's own verdict is in the result.
    pub fn pack(dir: &Path, manifest: &PackManifest) -> Result<PackReady, FallbackReason> {
        open_all(dir, &manifest.preload)?;
        let driver = open("libcuda.so.1").map_err(FallbackReason::DriverMissing)?;
        if let Some(needed) = manifest.min_driver_cuda {
            // SAFETY: cuDriverGetVersion(int*) -> CUresult, a documented driver API function
            // callable before cuInit.
            let version = unsafe {
                driver
                    .get::<unsafe extern "C" fn(*mut c_int) -> c_int>(b"cuDriverGetVersion\0")
                    .ok()
                    .and_then(|get| {
                        let mut version: c_int = 0;
                        (get(&mut version) == 0).then_some(version)
                    })
            };
            if let Some(have) = version.filter(|&v| v < needed) {
                return Err(FallbackReason::DriverTooOld { have, need: needed });
            }
        }
        std::mem::forget(driver);
        let tensorrt = if manifest.tensorrt_preload.is_empty() {
            Some(FallbackReason::NoTensorRt)
        } else {
            open_all(dir, &manifest.tensorrt_preload).err()
        };
        Ok(PackReady { tensorrt })
    }
}

#[cfg(not(all(target_os = "linux", target_arch = "x86_64")))]
mod preload {
    use std::path::Path;

    use super::{PackManifest, PackReady};
    use crate::error::FallbackReason;

    pub fn pack(_dir: &Path, _manifest: &PackManifest) -> Result<PackReady, FallbackReason> {
        Err(FallbackReason::PackPlatform)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("smdim-pack-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn the_first_folder_with_a_manifest_is_the_pack() {
        let dir = temp_dir("find");
        let (empty, pack, later) = (dir.join("a"), dir.join("b"), dir.join("c"));
        for d in [&empty, &pack, &later] {
            std::fs::create_dir_all(d).unwrap();
        }
        std::fs::write(pack.join("manifest.json"), "{}").unwrap();
        std::fs::write(later.join("manifest.json"), "{}").unwrap();
        let candidates = [dir.join("missing"), empty.clone(), pack.clone(), later];
        assert_eq!(find_gpu_pack(&candidates), Ok(pack));
        let why = find_gpu_pack(&candidates[..2]).unwrap_err().to_string();
        assert!(why.starts_with("GPU pack not found"), "{why}");
        assert!(why.contains(&empty.display().to_string()), "{why}");
        assert!(why.contains("cargo xtask fetch-ort --gpu"), "{why}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn manifests_are_read_with_defaults_and_errors_name_the_file() {
        let dir = temp_dir("manifest");
        std::fs::write(
            dir.join("manifest.json"),
            r#"{"format": 1, "library": "libonnxruntime.so.1.31.1", "preload": ["cuda/a.so"]}"#,
        )
        .unwrap();
        let manifest = PackManifest::read(&dir).unwrap();
        assert_eq!(manifest.preload, ["cuda/a.so"]);
        assert!(manifest.tensorrt_preload.is_empty());
        std::fs::write(dir.join("manifest.json"), "{").unwrap();
        let why = PackManifest::read(&dir).unwrap_err().to_string();
        assert!(
            why.contains("malformed") && why.contains("manifest.json"),
            "{why}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn gpu_support_reasons() {
        let pack = GpuSupport::Pack {
            dir: PathBuf::from("/p"),
            tensorrt: Some(FallbackReason::NoTensorRt),
        };
        assert_eq!(pack.unavailable(false), None);
        assert_eq!(pack.unavailable(true), Some(FallbackReason::NoTensorRt));
        assert_eq!(GpuSupport::External.unavailable(true), None);
        let why = GpuSupport::NotRequested
            .unavailable(false)
            .unwrap()
            .to_string();
        assert!(why.contains("restart"), "{why}");
    }
}
