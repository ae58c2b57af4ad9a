//! What SMDIM saves in the host project: the phrase history (each entry the phrase with the
//! settings, tokens and provider that made it), which entry plays, and the compute device
//! setting.
//!
//! The compute device lives here rather than in a host parameter: changing it reloads the model,
//! which automation must never trigger. It was added to version 1 as an optional field (an older
//! build ignores it and a state without it means the default, CPU), so no version bump: a bump
//! would make older builds refuse the whole project for one setting they can do without. Each
//! entry's settings gained `style` the same way (absent: Melody).
//!
//! The file format is its own set of types below (`FileV1`, `EntryV1`, `SettingsV1`, ...), every
//! field with a default, converted to and from the in-memory types; so the in-memory types can
//! change without touching what is on disk, and a field added later reads as its default in an
//! older project instead of making it load empty. `tests/data/state_*.json` holds one fixture per
//! shape the format has had; every one must load.
//!
//! The JSON carries a `version`. [`SavedState::from_json_value`] reads every version this code
//! has ever written (today: 1) and refuses newer ones with a clear error instead of guessing, so
//! a project saved by a newer SMDIM keeps its own data untouched in the host and this build
//! starts empty. Entries are validated on load: phrases are normalised, the history is capped
//! and the cursor clamped, so a hand-edited or corrupt project can never reach the audio thread
//! in a state the scheduler does not expect.

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use smdim_engine::phrase::{Note, Phrase, TimeSignature, DEFAULT_VELOCITY, MAX_BARS};
use smdim_engine::sampler::edit::Edit;
use smdim_engine::sampler::Order;
use smdim_engine::theory::Key;
use smdim_engine::vocab::TokenId;
use smdim_inference::{EditRecord, Generated, GenerationSettings, Provider, ProviderChoice, Style};

/// The format this build writes.
pub const STATE_VERSION: u32 = 1;
/// Phrases kept for undo/redo (and saved with the project).
pub const HISTORY_LEN: usize = 8;
/// Upper bound on notes accepted from a saved project (hostile input).
pub const MAX_SAVED_NOTES: usize = 20_000;

/// The persisted state, in memory. On disk it is [`FileV1`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SavedState {
    pub version: u32,
    /// Oldest first, at most [`HISTORY_LEN`].
    pub history: Vec<Arc<Generated>>,
    /// Index into `history` of the phrase that plays; `None` when nothing was generated yet.
    pub cursor: Option<usize>,
    /// The "Compute device" setting (stable ids on disk: [`ProviderChoice::id`]).
    pub device: ProviderChoice,
    /// The phrase the edits (Continue, Infill, Vary) work on: the musician's capture or file.
    pub source: Option<Arc<Phrase>>,
}

/// The setting's default. CPU rather than Auto: the plugin ships the CPU ONNX Runtime, so on a
/// machine without the GPU pack Auto would only add two fallback reasons to every load, and with
/// it TensorRT's first engine build takes minutes inside the DAW. GPU use is opt-in.
pub const DEFAULT_DEVICE: ProviderChoice = ProviderChoice::Cpu;

/// Every choice, in the order the editor lists them.
pub const DEVICES: [ProviderChoice; 4] = [
    ProviderChoice::Auto,
    ProviderChoice::TensorRt,
    ProviderChoice::Cuda,
    ProviderChoice::Cpu,
];

/// What the editor's combo box says.
pub fn device_label(choice: ProviderChoice) -> &'static str {
    match choice {
        ProviderChoice::Auto => "Auto (TensorRT → CUDA → CPU)",
        ProviderChoice::TensorRt => "TensorRT",
        ProviderChoice::Cuda => "CUDA",
        ProviderChoice::Cpu => "CPU",
    }
}

fn serialize_device<S: serde::Serializer>(
    choice: &ProviderChoice,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(choice.id())
}

/// Lenient: a missing, unknown (a newer build's device) or malformed value is the default; the
/// phrases must load whatever this one setting holds.
fn deserialize_device<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<ProviderChoice, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(value
        .as_str()
        .and_then(|id| DEVICES.into_iter().find(|c| c.id() == id))
        .unwrap_or(DEFAULT_DEVICE))
}

impl SavedState {
    pub fn new() -> SavedState {
        SavedState {
            version: STATE_VERSION,
            history: Vec::new(),
            cursor: None,
            device: DEFAULT_DEVICE,
            source: None,
        }
    }

    /// The phrase that plays.
    pub fn current(&self) -> Option<&Arc<Generated>> {
        self.cursor.and_then(|i| self.history.get(i))
    }

    /// Adds a new phrase after the current one (dropping any redo branch) and makes it current.
    pub fn push(&mut self, generated: Arc<Generated>) {
        if let Some(cursor) = self.cursor {
            self.history.truncate(cursor + 1);
        } else {
            self.history.clear();
        }
        self.history.push(generated);
        let excess = self.history.len().saturating_sub(HISTORY_LEN);
        self.history.drain(..excess);
        self.cursor = Some(self.history.len() - 1);
    }

    pub fn can_undo(&self) -> bool {
        self.cursor.is_some_and(|c| c > 0)
    }

    pub fn can_redo(&self) -> bool {
        self.cursor.is_some_and(|c| c + 1 < self.history.len())
    }

    /// Moves the cursor by `delta` entries; returns the new current phrase if it moved.
    pub fn step(&mut self, delta: isize) -> Option<Arc<Generated>> {
        let cursor = self.cursor?;
        let target = cursor.checked_add_signed(delta)?;
        if target >= self.history.len() {
            return None;
        }
        self.cursor = Some(target);
        self.history.get(target).cloned()
    }

    /// Parses any version this build knows. Never panics.
    pub fn from_json_value(value: serde_json::Value) -> Result<SavedState, String> {
        let version = value
            .get("version")
            .and_then(serde_json::Value::as_u64)
            .ok_or("saved SMDIM state has no version")?;
        match version {
            1 => {
                let v1: FileV1 = serde_json::from_value(value)
                    .map_err(|e| format!("saved SMDIM state (version 1) is unreadable: {e}"))?;
                Ok(v1.into_state())
            }
            newer => Err(format!(
                "this project was saved by a newer SMDIM (state version {newer}; this build reads \
                 up to {STATE_VERSION}): update SMDIM to load its phrases"
            )),
        }
    }

    pub fn from_json(text: &str) -> Result<SavedState, String> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| format!("saved SMDIM state is not JSON: {e}"))?;
        SavedState::from_json_value(value)
    }
}

// The save-file schema, version 1. These types are the format: the in-memory types
// (`Generated`, `GenerationSettings`, `Phrase`) may change freely, these only by adding fields.
// Every field has a default, so a file written before a field existed loads (the field reads as
// its default), and a field this build does not know is ignored: adding a setting can never make
// an older project load empty. A value of the wrong type is still an error, so a corrupt file is
// reported rather than half-read. Older builds read what this one writes: every field they
// require is written.

/// The whole state on disk.
#[derive(Serialize, Deserialize)]
#[serde(default)]
struct FileV1 {
    version: u32,
    history: Vec<EntryV1>,
    cursor: Option<usize>,
    /// Added after the first release of version 1 (absent in older projects).
    #[serde(
        serialize_with = "serialize_device",
        deserialize_with = "deserialize_device"
    )]
    device: ProviderChoice,
    /// Added with editing (absent: no source).
    #[serde(skip_serializing_if = "Option::is_none")]
    source: Option<PhraseV1>,
}

impl Default for FileV1 {
    fn default() -> Self {
        FileV1 {
            version: STATE_VERSION,
            history: Vec::new(),
            cursor: None,
            device: DEFAULT_DEVICE,
            source: None,
        }
    }
}

/// What an edit did, with its source (absent for plain generations and older entries).
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct EditV1 {
    source: PhraseV1,
    /// `continue`, `infill` or `vary`; another reads as no edit (the phrase still loads).
    #[serde(deserialize_with = "lenient")]
    edit: Option<Edit>,
}

/// One phrase of the history with what made it.
#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct EntryV1 {
    phrase: PhraseV1,
    tokens: Vec<TokenId>,
    settings: SettingsV1,
    steps: u32,
    /// Added with confidence-order sampling (absent: random, the only order before it).
    #[serde(deserialize_with = "lenient")]
    order: Order,
    /// Added with the tonal focus (absent: 0, as every phrase before it was made; 0 is not
    /// written, so older projects save back unchanged).
    #[serde(skip_serializing_if = "is_zero")]
    tonal_focus: f64,
    #[serde(deserialize_with = "lenient")]
    provider: Provider,
    elapsed: Duration,
    denoiser_calls: u32,
    /// Added with editing.
    #[serde(skip_serializing_if = "Option::is_none")]
    edit: Option<EditV1>,
}

#[derive(Serialize, Deserialize)]
#[serde(default)]
struct PhraseV1 {
    notes: Vec<NoteV1>,
    time_signature: TimeSignature,
    tempo_hint: Option<f32>,
    bars: u32,
}

impl Default for PhraseV1 {
    fn default() -> Self {
        PhraseV1::from(&Phrase::default())
    }
}

#[derive(Serialize, Deserialize)]
#[serde(default)]
struct NoteV1 {
    start: u32,
    length: u32,
    pitch: u8,
    velocity: u8,
}

impl Default for NoteV1 {
    fn default() -> Self {
        NoteV1 {
            start: 0,
            length: 1,
            pitch: 60,
            velocity: DEFAULT_VELOCITY,
        }
    }
}

/// The settings that made a phrase. Absent fields read as today's defaults.
#[derive(Serialize, Deserialize)]
#[serde(default)]
struct SettingsV1 {
    bars: u32,
    time_signature: TimeSignature,
    tempo: f32,
    steps: Option<u32>,
    temperature: f64,
    top_p: f64,
    seed: u64,
    density: f64,
    lowest_pitch: u8,
    highest_pitch: u8,
    /// The key's name (`"D-minor"`) or `null`; a name this build cannot read loads as no key.
    key: Option<String>,
    max_notes_per_onset: u32,
    velocity: u8,
    accent: u8,
    /// Added after the first saved settings: absent means Melody (what every phrase was before
    /// styles), and a style this build does not know reads as the default too.
    #[serde(deserialize_with = "lenient")]
    style: Style,
    #[serde(deserialize_with = "lenient")]
    order: Option<Order>,
    noise: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tonal_focus: Option<f64>,
}

impl Default for SettingsV1 {
    fn default() -> Self {
        SettingsV1::from(&GenerationSettings::default())
    }
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// A value of a type whose set of values grows between builds (a style, a provider): one this
/// build does not know reads as the default instead of failing the whole project.
fn lenient<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(T::deserialize(value).unwrap_or_default())
}

impl From<&Phrase> for PhraseV1 {
    fn from(phrase: &Phrase) -> Self {
        PhraseV1 {
            notes: phrase
                .notes
                .iter()
                .map(|n| NoteV1 {
                    start: n.start,
                    length: n.length,
                    pitch: n.pitch,
                    velocity: n.velocity,
                })
                .collect(),
            time_signature: phrase.time_signature,
            tempo_hint: phrase.tempo_hint,
            bars: phrase.bars,
        }
    }
}

impl PhraseV1 {
    fn into_phrase(self) -> Phrase {
        Phrase {
            notes: self
                .notes
                .into_iter()
                .map(|n| Note {
                    start: n.start,
                    length: n.length,
                    pitch: n.pitch,
                    velocity: n.velocity,
                })
                .collect(),
            time_signature: self.time_signature,
            tempo_hint: self.tempo_hint,
            bars: self.bars,
        }
    }
}

impl From<&GenerationSettings> for SettingsV1 {
    fn from(s: &GenerationSettings) -> Self {
        SettingsV1 {
            bars: s.bars,
            time_signature: s.time_signature,
            tempo: s.tempo,
            steps: s.steps,
            temperature: s.temperature,
            top_p: s.top_p,
            seed: s.seed,
            density: s.density,
            lowest_pitch: s.lowest_pitch,
            highest_pitch: s.highest_pitch,
            key: s.key.map(|k| k.to_string()),
            max_notes_per_onset: s.max_notes_per_onset,
            velocity: s.velocity,
            accent: s.accent,
            style: s.style,
            order: s.order,
            noise: s.noise,
            tonal_focus: s.tonal_focus,
        }
    }
}

impl SettingsV1 {
    fn into_settings(self) -> GenerationSettings {
        GenerationSettings {
            bars: self.bars,
            time_signature: self.time_signature,
            tempo: self.tempo,
            steps: self.steps,
            temperature: self.temperature,
            top_p: self.top_p,
            seed: self.seed,
            density: self.density,
            lowest_pitch: self.lowest_pitch,
            highest_pitch: self.highest_pitch,
            key: self.key.as_deref().and_then(Key::parse),
            max_notes_per_onset: self.max_notes_per_onset,
            velocity: self.velocity,
            accent: self.accent,
            style: self.style,
            order: self.order,
            noise: self.noise,
            tonal_focus: self.tonal_focus,
        }
    }
}

impl From<&Generated> for EntryV1 {
    fn from(g: &Generated) -> Self {
        EntryV1 {
            phrase: PhraseV1::from(&g.phrase),
            tokens: g.tokens.clone(),
            settings: SettingsV1::from(&g.settings),
            steps: g.steps,
            order: g.order,
            tonal_focus: g.tonal_focus,
            provider: g.provider,
            elapsed: g.elapsed,
            denoiser_calls: g.denoiser_calls,
            edit: g.edit.as_ref().map(|e| EditV1 {
                source: PhraseV1::from(&e.source),
                edit: Some(e.edit),
            }),
        }
    }
}

impl EntryV1 {
    fn into_generated(self) -> Generated {
        Generated {
            phrase: self.phrase.into_phrase(),
            tokens: self.tokens,
            settings: self.settings.into_settings(),
            steps: self.steps,
            order: self.order,
            tonal_focus: self.tonal_focus,
            provider: self.provider,
            elapsed: self.elapsed,
            denoiser_calls: self.denoiser_calls,
            edit: self.edit.and_then(|e| {
                let edit = e.edit?;
                Some(EditRecord {
                    source: e.source.into_phrase(),
                    edit,
                })
            }),
        }
    }
}

impl From<&SavedState> for FileV1 {
    fn from(state: &SavedState) -> Self {
        FileV1 {
            version: STATE_VERSION,
            history: state.history.iter().map(|g| EntryV1::from(&**g)).collect(),
            cursor: state.cursor,
            device: state.device,
            source: state.source.as_deref().map(PhraseV1::from),
        }
    }
}

impl FileV1 {
    /// Validated: phrases normalised, the history capped and the cursor clamped, so a
    /// hand-edited or corrupt project never reaches the audio thread in a state the scheduler
    /// does not expect.
    fn into_state(self) -> SavedState {
        let mut history: Vec<Arc<Generated>> = self
            .history
            .into_iter()
            .filter(|e| e.phrase.notes.len() <= MAX_SAVED_NOTES && e.phrase.bars <= MAX_BARS)
            .map(|e| {
                let mut g = e.into_generated();
                g.phrase.normalize();
                Arc::new(g)
            })
            .collect();
        let excess = history.len().saturating_sub(HISTORY_LEN);
        history.drain(..excess);
        let cursor = match (self.cursor, history.len()) {
            (_, 0) => None,
            (Some(c), len) => Some(c.saturating_sub(excess).min(len - 1)),
            (None, len) => Some(len - 1),
        };
        let source = self
            .source
            .map(|p| p.into_phrase())
            .filter(|p| p.notes.len() <= MAX_SAVED_NOTES && p.bars <= MAX_BARS)
            .map(|mut p| {
                p.normalize();
                Arc::new(p)
            });
        SavedState {
            version: STATE_VERSION,
            history,
            cursor,
            device: self.device,
            source,
        }
    }
}

impl Serialize for SavedState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        FileV1::from(self).serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SavedState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        SavedState::from_json_value(value).map_err(serde::de::Error::custom)
    }
}

/// A phrase as plain data for tests and tools.
pub fn phrase_of(state: &SavedState) -> Option<&Phrase> {
    state.current().map(|g| &g.phrase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smdim_engine::phrase::{Note, TimeSignature};
    use smdim_inference::{GenerationSettings, Provider, Style};
    use std::time::Duration;

    fn generated(seed: u64) -> Arc<Generated> {
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 2);
        phrase.notes.push(Note {
            start: (seed as u32 % 4) * 960,
            length: 480,
            pitch: 60 + seed as u8 % 12,
            velocity: 100,
        });
        Arc::new(Generated {
            phrase,
            tokens: vec![4, 5, 6],
            settings: GenerationSettings {
                seed,
                ..Default::default()
            },
            steps: 8,
            provider: Provider::Cpu,
            elapsed: Duration::from_millis(12),
            denoiser_calls: 8,
            order: Default::default(),
            tonal_focus: 0.0,
            edit: None,
        })
    }

    #[test]
    fn round_trip_is_identical() {
        let mut state = SavedState::new();
        for seed in 0..3 {
            state.push(generated(seed));
        }
        state.step(-1);
        let json = serde_json::to_string(&state).unwrap();
        let back: SavedState = serde_json::from_str(&json).unwrap();
        assert_eq!(back, state);
        assert_eq!(back.cursor, Some(1));
    }

    #[test]
    fn version_1_fixture_still_loads() {
        // Written by the first release of the format; must load in every later build.
        let text = include_str!("../tests/data/state_v1.json");
        let state = SavedState::from_json(text).unwrap();
        assert_eq!(state.version, STATE_VERSION);
        assert_eq!(state.history.len(), 2);
        assert_eq!(state.cursor, Some(1));
        let current = state.current().unwrap();
        assert_eq!(current.settings.seed, 7);
        assert_eq!(current.phrase.bars, 2);
        assert_eq!(current.phrase.notes.len(), 3);
        assert_eq!(current.phrase.notes[0].pitch, 60);
        assert_eq!(
            state.device, DEFAULT_DEVICE,
            "written before the setting existed"
        );
        for entry in &state.history {
            assert_eq!(
                entry.settings.style,
                Style::Melody,
                "written before styles existed"
            );
        }
    }

    /// Every saved-state fixture in tests/data (one per shape the format has had) loads.
    #[test]
    fn every_fixture_ever_written_still_loads() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
        let mut loaded = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !(name.starts_with("state_") && name.ends_with(".json")) {
                continue;
            }
            let state = SavedState::from_json(&std::fs::read_to_string(&path).unwrap())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(!state.history.is_empty(), "{name} loaded empty");
            assert!(state.current().is_some(), "{name}");
            loaded += 1;
        }
        assert!(loaded >= 2, "fixtures found: {loaded}");

        let text = include_str!("../tests/data/state_v1_device_styles.json");
        let state = SavedState::from_json(text).unwrap();
        assert_eq!(state.device, ProviderChoice::Cuda);
        let g = state.current().unwrap();
        assert_eq!(g.settings.style, Style::Chorale);
        assert_eq!(g.settings.order, Some(Order::Confidence));
        assert_eq!(g.settings.noise, Some(3.0));
        assert_eq!(g.settings.key, Key::parse("D-minor"));
        assert_eq!(g.provider, Provider::Cuda);
        assert_eq!(g.phrase.time_signature, TimeSignature::new(3, 4).unwrap());
        // Written back, it is the same JSON value (nothing lost or renamed).
        let original: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(serde_json::to_value(&state).unwrap(), original);
    }

    /// A field added in a later build is absent from older projects: every single field can
    /// be missing and the phrase still loads, with that field at its default.
    #[test]
    fn any_missing_field_reads_as_its_default() {
        let mut state = SavedState::new();
        state.push(generated(5));
        let full = serde_json::to_value(&state).unwrap();
        let entry = &full["history"][0];
        let mut paths: Vec<Vec<String>> = Vec::new();
        for key in entry.as_object().unwrap().keys() {
            paths.push(vec![key.clone()]);
        }
        for group in ["settings", "phrase"] {
            for key in entry[group].as_object().unwrap().keys() {
                paths.push(vec![group.into(), key.clone()]);
            }
        }
        for key in entry["phrase"]["notes"][0].as_object().unwrap().keys() {
            paths.push(vec![
                "phrase".into(),
                "notes".into(),
                "0".into(),
                key.clone(),
            ]);
        }
        assert!(paths.len() > 25, "{}", paths.len());
        for path in paths {
            let mut value = full.clone();
            let mut target = &mut value["history"][0];
            for step in &path[..path.len() - 1] {
                target = match step.parse::<usize>() {
                    Ok(i) => &mut target[i],
                    Err(_) => &mut target[step.as_str()],
                };
            }
            target
                .as_object_mut()
                .unwrap()
                .remove(path.last().unwrap())
                .unwrap();
            let back = SavedState::from_json_value(value)
                .unwrap_or_else(|e| panic!("without {path:?}: {e}"));
            assert_eq!(back.history.len(), 1, "without {path:?} the phrase is lost");
        }
        // And a wrongly typed value is still an error, not a silently emptied project.
        let mut wrong = full.clone();
        wrong["history"][0]["settings"]["bars"] = serde_json::json!("eight");
        assert!(SavedState::from_json_value(wrong).is_err());
    }

    /// Builds before the save-file types read entries with the in-memory types' own serde
    /// (every field required): what this build writes must still satisfy that reader.
    #[test]
    fn what_this_build_writes_older_builds_read() {
        let mut state = SavedState::new();
        for seed in 0..3 {
            let mut g = (*generated(seed)).clone();
            g.settings.key = Key::parse("F#-dorian");
            g.settings.style = Style::ALL[seed as usize % Style::ALL.len()];
            state.push(Arc::new(g));
        }
        let value = serde_json::to_value(&state).unwrap();
        for (entry, g) in value["history"]
            .as_array()
            .unwrap()
            .iter()
            .zip(&state.history)
        {
            let old: Generated = serde_json::from_value(entry.clone()).unwrap();
            assert_eq!(&old, &**g);
        }
        assert_eq!(value["history"][0]["settings"]["key"], "F#-dorian");
    }

    #[test]
    fn tonal_focus_round_trips_and_zero_is_not_written() {
        let mut state = SavedState::new();
        let mut entry = (*generated(1)).clone();
        entry.tonal_focus = 1.5;
        entry.settings.tonal_focus = Some(2.0);
        state.push(Arc::new(entry));
        state.push(generated(2));
        let value = serde_json::to_value(&state).unwrap();
        assert_eq!(value["history"][0]["tonal_focus"], 1.5);
        assert_eq!(value["history"][0]["settings"]["tonal_focus"], 2.0);
        assert!(value["history"][1].get("tonal_focus").is_none());
        assert!(value["history"][1]["settings"].get("tonal_focus").is_none());
        let back: SavedState = serde_json::from_value(value).unwrap();
        assert_eq!(back, state);
    }

    #[test]
    fn style_round_trips_with_its_stable_id() {
        let mut state = SavedState::new();
        for (seed, style) in Style::ALL.into_iter().enumerate() {
            let mut entry = (*generated(seed as u64)).clone();
            entry.settings.style = style;
            state.push(Arc::new(entry));
        }
        let value = serde_json::to_value(&state).unwrap();
        assert_eq!(value["version"], 1, "an optional field: no version bump");
        for (entry, style) in value["history"].as_array().unwrap().iter().zip(Style::ALL) {
            assert_eq!(entry["settings"]["style"], style.id());
        }
        let back: SavedState = serde_json::from_value(value).unwrap();
        assert_eq!(back, state);
        let styles: Vec<Style> = back.history.iter().map(|g| g.settings.style).collect();
        assert_eq!(styles, Style::ALL);
    }

    #[test]
    fn device_round_trips_with_stable_ids() {
        for device in DEVICES {
            let mut state = SavedState::new();
            state.push(generated(1));
            state.device = device;
            let value = serde_json::to_value(&state).unwrap();
            assert_eq!(value["device"], device.id());
            assert_eq!(value["version"], 1, "an optional field: no version bump");
            let back: SavedState = serde_json::from_value(value).unwrap();
            assert_eq!(back, state);
        }
        assert_eq!(DEFAULT_DEVICE, ProviderChoice::Cpu);
        assert_eq!(SavedState::new().device, ProviderChoice::Cpu);
    }

    #[test]
    fn unknown_device_loads_the_phrases_with_the_default() {
        let mut state = SavedState::new();
        state.push(generated(4));
        for odd in [
            serde_json::json!("metal"),
            serde_json::json!(3),
            serde_json::Value::Null,
        ] {
            let mut value = serde_json::to_value(&state).unwrap();
            value["device"] = odd.clone();
            let back = SavedState::from_json_value(value).unwrap();
            assert_eq!(back.device, DEFAULT_DEVICE, "{odd}");
            assert_eq!(back.history, state.history);
        }
        let cuda = SavedState::from_json(r#"{"version":1,"device":"cuda"}"#).unwrap();
        assert_eq!(cuda.device, ProviderChoice::Cuda);
    }

    #[test]
    fn partial_and_unknown_fields() {
        let state = SavedState::from_json(r#"{"version":1,"someday":"a new field"}"#).unwrap();
        assert!(state.history.is_empty());
        assert_eq!(state.cursor, None);
    }

    #[test]
    fn newer_versions_and_garbage_are_errors_not_panics() {
        let err = SavedState::from_json(r#"{"version":99,"history":[]}"#).unwrap_err();
        assert!(err.contains("newer SMDIM"), "{err}");
        assert!(SavedState::from_json("{").is_err());
        assert!(SavedState::from_json("[]").is_err());
        assert!(SavedState::from_json(r#"{"version":1,"history":"x"}"#).is_err());
    }

    #[test]
    fn loaded_state_is_sanitised() {
        let mut state = SavedState::new();
        for seed in 0..3 {
            state.push(generated(seed));
        }
        let mut value = serde_json::to_value(&state).unwrap();
        value["cursor"] = serde_json::json!(57);
        // An unnormalised phrase: note past the end, velocity 0.
        value["history"][0]["phrase"]["notes"] = serde_json::json!([{"start": 100000, "length": 5, "pitch": 60, "velocity": 0},
                               {"start": 0, "length": 5, "pitch": 61, "velocity": 0}]);
        let back = SavedState::from_json_value(value).unwrap();
        assert_eq!(back.cursor, Some(2));
        assert!(back.history[0].phrase.is_normalized());
        assert_eq!(back.history[0].phrase.notes.len(), 1);
        assert_eq!(back.history[0].phrase.notes[0].velocity, 1);
    }

    #[test]
    fn history_is_capped_and_redo_branch_dropped() {
        let mut state = SavedState::new();
        for seed in 0..(HISTORY_LEN as u64 + 3) {
            state.push(generated(seed));
        }
        assert_eq!(state.history.len(), HISTORY_LEN);
        assert_eq!(
            state.current().unwrap().settings.seed,
            HISTORY_LEN as u64 + 2
        );
        assert!(state.can_undo());
        assert!(!state.can_redo());
        state.step(-2).unwrap();
        assert!(state.can_redo());
        state.push(generated(100));
        assert!(!state.can_redo());
        assert_eq!(state.history.len(), HISTORY_LEN - 1);
        assert!(state.step(5).is_none());
        assert!(state.step(-100).is_none());
    }
}
