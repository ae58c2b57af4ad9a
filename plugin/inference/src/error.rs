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
    #[error("generation cancelled")]
    Cancelled,
    #[error("the generation worker has stopped")]
    WorkerGone,
}
