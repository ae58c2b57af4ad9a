//! Standard MIDI Files ⇄ [`Phrase`], through midly.
//!
//! Writing produces a format-1 file a DAW imports as one clip: a conductor track (tempo, time
//! signature) and one note track (name, notes). Reading accepts format 0, 1 and 2 with any PPQ,
//! running status and several tracks, merging every note into one phrase.

use std::collections::VecDeque;
use std::path::Path;

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use crate::error::MidiError;
use crate::phrase::{Note, Phrase, TimeSignature, MAX_BARS, PPQ};

/// How a phrase is rendered into a file.
#[derive(Debug, Clone)]
pub struct WriteOptions<'a> {
    /// Quarter notes per minute written as the file's tempo (the host tempo when exporting).
    pub tempo: f64,
    /// Overrides the phrase's meter (the host's when exporting).
    pub time_signature: Option<TimeSignature>,
    pub track_name: &'a str,
    /// 0-based MIDI channel.
    pub channel: u8,
}

/// Tempos a file is written at as asked (quarter notes per minute); others are clamped to
/// them, and one that is not a positive number is written as 120.
pub const TEMPO: std::ops::RangeInclusive<f64> = 4.0..=1000.0;

impl Default for WriteOptions<'_> {
    fn default() -> Self {
        WriteOptions {
            tempo: 120.0,
            time_signature: None,
            track_name: "SMDIM phrase",
            channel: 0,
        }
    }
}

/// Renders the phrase as SMF bytes.
pub fn write_smf(phrase: &Phrase, options: &WriteOptions) -> Result<Vec<u8>, MidiError> {
    let tempo = if options.tempo.is_finite() && options.tempo > 0.0 {
        options.tempo.clamp(*TEMPO.start(), *TEMPO.end())
    } else {
        120.0
    };
    let ts = options.time_signature.unwrap_or(phrase.time_signature);
    let micros_per_quarter = (60_000_000.0 / tempo).round() as u32;

    let conductor = vec![
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(u24::new(micros_per_quarter))),
        },
        TrackEvent {
            delta: u28::new(0),
            kind: TrackEventKind::Meta(MetaMessage::TimeSignature(
                ts.numerator,
                ts.denominator.trailing_zeros() as u8,
                24,
                8,
            )),
        },
        end_of_track(0),
    ];

    // (tick, is_on, pitch, velocity); offs sort before ons at one tick so a repeated pitch
    // re-triggers instead of being cut.
    let mut events: Vec<(u32, bool, u8, u8)> = Vec::with_capacity(phrase.notes.len() * 2);
    for note in &phrase.notes {
        events.push((note.start, true, note.pitch, note.velocity.clamp(1, 127)));
        events.push((note.end(), false, note.pitch, 0));
    }
    events.sort_unstable_by_key(|&(tick, on, pitch, _)| (tick, on, pitch));

    let channel = u4::new(options.channel.min(15));
    let mut notes = Vec::with_capacity(events.len() + 2);
    notes.push(TrackEvent {
        delta: u28::new(0),
        kind: TrackEventKind::Meta(MetaMessage::TrackName(options.track_name.as_bytes())),
    });
    let mut now = 0u32;
    for (tick, on, pitch, velocity) in events {
        let message = if on {
            MidiMessage::NoteOn {
                key: u7::new(pitch.min(127)),
                vel: u7::new(velocity),
            }
        } else {
            MidiMessage::NoteOff {
                key: u7::new(pitch.min(127)),
                vel: u7::new(64),
            }
        };
        notes.push(TrackEvent {
            delta: u28::new(tick - now),
            kind: TrackEventKind::Midi { channel, message },
        });
        now = tick;
    }
    // End the clip at the phrase's last bar line so DAWs import the full loop length.
    notes.push(end_of_track(phrase.length_ticks().saturating_sub(now)));

    let smf = Smf {
        header: Header::new(Format::Parallel, Timing::Metrical(u15::new(PPQ as u16))),
        tracks: vec![conductor, notes],
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)?;
    Ok(bytes)
}

fn end_of_track(delta: u32) -> TrackEvent<'static> {
    TrackEvent {
        delta: u28::new(delta.min(u28::max_value().as_int())),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    }
}

pub fn save_smf(phrase: &Phrase, options: &WriteOptions, path: &Path) -> Result<(), MidiError> {
    std::fs::write(path, write_smf(phrase, options)?)?;
    Ok(())
}

/// A file read into a phrase, with what was found along the way.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadMidi {
    pub phrase: Phrase,
    pub format: &'static str,
    pub tracks: usize,
    pub ticks_per_quarter: u16,
    /// (tick in phrase PPQ, quarter notes per minute) of every tempo event.
    pub tempo_map: Vec<(u64, f64)>,
    /// Note-ons never switched off, closed at the end of their track.
    pub unterminated_notes: usize,
}

/// Parses SMF bytes. Corrupt or truncated data is an error, never a panic.
pub fn read_smf(bytes: &[u8]) -> Result<ReadMidi, MidiError> {
    let smf = Smf::parse(bytes)?;
    // midly is lenient about missing tracks; a file cut short must not pass as a shorter one.
    let declared_tracks = bytes
        .get(10..12)
        .map_or(0, |b| u16::from_be_bytes([b[0], b[1]]));
    if smf.tracks.len() < declared_tracks as usize {
        return Err(MidiError::Invalid(
            "truncated: fewer tracks than the header declares",
        ));
    }
    let ppq = match smf.header.timing {
        Timing::Metrical(t) if t.as_int() > 0 => t.as_int(),
        Timing::Metrical(_) => return Err(MidiError::Invalid("zero ticks per quarter note")),
        Timing::Timecode(..) => return Err(MidiError::SmpteTiming),
    };
    let to_ppq = |tick: u64| (tick * PPQ as u64 + ppq as u64 / 2) / ppq as u64;
    let max_ticks = MAX_BARS as u64 * TimeSignature::new(32, 1).map_or(0, |t| t.bar_ticks()) as u64;

    let mut time_signature: Option<(u64, TimeSignature)> = None;
    let mut tempo_map = Vec::new();
    let mut notes = Vec::new();
    let mut unterminated = 0usize;
    // Open note-ons per (channel, key), oldest first: a note-off closes the oldest one.
    let mut open: Vec<VecDeque<(u64, u8)>> = vec![VecDeque::new(); 16 * 128];

    for track in &smf.tracks {
        let mut tick = 0u64;
        for event in track {
            tick += event.delta.as_int() as u64;
            let at = to_ppq(tick);
            if at > max_ticks {
                return Err(MidiError::TooLong { max_bars: MAX_BARS });
            }
            match event.kind {
                TrackEventKind::Meta(MetaMessage::Tempo(us)) if us.as_int() > 0 => {
                    tempo_map.push((at, 60_000_000.0 / us.as_int() as f64));
                }
                TrackEventKind::Meta(MetaMessage::TimeSignature(n, d_pow, _, _)) => {
                    let ts = (d_pow <= 5)
                        .then(|| TimeSignature::new(n, 1u8 << d_pow))
                        .flatten();
                    if let Some(ts) = ts {
                        if time_signature.is_none_or(|(t, _)| at < t) {
                            time_signature = Some((at, ts));
                        }
                    }
                }
                TrackEventKind::Midi { channel, message } => {
                    let (key, on) = match message {
                        MidiMessage::NoteOn { key, vel } if vel.as_int() > 0 => {
                            (key, Some(vel.as_int()))
                        }
                        MidiMessage::NoteOn { key, .. } | MidiMessage::NoteOff { key, .. } => {
                            (key, None)
                        }
                        _ => continue,
                    };
                    let slot = &mut open[channel.as_int() as usize * 128 + key.as_int() as usize];
                    match on {
                        Some(velocity) => slot.push_back((at, velocity)),
                        None => {
                            if let Some((start, velocity)) = slot.pop_front() {
                                notes.push((start, at, key.as_int(), velocity));
                            }
                        }
                    }
                }
                _ => {}
            }
        }
        for (index, slot) in open.iter_mut().enumerate() {
            for (start, velocity) in slot.drain(..) {
                unterminated += 1;
                notes.push((start, to_ppq(tick), (index % 128) as u8, velocity));
            }
        }
    }

    let time_signature = time_signature.map_or(TimeSignature::FOUR_FOUR, |(_, ts)| ts);
    tempo_map.sort_by_key(|&(at, _)| at);
    let end = notes.iter().map(|n| n.1.max(n.0 + 1)).max().unwrap_or(0);
    let bar_ticks = time_signature.bar_ticks() as u64;
    let bars = end.div_ceil(bar_ticks).max(1);
    if bars > MAX_BARS as u64 {
        return Err(MidiError::TooLong { max_bars: MAX_BARS });
    }
    let mut phrase = Phrase {
        notes: notes
            .into_iter()
            .map(|(start, end, pitch, velocity)| Note {
                start: start as u32,
                length: (end.saturating_sub(start)).max(1) as u32,
                pitch,
                velocity,
            })
            .collect(),
        time_signature,
        tempo_hint: tempo_map.first().map(|&(_, t)| t as f32),
        bars: bars as u32,
    };
    phrase.normalize();
    Ok(ReadMidi {
        phrase,
        format: match smf.header.format {
            Format::SingleTrack => "0 (single track)",
            Format::Parallel => "1 (parallel tracks)",
            Format::Sequential => "2 (sequential tracks)",
        },
        tracks: smf.tracks.len(),
        ticks_per_quarter: ppq,
        tempo_map,
        unterminated_notes: unterminated,
    })
}

pub fn load_smf(path: &Path) -> Result<ReadMidi, MidiError> {
    read_smf(&std::fs::read(path)?)
}
