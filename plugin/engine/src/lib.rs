//! The GUI-free core of SMDIM.
//!
//! - [`vocab`]: the REMI v1 vocabulary the model was trained on, parsed from its JSON file.
//! - [`codec`]: REMI tokens ⇄ [`Phrase`], tolerant of any token sequence.
//! - [`phrase`]: the generated phrase, in integer ticks, serialisable into DAW projects.
//! - [`midi_file`]: Standard MIDI Files in and out.
//! - [`scheduler`]: turns a phrase plus the host transport into sample-accurate note events on
//!   the audio thread, without allocating.
//! - [`theory`]: note names, scales and keys, defined once.
//! - [`preview`]: the preview voice, a small FM electric piano that plays the output notes.

pub mod capture;
pub mod codec;
pub mod error;
pub mod handoff;
pub mod midi_file;
pub mod phrase;
pub mod preview;
pub mod sampler;
pub mod scheduler;
pub mod theory;
pub mod vocab;

pub use codec::{decode, DecodeReport, Decoded, Encoder, SkipReason};
pub use error::{EncodeError, MidiError, VocabError};
pub use phrase::{Note, Phrase, TimeSignature, PPQ};
pub use scheduler::{
    EventBuffer, NoteEvent, NoteEventKind, PlaybackMode, Scheduler, SwitchMode, Transport,
};
pub use theory::{Key, Scale};
pub use vocab::{Token, TokenId, Vocabulary};
