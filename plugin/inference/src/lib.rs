//! Running the SMDIM denoiser: ONNX Runtime loading, the denoiser on CPU/CUDA/TensorRT with our
//! native selective-scan operator, and phrase generation.
//!
//! - [`runtime`]: find and load the ONNX Runtime library (from the PyPI wheel, see
//!   `cargo xtask fetch-ort`) without ever panicking.
//! - [`model`]: the ONNX file and its model card.
//! - [`denoiser`]: a [`Denoiser`] (an ONNX Runtime session of the model) on the best working
//!   execution provider, with the typed reason each one before it was passed over.
//! - [`style`]: the style a style-conditioned model writes in.
//! - [`pool`]: one loaded model per model and device in the process, shared by plugin instances.
//! - [`generate`]: settings → phrase through the constrained sampler of `smdim-engine`.
//!
//! Threads are the caller's: the plugin runs generation on its own thread, the CLI on its main.

pub mod denoiser;
pub mod error;
pub mod generate;
pub mod model;
pub mod pool;
pub mod runtime;
pub mod style;

pub use denoiser::{Denoiser, LoadOptions, Provider, ProviderChoice};
pub use error::{FallbackReason, InferenceError};
pub use generate::{
    generate, generate_edit, generate_variations, EditRecord, Edited, Generated,
    GenerationSettings, Model,
};
pub use model::{ModelCard, ModelSource};
pub use pool::SharedDenoiser;
pub use style::Style;
