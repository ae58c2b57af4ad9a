//! Finding and loading the ONNX Runtime shared library.
//!
//! ort is built with `load-dynamic`: nothing links against ONNX Runtime, and the first ort call
//! without a successful [`ensure_loaded`] would try `dlopen("libonnxruntime.so")` and panic if
//! that fails. Every entry point of this crate calls [`ensure_loaded`] first, so a missing or
//! broken library is an error value with the paths that were searched, never a panic.

use std::path::{Path, PathBuf};

use parking_lot::Mutex;

use crate::error::InferenceError;

/// Overrides the search: the full path of the ONNX Runtime library.
pub const LIBRARY_ENV: &str = "SMDIM_ORT_LIBRARY";

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

/// The loaded library and the environment built on it; the environment lives as long as the
/// process so every session shares one thread pool and logger.
static LOADED: Mutex<Option<(PathBuf, ort::environment::Environment)>> = Mutex::new(None);

/// Loads ONNX Runtime once per process and returns its environment. Later calls return the
/// one already loaded.
pub fn ensure_loaded(
    extra_dirs: &[PathBuf],
) -> Result<ort::environment::Environment, InferenceError> {
    let mut loaded = LOADED.lock();
    if let Some((_, environment)) = loaded.as_ref() {
        return Ok(environment.clone());
    }
    let candidates = candidate_paths(extra_dirs);
    let Some(path) = candidates.iter().find(|p| p.is_file()).cloned() else {
        return Err(InferenceError::RuntimeMissing {
            searched: candidates,
        });
    };
    // ort may panic on a library it cannot use (e.g. missing symbols); keep that inside.
    let result = std::panic::catch_unwind(|| {
        let builder = ort::init_from(&path).map_err(|e| e.to_string())?;
        builder
            .with_name("smdim")
            .build()
            .map_err(|e| e.to_string())
    });
    match result {
        Ok(Ok(environment)) => {
            *loaded = Some((path, environment.clone()));
            Ok(environment)
        }
        Ok(Err(message)) => Err(InferenceError::RuntimeLoad { path, message }),
        Err(_) => Err(InferenceError::RuntimeLoad {
            path,
            message: "ONNX Runtime panicked while loading".into(),
        }),
    }
}

/// The library loaded by [`ensure_loaded`], if any.
pub fn loaded_library() -> Option<PathBuf> {
    LOADED.lock().as_ref().map(|(path, _)| path.clone())
}
