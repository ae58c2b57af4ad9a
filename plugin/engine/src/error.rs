//! Error types of the engine, one per job, so callers can tell a bad file from a bad model.

use thiserror::Error;

use crate::phrase::TimeSignature;

#[derive(Debug, Error)]
pub enum VocabError {
    #[error("vocabulary file is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("vocabulary token {0:?} is not a REMI token this engine understands")]
    BadToken(String),
    #[error("vocabulary token {0:?} appears twice")]
    Duplicate(String),
    #[error("vocabulary lacks the required token {0}")]
    Missing(&'static str),
}

#[derive(Debug, Error)]
pub enum EncodeError {
    #[error("time signature {0} has no token in the vocabulary")]
    UnsupportedTimeSignature(TimeSignature),
    #[error("the vocabulary has no {0} tokens")]
    MissingTokens(&'static str),
    #[error("unknown token {0:?}")]
    UnknownToken(String),
}

#[derive(Debug, Error)]
pub enum MidiError {
    #[error("not a valid MIDI file: {0}")]
    Parse(#[from] midly::Error),
    #[error("MIDI files timed in SMPTE frames are not supported; save with beats (PPQ) timing")]
    SmpteTiming,
    #[error("not a valid MIDI file: {0}")]
    Invalid(&'static str),
    #[error("MIDI file is longer than {max_bars} bars")]
    TooLong { max_bars: u32 },
    #[error("could not write MIDI: {0}")]
    Io(#[from] std::io::Error),
}
