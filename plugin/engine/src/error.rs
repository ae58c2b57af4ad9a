//! Error types of the engine, one per job, so callers can tell a bad file from a bad model.
//!
//! A wrapped error is part of the message (`not a valid MIDI file: <why>`) and not also a
//! `source()`, so a report that prints the cause chain (anyhow's `Caused by:`) says it once.

use thiserror::Error;

use crate::phrase::TimeSignature;

#[derive(Debug, Error)]
pub enum VocabError {
    #[error("vocabulary file is not valid JSON: {0}")]
    Json(serde_json::Error),
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
    Parse(midly::Error),
    #[error("MIDI files timed in SMPTE frames are not supported; save with beats (PPQ) timing")]
    SmpteTiming,
    #[error("not a valid MIDI file: {0}")]
    Invalid(&'static str),
    #[error("MIDI file is longer than {max_bars} bars")]
    TooLong { max_bars: u32 },
    #[error("MIDI file input/output failed: {0}")]
    Io(std::io::Error),
}

impl From<serde_json::Error> for VocabError {
    fn from(e: serde_json::Error) -> Self {
        VocabError::Json(e)
    }
}

impl From<midly::Error> for MidiError {
    fn from(e: midly::Error) -> Self {
        MidiError::Parse(e)
    }
}

impl From<std::io::Error> for MidiError {
    fn from(e: std::io::Error) -> Self {
        MidiError::Io(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// The cause is in the message, so it must not be a `source()` as well.
    #[test]
    fn wrapped_causes_are_in_the_message_once() {
        let io = MidiError::from(std::io::Error::other("disk full"));
        assert_eq!(io.to_string(), "MIDI file input/output failed: disk full");
        assert!(io.source().is_none());
        let parse = crate::midi_file::read_smf(b"MThd\0\0\0\x06\0\x01\0\x02\x01").unwrap_err();
        assert!(
            parse.to_string().starts_with("not a valid MIDI file: "),
            "{parse}"
        );
        assert!(parse.source().is_none());
        let json = VocabError::from(serde_json::from_str::<u8>("x").unwrap_err());
        assert!(json
            .to_string()
            .starts_with("vocabulary file is not valid JSON: "));
        assert!(json.source().is_none());
    }
}
