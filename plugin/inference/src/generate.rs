//! One phrase from settings: plan → constrained diffusion sampling → decode.

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use smdim_engine::codec::decode;
use smdim_engine::phrase::{Phrase, TimeSignature};
use smdim_engine::sampler::constraints::{plan, Key, PhraseRequest};
use smdim_engine::sampler::{sample, Order, SampleError, SamplerSettings};
use smdim_engine::vocab::{TokenId, Vocabulary};

use crate::error::InferenceError;
use crate::session::{Denoiser, Provider};
use crate::style::Style;

/// Everything that determines a phrase. Saved with it, so "the settings that made it" travel
/// with the phrase into the host project.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenerationSettings {
    pub bars: u32,
    pub time_signature: TimeSignature,
    pub tempo: f32,
    /// Diffusion steps; `None` takes the model card's default.
    pub steps: Option<u32>,
    pub temperature: f64,
    pub top_p: f64,
    pub seed: u64,
    /// Average notes per quarter note.
    pub density: f64,
    pub lowest_pitch: u8,
    pub highest_pitch: u8,
    /// `D-minor`, `F#-dorian`...; `None` for no key.
    pub key: Option<String>,
    pub max_notes_per_onset: u32,
    pub velocity: u8,
    pub accent: u8,
    /// Added after the first saved settings: absent means the default (Melody), and a style
    /// this build does not know reads as the default too, so older and newer projects load.
    #[serde(default, deserialize_with = "crate::style::deserialize_lenient")]
    pub style: Style,
    /// Unmasking order; `None` takes the model card's default.
    #[serde(default)]
    pub order: Option<Order>,
    /// Confidence noise; `None` takes the model card's default.
    #[serde(default)]
    pub noise: Option<f64>,
}

impl Default for GenerationSettings {
    fn default() -> Self {
        GenerationSettings {
            bars: 8,
            time_signature: TimeSignature::FOUR_FOUR,
            tempo: 120.0,
            steps: None,
            temperature: 1.0,
            top_p: 0.95,
            seed: 0,
            density: Style::Melody.typical_density(),
            lowest_pitch: 48,
            highest_pitch: 84,
            key: None,
            max_notes_per_onset: 4,
            velocity: 90,
            accent: 20,
            style: Style::default(),
            order: None,
            noise: None,
        }
    }
}

impl GenerationSettings {
    pub fn parsed_key(&self) -> Result<Option<Key>, InferenceError> {
        match self.key.as_deref().map(str::trim) {
            None | Some("") | Some("none") => Ok(None),
            Some(text) => Key::parse(text).map(Some).ok_or_else(|| {
                InferenceError::Run(format!(
                    "unknown key {text:?} (try D-minor, F#-dorian, Bb-major)"
                ))
            }),
        }
    }

    pub fn request(&self) -> Result<PhraseRequest, InferenceError> {
        Ok(PhraseRequest {
            bars: self.bars.clamp(1, 64),
            time_signature: self.time_signature,
            tempo: Some(self.tempo),
            notes_per_quarter: self.density,
            tokens_per_note: self.style.tokens_per_note(),
            lowest_pitch: self.lowest_pitch.min(127),
            highest_pitch: self.highest_pitch.min(127),
            key: self.parsed_key()?,
            max_notes_per_onset: self.style.max_notes_per_onset(self.max_notes_per_onset),
        })
    }
}

/// A generated phrase with what made it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Generated {
    pub phrase: Phrase,
    pub tokens: Vec<TokenId>,
    pub settings: GenerationSettings,
    pub steps: u32,
    /// The unmasking order used (the settings' or the card's default).
    #[serde(default)]
    pub order: Order,
    pub provider: Provider,
    pub elapsed: Duration,
    pub denoiser_calls: u32,
}

/// Generates one phrase. `progress` receives (steps done, steps); `cancel` is honoured
/// between steps.
pub fn generate(
    denoiser: &mut Denoiser,
    settings: &GenerationSettings,
    cancel: &AtomicBool,
    progress: impl FnMut(u32, u32),
) -> Result<Generated, InferenceError> {
    let started = Instant::now();
    // Before planning, so a style the model lacks is reported as that and nothing else.
    denoiser.check_style(settings.style)?;
    let vocab = Vocabulary::remi_v1();
    let request = settings.request()?;
    let plan = plan(
        vocab,
        &request,
        denoiser.card.length.multiple_of,
        denoiser.card.length.max,
    )?;
    let steps = settings
        .steps
        .unwrap_or(denoiser.card.sampler.default_steps)
        .clamp(1, 1000);
    let (default_order, default_noise) = denoiser.card.sampler.defaults_for(settings.style.id());
    let sampler = SamplerSettings {
        steps,
        temperature: if settings.temperature.is_finite() {
            settings.temperature.clamp(0.0, 5.0)
        } else {
            1.0
        },
        top_p: if settings.top_p.is_finite() {
            settings.top_p.clamp(0.01, 1.0)
        } else {
            1.0
        },
        seed: settings.seed,
        order: settings.order.unwrap_or(default_order),
        noise: settings.noise.unwrap_or(default_noise).clamp(0.0, 10.0),
    };
    let style = settings.style;
    let mut logits = |tokens: &[TokenId], out: &mut Vec<f32>| denoiser.logits(tokens, style, out);
    let (tokens, stats) = sample(
        vocab,
        &mut logits,
        &plan.tokens,
        &sampler,
        Some(&plan.constraints),
        cancel,
        progress,
    )
    .map_err(|e| match e {
        SampleError::Cancelled => InferenceError::Cancelled,
        SampleError::Denoiser(e) => e,
        other => InferenceError::Run(other.to_string()),
    })?;
    // The plan's end marker (the next bar's `Bar TimeSig`) is not part of the phrase.
    let tokens = plan.phrase_tokens(&tokens).to_vec();
    let decoded = decode(vocab, &tokens);
    if decoded.report.skipped() > 0 || stats.relaxed_choices > 0 {
        // The constraints make this impossible; a failure here is a bug worth a clear message.
        return Err(InferenceError::Run(format!(
            "internal: constrained sampling produced {} ungrammatical tokens",
            decoded.report.skipped()
        )));
    }
    let mut phrase = decoded.phrase;
    phrase.shape_velocities(settings.velocity.clamp(1, 127), settings.accent);
    Ok(Generated {
        phrase,
        tokens,
        settings: settings.clone(),
        steps,
        provider: denoiser.provider,
        elapsed: started.elapsed(),
        denoiser_calls: stats.denoiser_calls,
        order: sampler.order,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn style_round_trips_and_older_settings_load_with_melody() {
        let chorale = GenerationSettings {
            style: Style::Chorale,
            ..Default::default()
        };
        let mut value = serde_json::to_value(&chorale).unwrap();
        assert_eq!(value["style"], "chorale", "the stable id on disk");
        assert_eq!(
            serde_json::from_value::<GenerationSettings>(value.clone()).unwrap(),
            chorale
        );
        assert_eq!(GenerationSettings::default().style, Style::Melody);

        value.as_object_mut().unwrap().remove("style");
        let older: GenerationSettings = serde_json::from_value(value.clone()).unwrap();
        assert_eq!(older.style, Style::Melody, "saved before styles existed");
        for odd in [serde_json::json!("banjo"), serde_json::json!(2)] {
            value["style"] = odd.clone();
            let newer: GenerationSettings = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(newer.style, Style::Melody, "{odd}");
        }
    }
}
