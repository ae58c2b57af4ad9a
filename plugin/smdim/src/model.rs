//! The model embedded in the plugin binary, so a plugin bundle is self-contained.
//!
//! **Build-time switch**: [`EMBEDDED_MODEL`] names the `.onnx` (and its `.card.json`) relative to
//! the workspace root: the shipped model `models/smdim-default`, with its CPU twin
//! `…-int8.onnx` + card (`python -m smdim.quantize`) that the CPU provider runs. For a build
//! with the engine's small test model instead, set the path in `embedded_model!` to
//! `"plugin/inference/tests/data/tiny"` (fits only 64 tokens: 1–2 bars at low density) and
//! [`IS_TEST_MODEL`] to `true` (the editor then says so; the CPU twin is then not used, but a
//! file of that name must exist: copy the test model's `.onnx` and card to `…-int8.*`).
//!
//! `SMDIM_MODEL=/path/to/model.onnx` (card beside it) overrides the embedded model at run time.

use std::sync::Arc;

use smdim_inference::{ModelSource, ProviderChoice};

macro_rules! embedded_model {
    () => {
        "models/smdim-default"
    };
}

/// Workspace-relative path (without extension) of the embedded model.
pub const EMBEDDED_MODEL: &str = embedded_model!();
/// True while [`EMBEDDED_MODEL`] is the engine's test model (the editor says so).
pub const IS_TEST_MODEL: bool = false;

static ONNX: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../",
    embedded_model!(),
    ".onnx"
));
static CARD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../",
    embedded_model!(),
    ".card.json"
));
/// The CPU twin (`python -m smdim.quantize`: int8 matmul weights, the same ELBO, faster on
/// CPUs); the GPU providers run the fp32 graph above.
static CPU_ONNX: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../",
    embedded_model!(),
    "-int8.onnx"
));
static CPU_CARD: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../",
    embedded_model!(),
    "-int8.card.json"
));

/// Where the generator loads the model from (the fp32 graph). Copies the embedded bytes (call
/// it off the audio thread, on first use).
pub fn source() -> ModelSource {
    source_for(ProviderChoice::Auto)
}

/// The model for a compute device: the int8 twin on the CPU, the fp32 graph for the GPU
/// choices (a GPU that fails falls back to the CPU with that graph). `SMDIM_MODEL` overrides
/// both.
pub fn source_for(device: ProviderChoice) -> ModelSource {
    if let Some(path) = std::env::var_os("SMDIM_MODEL") {
        return ModelSource::from_onnx_path(path);
    }
    let (onnx, card) = if device == ProviderChoice::Cpu && !IS_TEST_MODEL {
        (CPU_ONNX, CPU_CARD)
    } else {
        (ONNX, CARD)
    };
    ModelSource::Memory {
        onnx: Arc::from(onnx),
        card_json: Arc::from(card),
    }
}

/// The embedded model's name from its card (for the editor).
pub fn name() -> String {
    smdim_inference::ModelCard::parse(CARD).map_or_else(|_| "?".into(), |c| c.name)
}

#[cfg(test)]
mod tests {
    #[test]
    fn embedded_card_parses() {
        let card = smdim_inference::ModelCard::parse(super::CARD).unwrap();
        card.check_vocabulary(smdim_engine::Vocabulary::remi_v1())
            .unwrap();
        assert!(super::ONNX.len() > 1000);
        let cpu = smdim_inference::ModelCard::parse(super::CPU_CARD).unwrap();
        assert_eq!(
            cpu.length.max, card.length.max,
            "the twins take the same lengths"
        );
        assert!(super::CPU_ONNX.len() > 1000 && super::CPU_ONNX.len() < super::ONNX.len());
    }
}
