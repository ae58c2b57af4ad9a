//! The host-visible parameters. Ids are stable: never rename one (projects and automation
//! refer to them).
//!
//! Generation parameters (bars, steps, temperature, density, pitch range, key, scale, seed,
//! velocity, style) only shape the *next* generation; the phrase that plays changes only when a new
//! generation arrives. Playback parameters (mode, MIDI channel, pass-through) act at once.

use std::sync::Arc;

use nice_plug::prelude::*;
use nice_plug_egui::EguiEditorState;
use smdim_engine::scheduler::PlaybackMode;
use smdim_engine::theory::{Key, Scale};
use smdim_engine::TimeSignature;
use smdim_inference::{GenerationSettings, Style};

use crate::shared::StateField;

#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    #[id = "loop"]
    #[name = "Loop (locked to bars)"]
    Loop,
    #[id = "once"]
    #[name = "Once (from next bar)"]
    Once,
    #[id = "off"]
    #[name = "Off"]
    Off,
}

impl Mode {
    pub fn playback(self) -> PlaybackMode {
        match self {
            Mode::Loop => PlaybackMode::Loop,
            Mode::Once => PlaybackMode::Once,
            Mode::Off => PlaybackMode::Off,
        }
    }
}

/// The Key parameter: no key or a tonic. The names are host-visible values and must stay
/// literals for the derive; a test holds them equal to [`smdim_engine::theory::NOTE_NAMES`].
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRoot {
    #[id = "none"]
    #[name = "None"]
    None,
    #[id = "c"]
    C,
    #[id = "c#"]
    #[name = "C#"]
    CSharp,
    #[id = "d"]
    D,
    #[id = "d#"]
    #[name = "D#"]
    DSharp,
    #[id = "e"]
    E,
    #[id = "f"]
    F,
    #[id = "f#"]
    #[name = "F#"]
    FSharp,
    #[id = "g"]
    G,
    #[id = "g#"]
    #[name = "G#"]
    GSharp,
    #[id = "a"]
    A,
    #[id = "a#"]
    #[name = "A#"]
    ASharp,
    #[id = "b"]
    B,
}

impl KeyRoot {
    /// The tonic's pitch class (C = 0), `None` for no key.
    fn tonic(self) -> Option<u8> {
        (self as u8).checked_sub(1)
    }
}

/// The Scale parameter: [`Scale`] as a nice-plug enum. Ids are the scales' names (a test holds
/// them equal).
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleParam {
    #[id = "major"]
    Major,
    #[id = "minor"]
    Minor,
    #[id = "harmonic-minor"]
    #[name = "Harmonic minor"]
    HarmonicMinor,
    #[id = "dorian"]
    Dorian,
    #[id = "mixolydian"]
    Mixolydian,
    #[id = "major-pentatonic"]
    #[name = "Major pentatonic"]
    MajorPentatonic,
    #[id = "minor-pentatonic"]
    #[name = "Minor pentatonic"]
    MinorPentatonic,
}

impl ScaleParam {
    fn scale(self) -> Scale {
        match self {
            ScaleParam::Major => Scale::Major,
            ScaleParam::Minor => Scale::Minor,
            ScaleParam::HarmonicMinor => Scale::HarmonicMinor,
            ScaleParam::Dorian => Scale::Dorian,
            ScaleParam::Mixolydian => Scale::Mixolydian,
            ScaleParam::MajorPentatonic => Scale::MajorPentatonic,
            ScaleParam::MinorPentatonic => Scale::MinorPentatonic,
        }
    }
}

/// The Style parameter: [`Style`] as a nice-plug enum. Names and ids come from `Style` itself,
/// so there is no second list of styles to keep in step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StyleParam(pub Style);

const STYLE_COUNT: usize = Style::ALL.len();

const STYLE_NAMES: [&str; STYLE_COUNT] = {
    let mut names = [""; STYLE_COUNT];
    let mut i = 0;
    while i < STYLE_COUNT {
        names[i] = Style::ALL[i].name();
        i += 1;
    }
    names
};

const STYLE_IDS: [&str; STYLE_COUNT] = {
    let mut ids = [""; STYLE_COUNT];
    let mut i = 0;
    while i < STYLE_COUNT {
        ids[i] = Style::ALL[i].id();
        i += 1;
    }
    ids
};

impl Enum for StyleParam {
    fn variants() -> &'static [&'static str] {
        &STYLE_NAMES
    }

    fn ids() -> Option<&'static [&'static str]> {
        Some(&STYLE_IDS)
    }

    fn to_index(self) -> usize {
        Style::ALL.iter().position(|&s| s == self.0).unwrap_or(0)
    }

    fn from_index(index: usize) -> Self {
        StyleParam(Style::ALL.get(index).copied().unwrap_or(Style::ALL[0]))
    }
}

/// Base velocity and accent the velocity scale multiplies.
pub const BASE_VELOCITY: f32 = 90.0;
pub const BASE_ACCENT: f32 = 20.0;

#[derive(Params)]
pub struct SmdimParams {
    /// The editor's size and zoom (not serialisable in this nice-plug version: not persisted).
    pub editor_state: Arc<EguiEditorState>,
    /// Phrase history and the current phrase; see `state.rs`.
    #[persist = "smdim-state"]
    pub state: StateField,

    #[id = "bars"]
    pub bars: IntParam,
    #[id = "steps"]
    pub steps: IntParam,
    #[id = "temperature"]
    pub temperature: FloatParam,
    #[id = "density"]
    pub density: FloatParam,
    #[id = "low"]
    pub lowest_pitch: IntParam,
    #[id = "high"]
    pub highest_pitch: IntParam,
    #[id = "key"]
    pub key: EnumParam<KeyRoot>,
    #[id = "scale"]
    pub scale: EnumParam<ScaleParam>,
    #[id = "seed"]
    pub seed: IntParam,
    #[id = "newseed"]
    pub new_seed: BoolParam,
    #[id = "velocity"]
    pub velocity: FloatParam,
    /// Any, Melody or Chorale; Melody and Chorale need a style-conditioned model.
    #[id = "style"]
    pub style: EnumParam<StyleParam>,
    #[id = "mode"]
    pub mode: EnumParam<Mode>,
    #[id = "channel"]
    pub channel: IntParam,
    #[id = "thru"]
    pub pass_through: BoolParam,
    /// Rising edge (off → on) requests a generation; map it to a button or automate it.
    #[id = "generate"]
    pub generate: BoolParam,
    /// The built-in preview voice on the audio output. On for a new instance (audible on an
    /// instrument track), off for projects saved before it existed (they sound as they did).
    #[id = "preview"]
    pub preview: BoolParam,
    /// The preview voice's level (a linear gain shown in dB).
    #[id = "previewdb"]
    pub preview_level: FloatParam,
}

/// The preview level's range and default, in dB.
pub const PREVIEW_MIN_DB: f32 = -48.0;
pub const PREVIEW_MAX_DB: f32 = 0.0;
pub const PREVIEW_DEFAULT_DB: f32 = -6.0;

impl SmdimParams {
    pub fn new(state: StateField) -> SmdimParams {
        SmdimParams {
            editor_state: EguiEditorState::from_size(
                nice_plug::editor::dpi::LogicalSize::<f64>::new(800.0, 540.0),
                1.0,
            ),
            state,
            // 64: what a 2,048-token model holds at a melody's density. Saved projects store the
            // plain value, CLAP hosts the plain index: both unchanged from the old 1-16 range.
            bars: IntParam::new("Bars", 4, IntRange::Linear { min: 1, max: 64 }).with_unit(" bars"),
            // 0 is Auto: the model card's steps for the style (measured: melodies need 32,
            // chorales are as good at 16; docs/model/STEPS.md). Projects saved with a number
            // keep it.
            steps: IntParam::new("Diffusion steps", 0, IntRange::Linear { min: 0, max: 128 })
                .with_value_to_string(Arc::new(|v| {
                    if v == 0 {
                        "Auto".to_string()
                    } else {
                        v.to_string()
                    }
                }))
                .with_string_to_value(Arc::new(|s| {
                    let s = s.trim();
                    if s.eq_ignore_ascii_case("auto") {
                        Some(0)
                    } else {
                        s.parse().ok()
                    }
                })),
            temperature: FloatParam::new(
                "Temperature",
                1.0,
                FloatRange::Linear { min: 0.1, max: 2.0 },
            )
            .with_value_to_string(formatters::v2s_f32_rounded(2)),
            // A folk tune averages 1.85 notes a beat, a chorale 4.5 (test split, 4/4).
            density: FloatParam::new(
                "Density",
                1.85,
                FloatRange::Skewed {
                    min: 0.25,
                    max: 6.0,
                    factor: FloatRange::skew_factor(-1.0),
                },
            )
            .with_unit(" notes/beat")
            .with_value_to_string(formatters::v2s_f32_rounded(2)),
            lowest_pitch: IntParam::new("Lowest pitch", 48, IntRange::Linear { min: 0, max: 127 })
                .with_value_to_string(formatters::v2s_i32_key_formatter())
                .with_string_to_value(formatters::s2v_i32_key_formatter()),
            highest_pitch: IntParam::new(
                "Highest pitch",
                84,
                IntRange::Linear { min: 0, max: 127 },
            )
            .with_value_to_string(formatters::v2s_i32_key_formatter())
            .with_string_to_value(formatters::s2v_i32_key_formatter()),
            key: EnumParam::new("Key", KeyRoot::None),
            scale: EnumParam::new("Scale", ScaleParam::Major),
            seed: IntParam::new(
                "Seed",
                1,
                IntRange::Linear {
                    min: 0,
                    max: 999_999,
                },
            ),
            new_seed: BoolParam::new("New seed each time", true),
            velocity: FloatParam::new(
                "Velocity scale",
                1.0,
                FloatRange::Linear { min: 0.1, max: 1.4 },
            )
            .with_unit(" %")
            .with_value_to_string(formatters::v2s_f32_percentage(0))
            .with_string_to_value(formatters::s2v_f32_percentage()),
            style: EnumParam::new("Style", StyleParam(Style::default())),
            mode: EnumParam::new("Playback", Mode::Loop),
            channel: IntParam::new("MIDI channel", 1, IntRange::Linear { min: 1, max: 16 }),
            pass_through: BoolParam::new("Pass-through", true),
            generate: BoolParam::new("Generate", false),
            preview: BoolParam::new("Preview sound", true),
            preview_level: FloatParam::new(
                "Preview level",
                util::db_to_gain(PREVIEW_DEFAULT_DB),
                FloatRange::Skewed {
                    min: util::db_to_gain(PREVIEW_MIN_DB),
                    max: util::db_to_gain(PREVIEW_MAX_DB),
                    factor: FloatRange::gain_skew_factor(PREVIEW_MIN_DB, PREVIEW_MAX_DB),
                },
            )
            .with_unit(" dB")
            .with_value_to_string(formatters::v2s_f32_gain_to_db(1))
            .with_string_to_value(formatters::s2v_f32_gain_to_db()),
        }
    }

    /// The MIDI channel parameter as the 0-based channel notes go out on.
    pub fn midi_channel(&self) -> u8 {
        (self.channel.value() - 1).clamp(0, 15) as u8
    }

    /// Generation settings from the current parameter values. `seed` is the seed to use (the
    /// caller decides between the seed parameter and a fresh one).
    pub fn settings(
        &self,
        seed: u64,
        time_signature: TimeSignature,
        tempo: f32,
    ) -> GenerationSettings {
        let (low, high) = (self.lowest_pitch.value(), self.highest_pitch.value());
        let scale = self.velocity.value().clamp(0.0, 2.0);
        GenerationSettings {
            bars: self.bars.value().clamp(1, 64) as u32,
            time_signature,
            tempo: if tempo.is_finite() && tempo > 0.0 {
                tempo
            } else {
                120.0
            },
            steps: match self.steps.value() {
                0 => None,
                n => Some(n.clamp(1, 1000) as u32),
            },
            temperature: self.temperature.value() as f64,
            seed,
            density: self.density.value() as f64,
            lowest_pitch: low.min(high).clamp(0, 127) as u8,
            highest_pitch: low.max(high).clamp(0, 127) as u8,
            key: self
                .key
                .value()
                .tonic()
                .map(|tonic| Key::new(tonic, self.scale.value().scale())),
            velocity: (BASE_VELOCITY * scale).round().clamp(1.0, 127.0) as u8,
            accent: (BASE_ACCENT * scale).round().clamp(0.0, 127.0) as u8,
            style: self.style.value().0,
            ..GenerationSettings::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smdim_engine::theory::NOTE_NAMES;

    #[test]
    fn every_key_and_scale_parses() {
        for root in 1..13 {
            for scale in 0..7 {
                let root: KeyRoot = Enum::from_index(root);
                let scale: ScaleParam = Enum::from_index(scale);
                let key = Key::new(root.tonic().unwrap(), scale.scale());
                let text = key.to_string();
                assert_eq!(
                    text,
                    format!(
                        "{}-{}",
                        KeyRoot::variants()[root.to_index()],
                        ScaleParam::ids().unwrap()[scale.to_index()]
                    )
                );
                assert_eq!(Key::parse(&text), Some(key), "{text}");
            }
        }
        assert_eq!(KeyRoot::None.tonic(), None);
    }

    /// The parameters' names are host-visible literals; they must be the theory module's.
    #[test]
    fn key_and_scale_parameters_follow_the_theory_tables() {
        assert_eq!(KeyRoot::variants()[0], "None");
        assert_eq!(KeyRoot::variants()[1..], NOTE_NAMES);
        let ids: Vec<String> = NOTE_NAMES.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(KeyRoot::ids().unwrap()[1..], ids);
        for (index, name) in NOTE_NAMES.iter().enumerate() {
            let root: KeyRoot = Enum::from_index(index + 1);
            assert_eq!(root.tonic(), Some(index as u8), "{name}");
        }
        let names: Vec<&str> = Scale::ALL.iter().map(|s| s.name()).collect();
        assert_eq!(ScaleParam::ids().unwrap(), names);
        for (index, scale) in Scale::ALL.into_iter().enumerate() {
            assert_eq!(ScaleParam::from_index(index).scale(), scale);
        }
    }

    #[test]
    fn settings_carry_the_key_parameters_as_a_key() {
        let (shared, _inbox, _requests) = crate::shared::Shared::new();
        let params = SmdimParams::new(StateField(shared));
        let settings = params.settings(1, TimeSignature::FOUR_FOUR, 120.0);
        assert_eq!(settings.key, None, "Key defaults to None");
        // D minor, as parameters whose value is D and Minor.
        let d_minor = SmdimParams {
            key: EnumParam::new("Key", KeyRoot::D),
            scale: EnumParam::new("Scale", ScaleParam::Minor),
            ..params
        };
        let settings = d_minor.settings(1, TimeSignature::FOUR_FOUR, 120.0);
        assert_eq!(settings.key, Key::parse("D-minor"));
        assert_eq!(serde_json::to_value(&settings).unwrap()["key"], "D-minor");
    }

    #[test]
    fn style_parameter_lists_every_style_with_its_stable_id() {
        assert_eq!(StyleParam::variants(), ["Any", "Melody", "Chorale"]);
        assert_eq!(StyleParam::ids(), Some(&["any", "melody", "chorale"][..]));
        for (index, style) in Style::ALL.into_iter().enumerate() {
            assert_eq!(StyleParam(style).to_index(), index);
            assert_eq!(StyleParam::from_index(index), StyleParam(style));
        }
        assert_eq!(StyleParam::from_index(99), StyleParam(Style::Any));
    }

    #[test]
    fn steps_default_to_auto_the_card_s_steps_for_the_style() {
        let (shared, _inbox, _requests) = crate::shared::Shared::new();
        let params = SmdimParams::new(StateField(shared));
        assert_eq!(params.steps.value(), 0);
        assert_eq!(params.steps.to_string(), "Auto");
        let settings = params.settings(1, TimeSignature::FOUR_FOUR, 120.0);
        assert_eq!(
            settings.steps, None,
            "Auto leaves the steps to the model card"
        );
        let card = smdim_inference::ModelCard::parse(include_str!(
            "../../../models/smdim-default.card.json"
        ))
        .unwrap();
        // docs/model/STEPS.md: 16 steps are as good as 32 at n = 512 for both styles.
        assert_eq!(card.sampler.steps_for("melody"), 16);
        assert_eq!(card.sampler.steps_for("chorale"), 16);
        let twin = smdim_inference::ModelCard::parse(include_str!(
            "../../../models/smdim-default-int8.card.json"
        ))
        .unwrap();
        for style in ["any", "melody", "chorale"] {
            assert_eq!(twin.sampler.steps_for(style), card.sampler.steps_for(style));
            assert_eq!(
                twin.sampler.defaults_for(style),
                card.sampler.defaults_for(style)
            );
        }
        let fixed = SmdimParams {
            steps: IntParam::new("Diffusion steps", 24, IntRange::Linear { min: 0, max: 128 }),
            ..params
        };
        assert_eq!(
            fixed.settings(1, TimeSignature::FOUR_FOUR, 120.0).steps,
            Some(24)
        );
    }

    #[test]
    fn style_parameter_defaults_to_melody_in_the_settings() {
        let (shared, _inbox, _requests) = crate::shared::Shared::new();
        let params = SmdimParams::new(StateField(shared));
        assert_eq!(params.style.value(), StyleParam(Style::Melody));
        let settings = params.settings(1, TimeSignature::FOUR_FOUR, 120.0);
        assert_eq!(settings.style, Style::Melody);
    }
}
