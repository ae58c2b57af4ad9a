//! A generated phrase: one polyphonic instrument part, a whole number of bars long.
//!
//! Times are integer ticks at [`PPQ`] so a phrase saved in a DAW project reloads bit-identical
//! and the scheduler never accumulates floating-point drift.

use serde::{Deserialize, Serialize};

/// Ticks per quarter note. 960 divides every REMI grid step (1/8 of a half, quarter or eighth
/// note beat and the coarser duration steps), so decoded notes are exact.
pub const PPQ: u32 = 960;

/// Longest phrase we accept anywhere (decoder, MIDI reader, scheduler). Keeps tick arithmetic
/// far from overflow and bounds memory for hostile input.
pub const MAX_BARS: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeSignature {
    pub numerator: u8,
    pub denominator: u8,
}

impl TimeSignature {
    pub const FOUR_FOUR: TimeSignature = TimeSignature {
        numerator: 4,
        denominator: 4,
    };

    /// `None` unless 1 ≤ numerator ≤ 32 and the denominator is 1, 2, 4, 8, 16 or 32.
    pub fn new(numerator: u8, denominator: u8) -> Option<TimeSignature> {
        let valid = (1..=32).contains(&numerator) && matches!(denominator, 1 | 2 | 4 | 8 | 16 | 32);
        valid.then_some(TimeSignature {
            numerator,
            denominator,
        })
    }

    /// Ticks in one beat, the beat being the denominator's note value.
    pub fn beat_ticks(self) -> u32 {
        PPQ * 4 / self.denominator as u32
    }

    pub fn bar_ticks(self) -> u32 {
        self.beat_ticks() * self.numerator as u32
    }

    /// Bar length in quarter notes, the unit hosts report positions in.
    pub fn bar_quarters(self) -> f64 {
        self.numerator as f64 * 4.0 / self.denominator as f64
    }
}

impl Default for TimeSignature {
    fn default() -> Self {
        TimeSignature::FOUR_FOUR
    }
}

impl std::fmt::Display for TimeSignature {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.numerator, self.denominator)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Note {
    /// Ticks from the start of the phrase.
    pub start: u32,
    /// Ticks; always at least 1.
    pub length: u32,
    pub pitch: u8,
    pub velocity: u8,
}

impl Note {
    pub fn end(&self) -> u32 {
        self.start.saturating_add(self.length)
    }
}

/// Velocity the decoder gives notes: REMI v1 carries no velocity (the plugin scales it).
pub const DEFAULT_VELOCITY: u8 = 100;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phrase {
    /// Sorted by (start, pitch); see [`Phrase::normalize`].
    pub notes: Vec<Note>,
    pub time_signature: TimeSignature,
    /// Quarter notes per minute the material was written at; playback follows the host tempo.
    pub tempo_hint: Option<f32>,
    /// Length in bars, at least 1.
    pub bars: u32,
}

impl Default for Phrase {
    fn default() -> Self {
        Phrase::empty(TimeSignature::FOUR_FOUR, 1)
    }
}

impl Phrase {
    pub fn empty(time_signature: TimeSignature, bars: u32) -> Phrase {
        Phrase {
            notes: Vec::new(),
            time_signature,
            tempo_hint: None,
            bars: bars.clamp(1, MAX_BARS),
        }
    }

    pub fn length_ticks(&self) -> u32 {
        self.bars * self.time_signature.bar_ticks()
    }

    /// Establishes the invariants every consumer relies on:
    /// at least one bar; notes sorted by (start, pitch); pitches and velocities in MIDI range;
    /// every note starts inside the phrase and lasts at least one tick; notes that run past the
    /// end are cut at the end; a note of a pitch that is still sounding when the same pitch
    /// starts again is cut at that start, and exact duplicates are dropped (MIDI cannot
    /// express two overlapping notes of one pitch on one channel).
    pub fn normalize(&mut self) {
        self.bars = self.bars.clamp(1, MAX_BARS);
        let end = self.length_ticks();
        self.notes.retain(|n| n.start < end && n.pitch < 128);
        for note in &mut self.notes {
            note.length = note.length.clamp(1, end - note.start);
            note.velocity = note.velocity.clamp(1, 127);
        }
        self.notes
            .sort_unstable_by_key(|n| (n.start, n.pitch, n.length));
        self.notes.dedup_by_key(|n| (n.start, n.pitch));
        let mut last_by_pitch = [usize::MAX; 128];
        for i in 0..self.notes.len() {
            let pitch = self.notes[i].pitch as usize;
            let previous = last_by_pitch[pitch];
            if previous != usize::MAX {
                let start = self.notes[i].start;
                let prev = &mut self.notes[previous];
                if prev.end() > start {
                    prev.length = start - prev.start;
                }
            }
            last_by_pitch[pitch] = i;
        }
    }

    /// True when [`Phrase::normalize`] would change nothing.
    pub fn is_normalized(&self) -> bool {
        let mut copy = self.clone();
        copy.normalize();
        copy == *self
    }

    /// Index range of the notes starting in `[from, to)` ticks (notes are sorted by start).
    pub fn notes_starting_in(&self, from: u32, to: u32) -> std::ops::Range<usize> {
        let lo = self.notes.partition_point(|n| n.start < from);
        let hi = self.notes.partition_point(|n| n.start < to);
        lo..hi.max(lo)
    }

    /// Sets velocities from a base level with accents where players put them: `accent` on the
    /// downbeat, half of it on the other main beats (dotted-quarter beats in compound meters
    /// like 6/8), the base elsewhere.
    pub fn shape_velocities(&mut self, base: u8, accent: u8) {
        let ts = self.time_signature;
        let compound = ts.denominator == 8 && ts.numerator.is_multiple_of(3) && ts.numerator > 3;
        let main_beat = ts.beat_ticks() * if compound { 3 } else { 1 };
        let bar = ts.bar_ticks();
        for note in &mut self.notes {
            let in_bar = note.start % bar;
            let lift = if in_bar == 0 {
                accent
            } else if in_bar.is_multiple_of(main_beat) {
                accent / 2
            } else {
                0
            };
            note.velocity = base.saturating_add(lift).clamp(1, 127);
        }
    }

    pub fn lowest_pitch(&self) -> Option<u8> {
        self.notes.iter().map(|n| n.pitch).min()
    }

    pub fn highest_pitch(&self) -> Option<u8> {
        self.notes.iter().map(|n| n.pitch).max()
    }
}
