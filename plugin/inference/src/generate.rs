//! One phrase from settings: plan → constrained diffusion sampling → decode.

use std::ops::RangeInclusive;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use serde::{Deserialize, Deserializer, Serialize};
use smdim_engine::codec::decode;
use smdim_engine::codec::{EncodeReport, Encoder};
use smdim_engine::phrase::{Phrase, TimeSignature};
use smdim_engine::sampler::constraints::{plan, PhraseRequest, Plan};
use smdim_engine::sampler::edit::{plan_edit, Edit};
use smdim_engine::sampler::{sample, Order, SampleError, SamplerSettings};
use smdim_engine::theory::Key;
use smdim_engine::vocab::{TokenId, Vocabulary};

use crate::denoiser::{Denoiser, Provider};
use crate::error::InferenceError;
use crate::model::ModelCard;
use crate::style::Style;

/// Bars a phrase may have; others are clamped to this.
pub const BARS: RangeInclusive<u32> = 1..=64;
/// Diffusion steps a generation may take; others are clamped to this.
pub const STEPS: RangeInclusive<u32> = 1..=1000;
/// Sampling temperatures honoured; others are clamped to this (and a non-number reads as 1).
pub const TEMPERATURE: RangeInclusive<f64> = 0.0..=5.0;
/// Nucleus (top-p) masses honoured; others are clamped to this (and a non-number reads as 1).
pub const TOP_P: RangeInclusive<f64> = 0.01..=1.0;
/// Confidence noise honoured; others are clamped to this.
pub const NOISE: RangeInclusive<f64> = 0.0..=10.0;
/// Tonal focus weights honoured; others are clamped to this (and a non-number reads as 0).
pub const TONAL_FOCUS: RangeInclusive<f64> = 0.0..=4.0;

/// `v` within [`TONAL_FOCUS`]; a non-number is 0 (the plain model).
pub(crate) fn honoured_tonal_focus(v: f64) -> f64 {
    if v.is_finite() {
        v.clamp(*TONAL_FOCUS.start(), *TONAL_FOCUS.end())
    } else {
        0.0
    }
}

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
    /// `None` for no key. Saved as the key's name (`"D-minor"`, `"F#-dorian"`) or `null`; a
    /// name this build cannot read loads as no key.
    #[serde(default, deserialize_with = "deserialize_key_lenient")]
    pub key: Option<Key>,
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
    /// Pull toward the key of the pitches already chosen (one key over long phrases);
    /// `None` takes the model card's default.
    #[serde(default)]
    pub tonal_focus: Option<f64>,
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
            tonal_focus: None,
        }
    }
}

/// A saved key: its name or `null`; `""`, `"none"` or a name this build does not know read as
/// no key, so a project never fails to load over its key.
fn deserialize_key_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Key>, D::Error> {
    let text = Option::<String>::deserialize(deserializer)?;
    Ok(text.as_deref().and_then(Key::parse))
}

impl GenerationSettings {
    /// The diffusion steps these settings take with `card`: their own, else the card's for the
    /// style, within [`STEPS`].
    pub fn steps_with(&self, card: &ModelCard) -> u32 {
        self.steps
            .unwrap_or_else(|| card.sampler.steps_for(self.style.id()))
            .clamp(*STEPS.start(), *STEPS.end())
    }

    pub fn request(&self) -> PhraseRequest {
        PhraseRequest {
            bars: self.bars.clamp(*BARS.start(), *BARS.end()),
            time_signature: self.time_signature,
            tempo: Some(self.tempo),
            notes_per_quarter: self.density,
            tokens_per_note: self.style.tokens_per_note(),
            lowest_pitch: self.lowest_pitch.min(127),
            highest_pitch: self.highest_pitch.min(127),
            key: self.key,
            max_notes_per_onset: self.style.max_notes_per_onset(self.max_notes_per_onset),
        }
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
    /// The tonal focus used (the settings' or the card's default; 0 before it existed).
    #[serde(default)]
    pub tonal_focus: f64,
    pub provider: Provider,
    pub elapsed: Duration,
    pub denoiser_calls: u32,
    /// For an edit: the source phrase and what was done with it.
    #[serde(default)]
    pub edit: Option<EditRecord>,
}

/// The source of an edit and the edit, kept with its result (undo history, saved projects).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EditRecord {
    pub source: Phrase,
    pub edit: Edit,
}

/// What generation needs of a denoiser: a [`Denoiser`] of one's own (the CLI), or a turn at a
/// shared one (`&SharedDenoiser`, the plugin's instances).
pub trait Model {
    fn card(&self) -> &ModelCard;
    /// The provider that runs it (recorded with each phrase).
    fn provider(&self) -> Provider;
    fn check_style(&self, style: Style) -> Result<(), InferenceError>;
    /// Logits `[tokens.len(), vocab]` for `style` into `out`.
    fn logits(
        &mut self,
        tokens: &[TokenId],
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError>;
    /// Logits of `batch` sequences of one length laid end to end, `[batch, length, vocab]`
    /// (by default one call per sequence).
    fn logits_batch(
        &mut self,
        tokens: &[TokenId],
        batch: usize,
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        one_by_one(tokens, batch, out, |sequence, one| {
            self.logits(sequence, style, one)
        })
    }
}

/// A batch's logits from one call per sequence (`call` fills a sequence's logits), laid end to
/// end in `out` as a batched call would.
pub(crate) fn one_by_one(
    tokens: &[TokenId],
    batch: usize,
    out: &mut Vec<f32>,
    mut call: impl FnMut(&[TokenId], &mut Vec<f32>) -> Result<(), InferenceError>,
) -> Result<(), InferenceError> {
    let length = tokens.len() / batch.max(1);
    out.clear();
    let mut one = Vec::new();
    for sequence in tokens.chunks(length.max(1)) {
        call(sequence, &mut one)?;
        out.extend_from_slice(&one);
    }
    Ok(())
}

impl Model for Denoiser {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn provider(&self) -> Provider {
        self.provider
    }

    fn check_style(&self, style: Style) -> Result<(), InferenceError> {
        Denoiser::check_style(self, style)
    }

    fn logits(
        &mut self,
        tokens: &[TokenId],
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        Denoiser::logits(self, tokens, style, out)
    }

    fn logits_batch(
        &mut self,
        tokens: &[TokenId],
        batch: usize,
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        Denoiser::logits_batch(self, tokens, batch, style, out)
    }
}

/// Generates one phrase. `progress` receives (steps done, steps); `cancel` is honoured
/// between steps.
pub fn generate(
    denoiser: &mut impl Model,
    settings: &GenerationSettings,
    cancel: &AtomicBool,
    progress: impl FnMut(u32, u32),
) -> Result<Generated, InferenceError> {
    let started = Instant::now();
    // Before planning, so a style the model lacks is reported as that and nothing else.
    denoiser.check_style(settings.style)?;
    let vocab = Vocabulary::remi_v1();
    let request = settings.request();
    let plan = plan(
        vocab,
        &request,
        denoiser.card().length.multiple_of,
        denoiser.card().length.max,
    )?;
    let mut phrase_and_run = run_plan(denoiser, settings, &plan, cancel, progress)?;
    phrase_and_run
        .phrase
        .shape_velocities(settings.velocity.clamp(1, 127), settings.accent);
    phrase_and_run.elapsed = started.elapsed();
    Ok(phrase_and_run)
}

/// `seeds.len()` phrases of one request that differ only in their seed, sampled in lockstep:
/// every diffusion step is one batched denoiser call for all of them, so four variations cost
/// far less than four generations. Variation `i` is what [`generate`] makes with
/// `settings.seed = seeds[i]` (the batched call's logits equal the single call's up to float
/// rounding). `progress` receives (steps done, steps); `cancel` stops all of them.
pub fn generate_variations(
    denoiser: &mut impl Model,
    settings: &GenerationSettings,
    seeds: &[u64],
    cancel: &AtomicBool,
    mut progress: impl FnMut(u32, u32),
) -> Result<Vec<Generated>, InferenceError> {
    let started = Instant::now();
    denoiser.check_style(settings.style)?;
    let vocab = Vocabulary::remi_v1();
    let plan = plan(
        vocab,
        &settings.request(),
        denoiser.card().length.multiple_of,
        denoiser.card().length.max,
    )?;
    let card = denoiser.card().clone();
    let provider = denoiser.provider();
    let steps = settings.steps_with(&card);
    let (requests, calls) = crossbeam_channel::unbounded::<Call>();
    let finished = std::thread::scope(|scope| {
        let samplers: Vec<_> = seeds
            .iter()
            .map(|&seed| {
                let settings = GenerationSettings {
                    seed,
                    ..settings.clone()
                };
                let (reply, replies) = crossbeam_channel::bounded(1);
                let mut turn = Lockstep {
                    card: &card,
                    provider,
                    calls: requests.clone(),
                    reply,
                    replies,
                };
                let plan = &plan;
                scope.spawn(move || run_plan(&mut turn, &settings, plan, cancel, |_, _| {}))
            })
            .collect();
        drop(requests);
        // Each live sampler sends one message a round: a call (then waits for its logits) or,
        // when it is done, its goodbye. A round ends when every live sampler has called.
        let mut live = seeds.len();
        let mut round = 0;
        let (mut batch, mut out) = (Vec::new(), Vec::new());
        while live > 0 {
            let mut waiting = Vec::with_capacity(live);
            while waiting.len() < live {
                match calls.recv() {
                    Ok(Call::Logits { tokens, reply }) => waiting.push((tokens, reply)),
                    Ok(Call::Done) => live -= 1,
                    Err(_) => live = 0,
                }
            }
            if waiting.is_empty() {
                break;
            }
            let length = waiting[0].0.len();
            // Identical sequences run once: every variation's first step (all MASK but the
            // plan's fixed tokens) is the same input, so it costs one sequence, not one each.
            let mut distinct: Vec<usize> = Vec::with_capacity(waiting.len());
            let which: Vec<usize> = (0..waiting.len())
                .map(|i| {
                    let same = distinct.iter().position(|&d| waiting[d].0 == waiting[i].0);
                    same.unwrap_or_else(|| {
                        distinct.push(i);
                        distinct.len() - 1
                    })
                })
                .collect();
            let result = if waiting.iter().all(|(t, _)| t.len() == length) {
                batch.clear();
                for &d in &distinct {
                    batch.extend_from_slice(&waiting[d].0);
                }
                denoiser.logits_batch(&batch, distinct.len(), settings.style, &mut out)
            } else {
                Err(InferenceError::Run(
                    "internal: variations of one plan differ in length".into(),
                ))
            };
            let each = out.len() / distinct.len();
            for ((_, reply), &i) in waiting.into_iter().zip(&which) {
                let answer = match &result {
                    Ok(()) => Ok(out[i * each..(i + 1) * each].to_vec()),
                    Err(e) => Err(InferenceError::Run(e.to_string())),
                };
                let _ = reply.send(answer);
            }
            round += 1;
            progress(round.min(steps), steps);
        }
        samplers
            .into_iter()
            .map(|s| {
                s.join().unwrap_or_else(|_| {
                    Err(InferenceError::Run(
                        "internal: a variation's sampler panicked".into(),
                    ))
                })
            })
            .collect::<Vec<_>>()
    });
    let mut variations = Vec::with_capacity(seeds.len());
    for generated in finished {
        let mut generated = generated?;
        generated
            .phrase
            .shape_velocities(settings.velocity.clamp(1, 127), settings.accent);
        generated.elapsed = started.elapsed();
        variations.push(generated);
    }
    Ok(variations)
}

/// A sampler's request to the batching loop of [`generate_variations`].
enum Call {
    Logits {
        tokens: Vec<TokenId>,
        reply: crossbeam_channel::Sender<Result<Vec<f32>, InferenceError>>,
    },
    /// The sampler has finished (or failed): the rounds stop waiting for it.
    Done,
}

/// One variation's view of the denoiser: its calls go to the batching loop.
struct Lockstep<'a> {
    card: &'a ModelCard,
    provider: Provider,
    calls: crossbeam_channel::Sender<Call>,
    reply: crossbeam_channel::Sender<Result<Vec<f32>, InferenceError>>,
    replies: crossbeam_channel::Receiver<Result<Vec<f32>, InferenceError>>,
}

impl Model for Lockstep<'_> {
    fn card(&self) -> &ModelCard {
        self.card
    }

    fn provider(&self) -> Provider {
        self.provider
    }

    fn check_style(&self, _style: Style) -> Result<(), InferenceError> {
        Ok(()) // checked once, before the samplers start
    }

    fn logits(
        &mut self,
        tokens: &[TokenId],
        _style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        let call = Call::Logits {
            tokens: tokens.to_vec(),
            reply: self.reply.clone(),
        };
        let gone = || InferenceError::Run("internal: the batching loop stopped".into());
        self.calls.send(call).map_err(|_| gone())?;
        *out = self.replies.recv().map_err(|_| gone())??;
        Ok(())
    }
}

impl Drop for Lockstep<'_> {
    /// Also on an error or a panic, so the batching loop never waits for a sampler that left.
    fn drop(&mut self) {
        let _ = self.calls.send(Call::Done);
    }
}

/// An edit of the musician's phrase: what was generated, and what quantising the source to the
/// model's grid changed.
#[derive(Debug, Clone)]
pub struct Edited {
    pub generated: Generated,
    pub report: EncodeReport,
}

/// Edits `source` ([`Edit`]): the kept notes come back identical to the source after
/// quantisation (velocities included); the new ones follow `settings` (its constraints, style,
/// sampler and velocity). The phrase takes the source's meter; Infill and Vary its bars, Continue
/// `settings.bars`.
pub fn generate_edit(
    denoiser: &mut impl Model,
    settings: &GenerationSettings,
    source: &Phrase,
    edit: &Edit,
    cancel: &AtomicBool,
    progress: impl FnMut(u32, u32),
) -> Result<Edited, InferenceError> {
    let started = Instant::now();
    denoiser.check_style(settings.style)?;
    let vocab = Vocabulary::remi_v1();
    let mut settings = settings.clone();
    settings.time_signature = source.time_signature;
    if !matches!(edit, Edit::Continue { .. }) {
        settings.bars = source.bars.max(1);
    }
    let request = settings.request();
    let edit_plan = plan_edit(
        vocab,
        &request,
        source,
        edit,
        settings.seed,
        denoiser.card().length.multiple_of,
        denoiser.card().length.max,
    )?;
    let mut generated = run_plan(denoiser, &settings, &edit_plan.plan, cancel, progress)?;
    // New notes get the settings' velocity shape; kept ones their own velocity.
    generated
        .phrase
        .shape_velocities(settings.velocity.clamp(1, 127), settings.accent);
    let kept = quantised(vocab, source);
    for note in &mut generated.phrase.notes {
        if let Some(k) = kept
            .iter()
            .find(|k| (k.start, k.pitch, k.length) == (note.start, note.pitch, note.length))
        {
            note.velocity = k.velocity;
        }
    }
    generated.elapsed = started.elapsed();
    generated.edit = Some(EditRecord {
        source: source.clone(),
        edit: *edit,
    });
    Ok(Edited {
        generated,
        report: edit_plan.report,
    })
}

/// `source` on the model's grid (what the encoder makes of it), with each note's velocity.
pub fn quantised(vocab: &Vocabulary, source: &Phrase) -> Vec<smdim_engine::Note> {
    let Ok((ids, _)) = Encoder::new(vocab).encode(source) else {
        return Vec::new();
    };
    let mut notes = decode(vocab, &ids).phrase.notes;
    for note in &mut notes {
        // The original note nearest in time with this pitch gives its velocity.
        if let Some(original) = source
            .notes
            .iter()
            .filter(|o| o.pitch == note.pitch)
            .min_by_key(|o| o.start.abs_diff(note.start))
        {
            note.velocity = original.velocity;
        }
    }
    notes
}

/// Samples `plan` and decodes it (velocities as the decoder leaves them).
fn run_plan(
    denoiser: &mut impl Model,
    settings: &GenerationSettings,
    plan: &Plan,
    cancel: &AtomicBool,
    progress: impl FnMut(u32, u32),
) -> Result<Generated, InferenceError> {
    let started = Instant::now();
    let vocab = Vocabulary::remi_v1();
    let steps = settings.steps_with(denoiser.card());
    let (default_order, default_noise) = denoiser.card().sampler.defaults_for(settings.style.id());
    let sampler = SamplerSettings {
        steps,
        temperature: if settings.temperature.is_finite() {
            settings
                .temperature
                .clamp(*TEMPERATURE.start(), *TEMPERATURE.end())
        } else {
            1.0
        },
        top_p: if settings.top_p.is_finite() {
            settings.top_p.clamp(*TOP_P.start(), *TOP_P.end())
        } else {
            1.0
        },
        seed: settings.seed,
        order: settings.order.unwrap_or(default_order),
        noise: settings
            .noise
            .unwrap_or(default_noise)
            .clamp(*NOISE.start(), *NOISE.end()),
        tonal_focus: settings.tonal_focus.map_or_else(
            || denoiser.card().sampler.tonal_focus_for(settings.style.id()),
            honoured_tonal_focus,
        ),
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
    Ok(Generated {
        phrase: decoded.phrase,
        tokens,
        settings: settings.clone(),
        steps,
        provider: denoiser.provider(),
        elapsed: started.elapsed(),
        denoiser_calls: stats.denoiser_calls,
        order: sampler.order,
        tonal_focus: sampler.tonal_focus,
        edit: None,
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

    /// The key field's JSON is what it was when it held the key's name as a string, so every
    /// saved project loads as before; names this build cannot read load as no key.
    #[test]
    fn key_is_saved_as_its_name_and_odd_names_load_as_no_key() {
        let d_minor = GenerationSettings {
            key: Key::parse("D-minor"),
            ..Default::default()
        };
        let mut value = serde_json::to_value(&d_minor).unwrap();
        assert_eq!(value["key"], "D-minor");
        assert_eq!(
            serde_json::from_value::<GenerationSettings>(value.clone()).unwrap(),
            d_minor
        );
        let none = serde_json::to_value(GenerationSettings::default()).unwrap();
        assert_eq!(none["key"], serde_json::Value::Null);
        for (saved, key) in [
            (serde_json::json!("F#-dorian"), Key::parse("F#-dorian")),
            (serde_json::json!("Bb major"), Key::parse("A#-major")),
            (serde_json::json!(null), None),
            (serde_json::json!(""), None),
            (serde_json::json!("none"), None),
            (serde_json::json!("Q-minor"), None),
        ] {
            value["key"] = saved.clone();
            let loaded: GenerationSettings = serde_json::from_value(value.clone()).unwrap();
            assert_eq!(loaded.key, key, "{saved}");
        }
        value.as_object_mut().unwrap().remove("key");
        let older: GenerationSettings = serde_json::from_value(value).unwrap();
        assert_eq!(older.key, None);
    }
}
