use std::path::PathBuf;

use smdim_engine::sampler::constraints::PlanError;
use thiserror::Error;

use crate::style::Style;

/// Everything that can go wrong between "Generate" and a phrase. Messages are written for the
/// musician reading them in the plugin window or the terminal.
#[derive(Debug, Error)]
pub enum InferenceError {
    #[error("ONNX Runtime library not found (run `cargo xtask fetch-ort`, or set SMDIM_ORT_LIBRARY); looked in: {}", .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    RuntimeMissing { searched: Vec<PathBuf> },
    #[error("ONNX Runtime library {} could not be loaded: {message}", .path.display())]
    RuntimeLoad { path: PathBuf, message: String },
    #[error("model file {}: {message}", .path.display())]
    ModelFile { path: PathBuf, message: String },
    #[error("model card: {0}")]
    Card(String),
    #[error("the model does not match this plugin's vocabulary: {0}")]
    VocabularyMismatch(String),
    #[error("could not start an inference session: {0}")]
    Session(String),
    #[error("the model failed while generating: {0}")]
    Run(String),
    /// A style other than Any asked of a model without a `style` input: never quietly run as Any.
    #[error("this model has no styles: choose Any or load a style-conditioned model (asked for {requested})")]
    NoStyles { requested: Style },
    /// A style-conditioned model whose card lists fewer styles than this build knows.
    #[error("this model has no {requested} style (it has: {})", .available.join(", "))]
    StyleMissing {
        requested: Style,
        available: Vec<String>,
    },
    /// The card and the graph disagree on whether the model takes a style, or the graph's style
    /// input is not what the card describes.
    #[error("the model's styles do not add up: {0}")]
    StyleMismatch(String),
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// An edit of a source phrase that cannot be done as asked.
    #[error(transparent)]
    Edit(#[from] smdim_engine::sampler::edit::EditError),
    #[error("generation cancelled")]
    Cancelled,
}

/// Why an execution provider was passed over for the next one in the chain. Shown to the user as
/// "CUDA unavailable: {reason} → running on CPU", so each message says what to do about it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FallbackReason {
    #[error("GPU pack not found (looked in {}; run `cargo xtask fetch-ort --gpu`, or set {})", .looked_in.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "), crate::runtime::GPU_PACK_ENV)]
    PackNotFound { looked_in: Vec<PathBuf> },
    #[error("GPU pack manifest {}: {message}", .path.display())]
    PackManifest { path: PathBuf, message: String },
    /// One of the pack's NVIDIA libraries (named by its file name) failed to load.
    #[error("{name} failed to load: {message}")]
    PackLibrary { name: String, message: String },
    #[error("the GPU pack exists for Linux x86_64 only")]
    PackPlatform,
    #[error("the GPU pack's ONNX Runtime {} could not be loaded: {message}", .path.display())]
    PackRuntime { path: PathBuf, message: String },
    #[error("NVIDIA driver not found ({0}); the GPU pack needs driver 580 or newer")]
    DriverMissing(String),
    /// CUDA versions as `cuDriverGetVersion` reports them (13000: CUDA 13.0).
    #[error("the NVIDIA driver supports CUDA {}.{}, the GPU pack needs CUDA {}.{} (driver 580 or newer)", .have / 1000, .have % 1000 / 10, .need / 1000, .need % 1000 / 10)]
    DriverTooOld { have: i32, need: i32 },
    #[error("the GPU pack has no TensorRT libraries (tensorrt-cu13-libs 10.x is published on pypi.nvidia.com only)")]
    NoTensorRt,
    /// ONNX Runtime is loaded once per process; the CPU library came first.
    #[error("ONNX Runtime was already loaded without the GPU pack (an earlier session in this process ran on the CPU); restart the host to use the GPU")]
    CpuRuntimeLoaded,
    #[error("ONNX Runtime was already loaded from {} for a CPU session in this process; restart the host to use the GPU pack in {}", .library.display(), .pack.display())]
    CpuRuntimeLoadedFrom { library: PathBuf, pack: PathBuf },
    /// ONNX Runtime refused to register the provider.
    #[error("{0}")]
    Registration(String),
    /// The provider registered but the session could not be built on it.
    #[error("{0}")]
    Session(String),
    /// The session was built but its first run failed.
    #[error("the first run failed: {0}")]
    WarmUp(String),
}
