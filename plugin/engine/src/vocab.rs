//! The REMI v1 vocabulary, read from `vocab/remi_v1.json`.
//!
//! The JSON file is the single definition of token ids: `model-export` generates it with miditok
//! and the model is trained on it. Here every token string is parsed into a [`Token`] once, so the
//! codec matches on token *kinds* and never on hard-coded ids.

use std::collections::HashMap;
use std::sync::OnceLock;

use serde::Deserialize;

use crate::error::VocabError;
use crate::phrase::TimeSignature;

/// Token positions per beat of the time signature's denominator note (miditok's finest
/// `beat_res`). `Position_p` is `p / POSITIONS_PER_BEAT` beats after the bar line.
pub const POSITIONS_PER_BEAT: u32 = 8;

/// The file the model was trained with, embedded so the engine cannot disagree with it.
pub const REMI_V1_JSON: &str = include_str!("../../../vocab/remi_v1.json");

/// A token id as the model sees it.
pub type TokenId = u32;

/// One parsed token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Token {
    Pad,
    Bos,
    Eos,
    Mask,
    Bar,
    TimeSig(TimeSignature),
    /// Eighths of a beat after the bar line.
    Position(u32),
    /// Quarter notes per minute.
    Tempo(f32),
    Pitch(u8),
    /// `whole + part / resolution` beats of the time signature's denominator note.
    Duration {
        whole: u32,
        part: u32,
        resolution: u32,
    },
}

impl Token {
    /// Parses miditok's `Type_Value` spelling.
    pub fn parse(text: &str) -> Result<Token, VocabError> {
        let bad = || VocabError::BadToken(text.to_owned());
        let (kind, value) = text.split_once('_').ok_or_else(bad)?;
        let int = |s: &str| s.parse::<u32>().map_err(|_| bad());
        Ok(match kind {
            "PAD" => Token::Pad,
            "BOS" => Token::Bos,
            "EOS" => Token::Eos,
            "MASK" => Token::Mask,
            "Bar" => Token::Bar,
            "TimeSig" => {
                let (n, d) = value.split_once('/').ok_or_else(bad)?;
                let (n, d) = (int(n)?, int(d)?);
                TimeSignature::new(
                    u8::try_from(n).map_err(|_| bad())?,
                    u8::try_from(d).map_err(|_| bad())?,
                )
                .ok_or_else(bad)?
            }
            .into(),
            "Position" => Token::Position(int(value)?),
            "Tempo" => {
                let tempo: f32 = value.parse().map_err(|_| bad())?;
                if !(tempo.is_finite() && tempo > 0.0) {
                    return Err(bad());
                }
                Token::Tempo(tempo)
            }
            "Pitch" => Token::Pitch(
                u8::try_from(int(value)?)
                    .ok()
                    .filter(|p| *p < 128)
                    .ok_or_else(bad)?,
            ),
            "Duration" => {
                let mut parts = value.split('.');
                let (Some(w), Some(p), Some(r), None) =
                    (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(bad());
                };
                let (whole, part, resolution) = (int(w)?, int(p)?, int(r)?);
                if resolution == 0 || part >= resolution || (whole == 0 && part == 0) {
                    return Err(bad());
                }
                Token::Duration {
                    whole,
                    part,
                    resolution,
                }
            }
            _ => return Err(bad()),
        })
    }
}

impl From<TimeSignature> for Token {
    fn from(ts: TimeSignature) -> Self {
        Token::TimeSig(ts)
    }
}

#[derive(Deserialize)]
struct VocabFile {
    name: String,
    tokens: Vec<String>,
}

/// Token strings in id order, parsed, with reverse lookups for the encoder.
#[derive(Debug, Clone)]
pub struct Vocabulary {
    name: String,
    texts: Vec<String>,
    tokens: Vec<Token>,
    ids_by_text: HashMap<String, TokenId>,
}

impl Vocabulary {
    /// The embedded REMI v1 vocabulary (parsed once per process).
    pub fn remi_v1() -> &'static Vocabulary {
        static VOCAB: OnceLock<Vocabulary> = OnceLock::new();
        VOCAB.get_or_init(|| {
            Vocabulary::from_json(REMI_V1_JSON)
                .expect("the embedded vocabulary is checked by tests")
        })
    }

    pub fn from_json(json: &str) -> Result<Vocabulary, VocabError> {
        let file: VocabFile = serde_json::from_str(json)?;
        let tokens = file
            .tokens
            .iter()
            .map(|t| Token::parse(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ids_by_text = HashMap::with_capacity(file.tokens.len());
        for (id, text) in file.tokens.iter().enumerate() {
            if ids_by_text.insert(text.clone(), id as TokenId).is_some() {
                return Err(VocabError::Duplicate(text.clone()));
            }
        }
        let vocab = Vocabulary {
            name: file.name,
            texts: file.tokens,
            tokens,
            ids_by_text,
        };
        for required in ["PAD_None", "MASK_None", "Bar_None"] {
            if vocab.id_of(required).is_none() {
                return Err(VocabError::Missing(required));
            }
        }
        Ok(vocab)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The parsed token, or `None` for an id outside the vocabulary.
    pub fn token(&self, id: TokenId) -> Option<Token> {
        self.tokens.get(id as usize).copied()
    }

    pub fn text(&self, id: TokenId) -> Option<&str> {
        self.texts.get(id as usize).map(String::as_str)
    }

    pub fn id_of(&self, text: &str) -> Option<TokenId> {
        self.ids_by_text.get(text).copied()
    }

    pub fn tokens(&self) -> &[Token] {
        &self.tokens
    }

    pub fn mask_id(&self) -> TokenId {
        self.id_of("MASK_None").expect("checked in from_json")
    }

    pub fn pad_id(&self) -> TokenId {
        self.id_of("PAD_None").expect("checked in from_json")
    }

    pub fn bar_id(&self) -> TokenId {
        self.id_of("Bar_None").expect("checked in from_json")
    }
}
