//! Running the SMDIM denoiser: ONNX Runtime loading, sessions on CPU/CUDA/TensorRT with our
//! native selective-scan operator, phrase generation and the generation worker thread.
//!
//! - [`runtime`]: find and load the ONNX Runtime library (from the PyPI wheel, see
//!   `cargo xtask fetch-ort`) without ever panicking.
//! - [`model`]: the ONNX file and its model card.
//! - [`session`]: a [`Denoiser`] on the best working execution provider.
//! - [`style`]: the style a style-conditioned model writes in.
//! - [`generate`]: settings → phrase through the constrained sampler of `smdim-engine`.
//! - [`worker`]: the dedicated generation thread and its shared state.

pub mod error;
pub mod generate;
pub mod model;
pub mod runtime;
pub mod session;
pub mod style;
pub mod worker;

pub use error::InferenceError;
pub use generate::{generate, Generated, GenerationSettings};
pub use model::{ModelCard, ModelSource};
pub use session::{Denoiser, Provider, ProviderChoice, SessionOptions};
pub use style::Style;
pub use worker::{Generator, Phase, Shared, Status};
