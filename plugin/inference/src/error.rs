use std::path::PathBuf;

use smdim_engine::sampler::constraints::PlanError;
use thiserror::Error;

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
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("generation cancelled")]
    Cancelled,
    #[error("the generation worker has stopped")]
    WorkerGone,
}
