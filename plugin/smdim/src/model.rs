//! The model embedded in the plugin binary, so a plugin bundle is self-contained.
//!
//! **Build-time switch**: [`EMBEDDED_MODEL`] names the `.onnx` (and its `.card.json`) relative to
//! the workspace root: the shipped model `models/smdim-default`. For a build with the engine's
//! small test model instead, set the path in `embedded_model!` to
//! `"plugin/inference/tests/data/tiny"` (fits only 64 tokens: 1–2 bars at low density) and
//! [`IS_TEST_MODEL`] to `true` (the editor then says so).
//!
//! `SMDIM_MODEL=/path/to/model.onnx` (card beside it) overrides the embedded model at run time.

use std::sync::Arc;

use smdim_inference::ModelSource;

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

/// Where the generator loads the model from. Copies the embedded bytes (call it off the audio
/// thread, on first use).
pub fn source() -> ModelSource {
    if let Some(path) = std::env::var_os("SMDIM_MODEL") {
        return ModelSource::from_onnx_path(path);
    }
    ModelSource::Memory {
        onnx: Arc::from(ONNX),
        card_json: Arc::from(CARD),
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
    }
}
