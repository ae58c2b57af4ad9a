//! The music theory SMDIM needs, defined once: note names, scales and keys.
//!
//! Names are written with sharps (`C#`, never `Db`); parsing accepts flats too. A [`Key`] is
//! saved in projects as its display string (`D-minor`, `F#-dorian`, `A#-major-pentatonic`),
//! and reads back from any spelling [`Key::parse`] accepts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Pitch-class names, C = 0, with sharps.
pub const NOTE_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

/// The name of `pitch`'s pitch class (`pitch % 12`), with sharps.
pub fn note_name(pitch: u8) -> &'static str {
    NOTE_NAMES[pitch as usize % 12]
}

/// A MIDI pitch in scientific notation: 60 is `C4`, 61 `C#4`, 0 `C-1`.
pub fn pitch_name(pitch: u8) -> String {
    format!("{}{}", note_name(pitch), pitch as i32 / 12 - 1)
}

/// A scale as the pitch classes it holds above its tonic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scale {
    Major,
    Minor,
    HarmonicMinor,
    Dorian,
    Mixolydian,
    MajorPentatonic,
    MinorPentatonic,
}

impl Scale {
    /// Every scale, in the order the plugin's Scale parameter lists them.
    pub const ALL: [Scale; 7] = [
        Scale::Major,
        Scale::Minor,
        Scale::HarmonicMinor,
        Scale::Dorian,
        Scale::Mixolydian,
        Scale::MajorPentatonic,
        Scale::MinorPentatonic,
    ];

    /// Semitones above the tonic.
    pub fn steps(self) -> &'static [u8] {
        match self {
            Scale::Major => &[0, 2, 4, 5, 7, 9, 11],
            Scale::Minor => &[0, 2, 3, 5, 7, 8, 10],
            Scale::HarmonicMinor => &[0, 2, 3, 5, 7, 8, 11],
            Scale::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            Scale::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            Scale::MajorPentatonic => &[0, 2, 4, 7, 9],
            Scale::MinorPentatonic => &[0, 3, 5, 7, 10],
        }
    }

    /// The stable name: part of a saved key (`D-minor`) and the Scale parameter's id.
    pub fn name(self) -> &'static str {
        match self {
            Scale::Major => "major",
            Scale::Minor => "minor",
            Scale::HarmonicMinor => "harmonic-minor",
            Scale::Dorian => "dorian",
            Scale::Mixolydian => "mixolydian",
            Scale::MajorPentatonic => "major-pentatonic",
            Scale::MinorPentatonic => "minor-pentatonic",
        }
    }

    /// A [`Scale::name`], any case; also `maj`/`min`, `m` (minor) and nothing at all (major).
    pub fn parse(text: &str) -> Option<Scale> {
        match text.to_ascii_lowercase().as_str() {
            "" | "maj" => Some(Scale::Major),
            "m" | "min" => Some(Scale::Minor),
            other => Scale::ALL.into_iter().find(|s| s.name() == other),
        }
    }
}

/// A key as a tonic pitch class (0 = C .. 11 = B) and a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key {
    pub tonic: u8,
    pub scale: Scale,
}

impl Key {
    /// Spellings to show when a key does not parse.
    pub const EXAMPLES: &'static str = "D-minor, F#-dorian, Bb-major, A-minor-pentatonic";

    /// `tonic` is taken modulo 12.
    pub fn new(tonic: u8, scale: Scale) -> Key {
        Key {
            tonic: tonic % 12,
            scale,
        }
    }

    /// Whether `pitch` (a MIDI note) is in the key.
    pub fn contains(&self, pitch: u8) -> bool {
        let class = (pitch as i32 - self.tonic as i32).rem_euclid(12) as u8;
        self.scale.steps().contains(&class)
    }

    /// Parses `D-minor`, `F#-dorian`, `Bb major`, `Am` (minor), `C` (major): a letter, any
    /// number of `#` and `b`, then an optional `-`, ` ` or `_` and a [`Scale::parse`] name.
    pub fn parse(text: &str) -> Option<Key> {
        let text = text.trim();
        let split = text
            .char_indices()
            .skip(1)
            .find(|(_, c)| !matches!(c, '#' | 'b'))
            .map_or(text.len(), |(i, _)| i);
        let (note, rest) = text.split_at(split);
        let mut chars = note.chars();
        let letter = chars.next()?.to_ascii_uppercase();
        let base = NOTE_NAMES
            .iter()
            .position(|n| n.starts_with(letter) && n.len() == 1)? as i32;
        let accidental: i32 = chars.map(|c| if c == '#' { 1 } else { -1 }).sum();
        let tonic = (base + accidental).rem_euclid(12) as u8;
        let scale = Scale::parse(rest.trim_start_matches(['-', ' ', '_']))?;
        Some(Key { tonic, scale })
    }
}

/// `D-minor`: the tonic's sharp name, a dash, the scale's name. [`Key::parse`] reads it back.
impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", note_name(self.tonic), self.scale.name())
    }
}

/// Krumhansl-Kessler key profiles (probe-tone ratings, C major and C minor).
pub(crate) const MAJOR_PROFILE: [f64; 12] = [
    6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88,
];
pub(crate) const MINOR_PROFILE: [f64; 12] = [
    6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17,
];

impl Key {
    /// The major or minor key whose profile correlates best with the notes' pitch classes
    /// weighted by duration (Krumhansl-Schmuckler); `None` without notes or when every pitch
    /// class weighs the same.
    pub fn estimate(notes: &[crate::phrase::Note]) -> Option<Key> {
        let mut weights = [0f64; 12];
        for note in notes {
            weights[note.pitch as usize % 12] += note.length.max(1) as f64;
        }
        let mean = weights.iter().sum::<f64>() / 12.0;
        if mean == 0.0 || weights.iter().all(|w| (w - mean).abs() < 1e-12) {
            return None;
        }
        let correlation = |profile: &[f64; 12], tonic: usize| {
            let pm = profile.iter().sum::<f64>() / 12.0;
            let (mut num, mut a, mut b) = (0.0, 0.0, 0.0);
            for pc in 0..12 {
                let x = weights[(pc + tonic) % 12] - mean;
                let y = profile[pc] - pm;
                num += x * y;
                a += x * x;
                b += y * y;
            }
            num / (a * b).sqrt()
        };
        let mut best: Option<(f64, Key)> = None;
        for tonic in 0..12u8 {
            for (profile, scale) in [
                (&MAJOR_PROFILE, Scale::Major),
                (&MINOR_PROFILE, Scale::Minor),
            ] {
                let r = correlation(profile, tonic as usize);
                if best.is_none_or(|(b, _)| r > b) {
                    best = Some((r, Key::new(tonic, scale)));
                }
            }
        }
        best.map(|(_, key)| key)
    }
}

/// A string that is no key [`Key::parse`] knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key {0:?} (try {examples})", examples = Key::EXAMPLES)]
pub struct UnknownKey(pub String);

impl FromStr for Key {
    type Err = UnknownKey;

    fn from_str(text: &str) -> Result<Key, UnknownKey> {
        Key::parse(text).ok_or_else(|| UnknownKey(text.to_string()))
    }
}

/// As its display string, the form saved projects have always held.
impl Serialize for Key {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_round_trips_through_its_name() {
        for tonic in 0..12 {
            for scale in Scale::ALL {
                let key = Key::new(tonic, scale);
                let text = key.to_string();
                assert_eq!(
                    text,
                    format!("{}-{}", NOTE_NAMES[tonic as usize], scale.name())
                );
                assert_eq!(Key::parse(&text), Some(key), "{text}");
                assert_eq!(text.parse::<Key>(), Ok(key), "{text}");
                assert_eq!(Key::parse(&text.to_uppercase()), Some(key), "{text}");
                assert_eq!(Key::parse(&text.replacen('-', " ", 1)), Some(key), "{text}");
            }
        }
    }

    #[test]
    fn flats_and_short_forms_parse() {
        let flats = [
            ("Db", 1),
            ("Eb", 3),
            ("Fb", 4),
            ("Gb", 6),
            ("Ab", 8),
            ("Bb", 10),
            ("Cb", 11),
            ("B#", 0),
            ("Ebb", 2),
            ("C##", 2),
        ];
        for (note, tonic) in flats {
            for scale in Scale::ALL {
                let text = format!("{note}-{}", scale.name());
                assert_eq!(Key::parse(&text), Some(Key::new(tonic, scale)), "{text}");
            }
        }
        assert_eq!(Key::parse("Am"), Some(Key::new(9, Scale::Minor)));
        assert_eq!(Key::parse("Bbm"), Some(Key::new(10, Scale::Minor)));
        assert_eq!(Key::parse("C"), Some(Key::new(0, Scale::Major)));
        assert_eq!(Key::parse("  g_maj "), Some(Key::new(7, Scale::Major)));
        assert_eq!(Key::parse("f#-Min"), Some(Key::new(6, Scale::Minor)));
        for bad in ["", "none", "H-minor", "C-banana", "-minor", "#", "C-minorx"] {
            assert_eq!(Key::parse(bad), None, "{bad:?}");
        }
        let err = "Q-minor".parse::<Key>().unwrap_err();
        assert_eq!(err, UnknownKey("Q-minor".into()));
        assert!(err.to_string().contains("D-minor, F#-dorian"), "{err}");
    }

    #[test]
    fn serde_form_is_the_display_string() {
        for (key, text) in [
            (Key::new(2, Scale::Minor), "\"D-minor\""),
            (Key::new(0, Scale::Major), "\"C-major\""),
            (Key::new(6, Scale::Dorian), "\"F#-dorian\""),
            (
                Key::new(10, Scale::MajorPentatonic),
                "\"A#-major-pentatonic\"",
            ),
            (Key::new(8, Scale::HarmonicMinor), "\"G#-harmonic-minor\""),
        ] {
            assert_eq!(serde_json::to_string(&key).unwrap(), text);
            assert_eq!(serde_json::from_str::<Key>(text).unwrap(), key);
        }
        assert_eq!(
            serde_json::from_str::<Key>("\"Bb major\"").unwrap(),
            Key::new(10, Scale::Major)
        );
        assert_eq!(
            serde_json::to_string(&Some(Key::new(2, Scale::Minor))).unwrap(),
            "\"D-minor\""
        );
        assert_eq!(serde_json::to_string(&None::<Key>).unwrap(), "null");
        let err = serde_json::from_str::<Key>("\"Q-minor\"").unwrap_err();
        assert!(err.to_string().contains("unknown key \"Q-minor\""), "{err}");
        assert!(serde_json::from_str::<Key>("3").is_err());
    }

    #[test]
    fn contains_follows_the_scale() {
        let d_minor = Key::new(2, Scale::Minor);
        let held: Vec<u8> = (60..72).filter(|&p| d_minor.contains(p)).collect();
        // C D E F G A Bb
        assert_eq!(held, [60, 62, 64, 65, 67, 69, 70]);
        for octave in [0u8, 12, 48, 108] {
            assert!(d_minor.contains(2 + octave) && !d_minor.contains(1 + octave));
        }
        for tonic in 0..12 {
            for scale in Scale::ALL {
                let key = Key::new(tonic, scale);
                let count = (0..12).filter(|&p| key.contains(p)).count();
                assert_eq!(count, scale.steps().len(), "{key}");
                assert!(key.contains(tonic) && key.contains(tonic + 12));
            }
        }
        let a_minor_pentatonic = Key::new(9, Scale::MinorPentatonic);
        let held: Vec<&str> = (57..69)
            .filter(|&p| a_minor_pentatonic.contains(p))
            .map(note_name)
            .collect();
        assert_eq!(held, ["A", "C", "D", "E", "G"]);
    }

    #[test]
    fn keys_are_estimated_from_the_notes() {
        use crate::phrase::Note;
        let notes = |pitches: &[u8]| -> Vec<Note> {
            pitches
                .iter()
                .enumerate()
                .map(|(i, &p)| Note {
                    start: i as u32 * 480,
                    length: if i % 4 == 0 { 960 } else { 480 },
                    pitch: p,
                    velocity: 100,
                })
                .collect()
        };
        // A D major scale and arpeggio, an A minor tune, nothing.
        assert_eq!(
            Key::estimate(&notes(&[62, 64, 66, 67, 69, 71, 73, 74, 62, 66, 69, 74])),
            Key::parse("D-major")
        );
        assert_eq!(
            Key::estimate(&notes(&[69, 72, 76, 74, 72, 71, 69, 64, 69, 72, 71, 69])),
            Key::parse("A-minor")
        );
        assert_eq!(Key::estimate(&[]), None);
    }

    #[test]
    fn note_and_pitch_names() {
        assert_eq!(note_name(61), "C#");
        assert_eq!(note_name(11), "B");
        assert_eq!(pitch_name(60), "C4");
        assert_eq!(pitch_name(0), "C-1");
        assert_eq!(pitch_name(70), "A#4");
        assert_eq!(pitch_name(127), "G9");
        assert_eq!(Key::new(14, Scale::Major), Key::new(2, Scale::Major));
    }
}
