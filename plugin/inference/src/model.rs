//! The exported denoiser and its model card.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::InferenceError;
use crate::style::Style;
use smdim_engine::sampler::Order;
use smdim_engine::vocab::{Vocabulary, REMI_V1_JSON};

#[derive(Debug, Clone, Deserialize)]
pub struct CardVocab {
    pub sha256: String,
    pub size: usize,
    pub mask_id: u32,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardLength {
    pub multiple_of: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Deserialize)]
pub struct CardSampler {
    pub default_steps: u32,
    /// Chosen from the evaluation table; cards before the confidence order lack it.
    #[serde(default)]
    pub default_order: Order,
    #[serde(default)]
    pub default_noise: f64,
    /// Per-style overrides of order and noise (style id → settings), chosen from the
    /// evaluation: e.g. chorales meet their targets in confidence order, melodies in random.
    #[serde(default)]
    pub styles: std::collections::BTreeMap<String, StyleSampler>,
    /// The sampler's pull toward the key of the phrase's chosen pitches; cards before it lack
    /// it (0).
    #[serde(default)]
    pub tonal_focus: f64,
}

/// A style's sampler defaults in the card.
#[derive(Debug, Clone, Deserialize)]
pub struct StyleSampler {
    pub order: Order,
    #[serde(default)]
    pub noise: f64,
    /// Its default step count (absent: the card's `default_steps`).
    #[serde(default)]
    pub steps: Option<u32>,
    /// Its tonal focus (absent: the card's `tonal_focus`).
    #[serde(default)]
    pub tonal_focus: Option<f64>,
}

impl CardSampler {
    /// The default step count for `style_id`: its override, else the card's default.
    pub fn steps_for(&self, style_id: &str) -> u32 {
        self.styles
            .get(style_id)
            .and_then(|s| s.steps)
            .unwrap_or(self.default_steps)
    }

    /// The default tonal focus for `style_id`: its override, else the card's.
    pub fn tonal_focus_for(&self, style_id: &str) -> f64 {
        crate::generate::honoured_tonal_focus(
            self.styles
                .get(style_id)
                .and_then(|s| s.tonal_focus)
                .unwrap_or(self.tonal_focus),
        )
    }

    /// The default (order, noise) for `style_id`: its override, else the card's default.
    pub fn defaults_for(&self, style_id: &str) -> (Order, f64) {
        self.styles
            .get(style_id)
            .map_or((self.default_order, self.default_noise), |s| {
                (s.order, s.noise)
            })
    }
}

/// The parts of `*.card.json` the engine relies on (the card carries more for people).
#[derive(Debug, Clone, Deserialize)]
pub struct ModelCard {
    pub name: String,
    pub vocab: CardVocab,
    pub length: CardLength,
    pub sampler: CardSampler,
    #[serde(default)]
    pub params: Option<u64>,
    /// Style ids by model index (`["any", "melody", "chorale"]`); empty for a model without a
    /// `style` input (cards written before style conditioning have none).
    #[serde(default)]
    pub styles: Vec<String>,
    /// Present on a dynamically quantised twin (`python -m smdim.quantize`): its activations are
    /// quantised with one scale per call, so a batch's logits depend on its other sequences.
    #[serde(default)]
    pub quantization: Option<serde_json::Value>,
}

impl ModelCard {
    /// Whether a batched call gives each sequence exactly the logits of a call of its own.
    pub fn batch_is_exact(&self) -> bool {
        self.quantization.is_none()
    }

    pub fn parse(json: &str) -> Result<ModelCard, InferenceError> {
        let card: ModelCard =
            serde_json::from_str(json).map_err(|e| InferenceError::Card(e.to_string()))?;
        if card.length.multiple_of == 0 || card.length.max < card.length.multiple_of {
            return Err(InferenceError::Card(format!(
                "nonsensical length limits {:?}",
                card.length
            )));
        }
        for (style, id) in Style::ALL.iter().zip(&card.styles) {
            if style.id() != id {
                return Err(InferenceError::Card(format!(
                    "style {} is {id:?}, this build knows it as {:?}",
                    style.index(),
                    style.id()
                )));
            }
        }
        Ok(card)
    }

    /// Whether the card lists `style` at its model index (checked by [`ModelCard::parse`]).
    pub fn has_style(&self, style: Style) -> bool {
        style.index() < self.styles.len()
    }

    /// The model must have been trained on exactly the embedded vocabulary.
    pub fn check_vocabulary(&self, vocab: &Vocabulary) -> Result<(), InferenceError> {
        let ours = sha256_hex(REMI_V1_JSON.as_bytes());
        if self.vocab.sha256 != ours {
            return Err(InferenceError::VocabularyMismatch(format!(
                "card says vocabulary sha256 {}, this build has {ours}",
                self.vocab.sha256
            )));
        }
        if self.vocab.size != vocab.len() || self.vocab.mask_id != vocab.mask_id() {
            return Err(InferenceError::VocabularyMismatch(format!(
                "card says {} tokens with MASK = {}, this build has {} with MASK = {}",
                self.vocab.size,
                self.vocab.mask_id,
                vocab.len(),
                vocab.mask_id()
            )));
        }
        Ok(())
    }
}

/// Where the ONNX bytes come from: embedded in the plugin binary or a file.
#[derive(Debug, Clone)]
pub enum ModelSource {
    Memory {
        onnx: Arc<[u8]>,
        card_json: Arc<str>,
    },
    Files {
        onnx: PathBuf,
        card: PathBuf,
    },
}

impl ModelSource {
    /// `model.onnx` with its card `model.card.json` beside it.
    pub fn from_onnx_path(onnx: impl Into<PathBuf>) -> ModelSource {
        let onnx = onnx.into();
        let card = onnx.with_extension("card.json");
        ModelSource::Files { onnx, card }
    }

    /// A digest of the model's bytes and card: two sources with the same fingerprint load the
    /// same denoiser (see `pool`).
    pub fn fingerprint(&self) -> Result<String, InferenceError> {
        let (bytes, card) = match self {
            ModelSource::Memory { onnx, card_json } => (onnx.clone(), card_json.to_string()),
            ModelSource::Files { onnx, card } => {
                let card_bytes = read_model_file(card)?;
                (
                    read_model_file(onnx)?.into(),
                    String::from_utf8_lossy(&card_bytes).into_owned(),
                )
            }
        };
        Ok(format!(
            "{}-{}",
            sha256_hex(&bytes),
            sha256_hex(card.as_bytes())
        ))
    }

    pub fn load(&self) -> Result<(Arc<[u8]>, ModelCard), InferenceError> {
        match self {
            ModelSource::Memory { onnx, card_json } => {
                Ok((onnx.clone(), ModelCard::parse(card_json)?))
            }
            ModelSource::Files { onnx, card } => {
                let bytes = read_model_file(onnx)?;
                let card_text = String::from_utf8(read_model_file(card)?).map_err(|_| {
                    InferenceError::ModelFile {
                        path: card.clone(),
                        message: "not UTF-8".into(),
                    }
                })?;
                Ok((bytes.into(), ModelCard::parse(&card_text)?))
            }
        }
    }
}

fn read_model_file(path: &Path) -> Result<Vec<u8>, InferenceError> {
    std::fs::read(path).map_err(|e| InferenceError::ModelFile {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The shipped default model (fp32, the graph GPUs run), looked up beside the binary
/// (installed layout), in `models/` of the source tree, or at `SMDIM_MODEL`.
pub fn default_model_path() -> Option<PathBuf> {
    find_shipped("smdim-default.onnx")
}

/// The shipped model for `provider`: on the CPU its int8 twin `smdim-default-int8.onnx`
/// (`python -m smdim.quantize`: same ELBO, faster on CPUs) where it is found, else the fp32
/// graph; `SMDIM_MODEL` wins either way.
pub fn default_model_path_for(provider: crate::ProviderChoice) -> Option<PathBuf> {
    if provider == crate::ProviderChoice::Cpu && std::env::var_os("SMDIM_MODEL").is_none() {
        if let Some(path) = find_shipped(CPU_MODEL_FILE) {
            return Some(path);
        }
    }
    default_model_path()
}

/// The file name of the shipped model's CPU twin.
pub const CPU_MODEL_FILE: &str = "smdim-default-int8.onnx";

fn find_shipped(file: &str) -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("SMDIM_MODEL") {
        candidates.push(PathBuf::from(path));
    }
    if let Some(dir) = crate::runtime::own_binary_dir() {
        candidates.push(dir.join("models").join(file));
        candidates.push(dir.join(file));
    }
    candidates.push(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../models")
            .join(file),
    );
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The CPU gets the int8 twin, GPU choices the fp32 graph (the source tree ships both).
    #[test]
    fn the_cpu_runs_the_int8_twin_and_gpus_the_fp32_graph() {
        if std::env::var_os("SMDIM_MODEL").is_some() {
            return; // an override wins for every provider (documented); nothing to compare
        }
        let cpu = default_model_path_for(crate::ProviderChoice::Cpu).expect("models/ has the twin");
        assert_eq!(cpu.file_name().unwrap(), CPU_MODEL_FILE);
        for gpu in [
            crate::ProviderChoice::Cuda,
            crate::ProviderChoice::TensorRt,
            crate::ProviderChoice::Auto,
        ] {
            let path = default_model_path_for(gpu).unwrap();
            assert_eq!(path.file_name().unwrap(), "smdim-default.onnx");
        }
    }

    const STYLED: &str = include_str!("../tests/data/tiny.card.json");
    const NOSTYLE: &str = include_str!("../tests/data/tiny-nostyle.card.json");

    #[test]
    fn cards_with_and_without_styles_parse() {
        let styled = ModelCard::parse(STYLED).unwrap();
        assert_eq!(styled.styles, ["any", "melody", "chorale"]);
        assert!(Style::ALL.into_iter().all(|s| styled.has_style(s)));
        let plain = ModelCard::parse(NOSTYLE).unwrap();
        assert!(plain.styles.is_empty(), "written before style conditioning");
        assert!(Style::ALL.into_iter().all(|s| !plain.has_style(s)));
    }

    #[test]
    fn styles_in_another_order_are_a_card_error() {
        let mut card: serde_json::Value = serde_json::from_str(STYLED).unwrap();
        card["styles"] = serde_json::json!(["any", "chorale", "melody"]);
        let err = ModelCard::parse(&card.to_string()).unwrap_err();
        assert!(
            matches!(&err, InferenceError::Card(why) if why.contains("\"chorale\"")),
            "{err}"
        );
        // Styles this build does not know, after the ones it does, are no reason to refuse.
        card["styles"] = serde_json::json!(["any", "melody", "chorale", "hymn"]);
        let card = ModelCard::parse(&card.to_string()).unwrap();
        assert!(card.has_style(Style::Chorale));
    }

    #[test]
    fn sampler_defaults_per_style() {
        let mut card: serde_json::Value = serde_json::from_str(STYLED).unwrap();
        let plain = ModelCard::parse(&card.to_string()).unwrap();
        assert_eq!(plain.sampler.defaults_for("chorale"), (Order::Random, 0.0));
        card["sampler"]["default_order"] = serde_json::json!("random");
        card["sampler"]["styles"] =
            serde_json::json!({"chorale": {"order": "confidence", "noise": 3.0}});
        let card = ModelCard::parse(&card.to_string()).unwrap();
        assert_eq!(
            card.sampler.defaults_for("chorale"),
            (Order::Confidence, 3.0)
        );
        assert_eq!(card.sampler.defaults_for("melody"), (Order::Random, 0.0));
    }

    #[test]
    fn tonal_focus_per_style_absent_is_off_and_out_of_range_is_clamped() {
        let mut card: serde_json::Value = serde_json::from_str(STYLED).unwrap();
        let plain = ModelCard::parse(&card.to_string()).unwrap();
        assert_eq!(
            plain.sampler.tonal_focus_for("melody"),
            0.0,
            "cards before it"
        );
        card["sampler"]["tonal_focus"] = serde_json::json!(2.0);
        card["sampler"]["styles"] = serde_json::json!({
            "chorale": {"order": "confidence", "tonal_focus": 0.0},
            "any": {"order": "random", "tonal_focus": 9.0},
        });
        let card = ModelCard::parse(&card.to_string()).unwrap();
        assert_eq!(card.sampler.tonal_focus_for("melody"), 2.0);
        assert_eq!(card.sampler.tonal_focus_for("chorale"), 0.0);
        assert_eq!(
            card.sampler.tonal_focus_for("any"),
            *crate::generate::TONAL_FOCUS.end()
        );
    }
}
