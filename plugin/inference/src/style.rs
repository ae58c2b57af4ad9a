//! The style a style-conditioned model is asked to write in (its `style` input).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What kind of music to write. The model index is the value of the ONNX `style` input and the
/// position of the style's id in the model card's `styles`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Style {
    /// No condition: whatever the model learnt from all its data. The only choice for a model
    /// without styles.
    Any,
    /// A folk-tune line.
    #[default]
    Melody,
    /// Four voices.
    Chorale,
}

impl Style {
    /// Every style, in model-index order (the order the CLI and the editor list them).
    pub const ALL: [Style; 3] = [Style::Any, Style::Melody, Style::Chorale];

    /// The stable id: the CLI's `--style` value, the saved state's and the card's name. Written
    /// out rather than derived, so renaming a variant never breaks a saved project.
    pub const fn id(self) -> &'static str {
        match self {
            Style::Any => "any",
            Style::Melody => "melody",
            Style::Chorale => "chorale",
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            Style::Any => "Any",
            Style::Melody => "Melody",
            Style::Chorale => "Chorale",
        }
    }

    /// The value fed to the model's `style` input (fixed by training: 0 Any, 1 Melody,
    /// 2 Chorale).
    pub const fn index(self) -> usize {
        match self {
            Style::Any => 0,
            Style::Melody => 1,
            Style::Chorale => 2,
        }
    }

    pub fn parse(text: &str) -> Option<Style> {
        let text = text.trim();
        Style::ALL
            .into_iter()
            .find(|style| style.id().eq_ignore_ascii_case(text))
    }

    /// Notes per quarter note typical of the style (8-bar 4/4 excerpts of the test split: folk
    /// tunes 7.4 notes a bar, Bach chorales 18): the density a phrase gets unless asked.
    pub const fn typical_density(self) -> f64 {
        match self {
            Style::Any => 2.2,
            Style::Melody => 1.85,
            Style::Chorale => 4.5,
        }
    }

    /// Tokens a note costs in the style's REMI, bar lines aside: a line's note is Position
    /// Pitch Duration (3), a chorale's chords share their Position (~3 notes an onset: 2.35);
    /// sizes the phrase's token budget.
    pub const fn tokens_per_note(self) -> f64 {
        match self {
            Style::Any => 2.9,
            Style::Melody => 3.0,
            Style::Chorale => 2.35,
        }
    }

    /// Notes per onset the style allows, given the user's limit: a Melody is a single line
    /// (one note at a time, as in the folk tunes it learnt from: 1.01 notes per onset); the
    /// other styles take the user's limit.
    pub fn max_notes_per_onset(self, user_limit: u32) -> u32 {
        match self {
            Style::Melody => 1,
            Style::Any | Style::Chorale => user_limit,
        }
    }

    /// `any, melody or chorale`, for messages that list the choices.
    pub fn choices() -> String {
        let ids: Vec<&str> = Style::ALL.iter().map(|s| s.id()).collect();
        match ids.split_last() {
            Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
            _ => ids.concat(),
        }
    }
}

impl std::fmt::Display for Style {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// On disk as the stable id.
impl Serialize for Style {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.id())
    }
}

impl<'de> Deserialize<'de> for Style {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let id = String::deserialize(deserializer)?;
        Style::parse(&id).ok_or_else(|| {
            serde::de::Error::custom(format!("unknown style {id:?}: choose {}", Style::choices()))
        })
    }
}

/// Lenient reading for saved settings: a style this build does not know (a newer build's) or a
/// malformed value is the default, so the phrase it belongs to still loads.
pub(crate) fn deserialize_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Style, D::Error> {
    let value = serde_json::Value::deserialize(deserializer)?;
    Ok(value.as_str().and_then(Style::parse).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_style_parses_back_from_its_id() {
        for style in Style::ALL {
            assert_eq!(Style::parse(style.id()), Some(style));
            assert_eq!(Style::parse(&style.id().to_uppercase()), Some(style));
            assert_eq!(Style::parse(&style.to_string()), Some(style));
        }
        assert_eq!(Style::parse("banana"), None);
        assert_eq!(Style::parse(""), None);
    }

    #[test]
    fn ids_indices_and_names_are_fixed() {
        let ids: Vec<_> = Style::ALL.iter().map(|s| s.id()).collect();
        assert_eq!(ids, ["any", "melody", "chorale"]);
        let indices: Vec<_> = Style::ALL.iter().map(|s| s.index()).collect();
        assert_eq!(indices, [0, 1, 2]);
        let names: Vec<_> = Style::ALL.iter().map(|s| s.to_string()).collect();
        assert_eq!(names, ["Any", "Melody", "Chorale"]);
        assert_eq!(Style::default(), Style::Melody);
        assert_eq!(Style::choices(), "any, melody or chorale");
    }

    #[test]
    fn serialises_as_the_id() {
        for style in Style::ALL {
            let json = serde_json::to_string(&style).unwrap();
            assert_eq!(json, format!("\"{}\"", style.id()));
            assert_eq!(serde_json::from_str::<Style>(&json).unwrap(), style);
        }
        let err = serde_json::from_str::<Style>("\"banana\"").unwrap_err();
        assert!(err.to_string().contains("any, melody or chorale"), "{err}");
    }
}
