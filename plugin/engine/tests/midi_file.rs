//! MIDI files: round trips, foreign files (running status, several tracks, tempo maps) and
//! hostile bytes.

use proptest::prelude::*;
use smdim_engine::midi_file::{read_smf, write_smf, WriteOptions};
use smdim_engine::phrase::{Note, Phrase, TimeSignature, PPQ};
use smdim_engine::MidiError;

fn sample_phrase() -> Phrase {
    let mut phrase = Phrase::empty(TimeSignature::new(3, 4).unwrap(), 2);
    phrase.notes = vec![
        Note {
            start: 0,
            length: 960,
            pitch: 60,
            velocity: 100,
        },
        Note {
            start: 0,
            length: 480,
            pitch: 64,
            velocity: 80,
        },
        Note {
            start: 960,
            length: 960,
            pitch: 60,
            velocity: 90,
        },
        Note {
            start: 4800,
            length: 960,
            pitch: 67,
            velocity: 127,
        },
    ];
    phrase.tempo_hint = Some(96.0);
    phrase
}

fn chunk(kind: &[u8; 4], body: &[u8]) -> Vec<u8> {
    let mut out = kind.to_vec();
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(body);
    out
}

#[test]
fn written_files_read_back_identically() {
    let phrase = sample_phrase();
    let options = WriteOptions {
        tempo: 96.0,
        track_name: "test",
        ..Default::default()
    };
    let bytes = write_smf(&phrase, &options).unwrap();
    let read = read_smf(&bytes).unwrap();
    assert_eq!(read.phrase.notes, phrase.notes);
    assert_eq!(read.phrase.time_signature, phrase.time_signature);
    assert_eq!(read.phrase.bars, 2);
    assert_eq!(read.tracks, 2);
    assert_eq!(read.ticks_per_quarter, PPQ as u16);
    assert!((read.tempo_map[0].1 - 96.0).abs() < 1e-3);
    assert_eq!(read.unterminated_notes, 0);

    // midly agrees the file is well formed: both tracks end with exactly one end-of-track.
    let smf = midly::Smf::parse(&bytes).unwrap();
    for track in &smf.tracks {
        let ends: Vec<_> = track
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                matches!(
                    e.kind,
                    midly::TrackEventKind::Meta(midly::MetaMessage::EndOfTrack)
                )
            })
            .map(|(i, _)| i)
            .collect();
        assert_eq!(ends, vec![track.len() - 1]);
    }
    // The clip lasts exactly its bars: the note track ends on the last bar line.
    let length: u32 = smf.tracks[1].iter().map(|e| e.delta.as_int()).sum();
    assert_eq!(length, phrase.length_ticks());
    let name = smf.tracks[1].iter().find_map(|e| match e.kind {
        midly::TrackEventKind::Meta(midly::MetaMessage::TrackName(n)) => Some(n),
        _ => None,
    });
    assert_eq!(name, Some(&b"test"[..]));
}

#[test]
fn export_uses_the_host_meter_and_tempo() {
    let options = WriteOptions {
        tempo: 140.0,
        time_signature: Some(TimeSignature::new(6, 8).unwrap()),
        channel: 9,
        ..Default::default()
    };
    let bytes = write_smf(&sample_phrase(), &options).unwrap();
    let read = read_smf(&bytes).unwrap();
    assert_eq!(
        read.phrase.time_signature,
        TimeSignature::new(6, 8).unwrap()
    );
    assert!((read.tempo_map[0].1 - 140.0).abs() < 1e-2);
    let smf = midly::Smf::parse(&bytes).unwrap();
    assert!(smf.tracks[1].iter().any(
        |e| matches!(e.kind, midly::TrackEventKind::Midi { channel, .. } if channel.as_int() == 9)
    ));
}

#[test]
fn type0_running_status_other_ppq() {
    // Format 0, 96 PPQ; the second and later note messages use running status, note-offs are
    // note-ons with velocity 0.
    let track = [
        0x00, 0xFF, 0x51, 0x03, 0x07, 0xA1, 0x20, // tempo 120
        0x00, 0x90, 0x3C, 0x64, // on C4
        0x30, 0x3C, 0x00, // +48 off (running status)
        0x00, 0x3E, 0x50, // on D4
        0x60, 0x3E, 0x00, // +96 off
        0x00, 0xFF, 0x2F, 0x00,
    ];
    let mut bytes = chunk(b"MThd", &[0, 0, 0, 1, 0, 96]);
    bytes.extend(chunk(b"MTrk", &track));
    let read = read_smf(&bytes).unwrap();
    assert_eq!(read.format, "0 (single track)");
    assert_eq!(
        read.phrase.notes,
        vec![
            Note {
                start: 0,
                length: 480,
                pitch: 60,
                velocity: 100
            },
            Note {
                start: 480,
                length: 960,
                pitch: 62,
                velocity: 80
            },
        ]
    );
    assert_eq!(read.phrase.tempo_hint, Some(120.0));
}

#[test]
fn type1_merges_tracks_and_keeps_tempo_map() {
    let conductor = [
        0x00, 0xFF, 0x58, 0x04, 0x03, 0x02, 0x18, 0x08, // 3/4
        0x00, 0xFF, 0x51, 0x03, 0x09, 0x27, 0xC0, // 100 bpm
        0x83, 0x00, 0xFF, 0x51, 0x03, 0x07, 0xA1, 0x20, // at 384 ticks: 120 bpm
        0x00, 0xFF, 0x2F, 0x00,
    ];
    let melody = [
        0x00, 0x91, 0x48, 0x40, 0x81, 0x40, 0x81, 0x48, 0x00, 0x00, 0xFF, 0x2F, 0x00,
    ];
    // An unterminated note: closed at the end of its track.
    let bass = [0x00, 0x92, 0x30, 0x40, 0x83, 0x00, 0xFF, 0x2F, 0x00];
    let mut bytes = chunk(b"MThd", &[0, 1, 0, 3, 0, 192]);
    for t in [&conductor[..], &melody[..], &bass[..]] {
        bytes.extend(chunk(b"MTrk", t));
    }
    let read = read_smf(&bytes).unwrap();
    assert_eq!(read.tracks, 3);
    assert_eq!(
        read.phrase.time_signature,
        TimeSignature::new(3, 4).unwrap()
    );
    assert_eq!(read.tempo_map.len(), 2);
    assert_eq!(read.tempo_map[1].0, 2 * PPQ as u64);
    assert_eq!(read.unterminated_notes, 1);
    let pitches: Vec<u8> = read.phrase.notes.iter().map(|n| n.pitch).collect();
    assert_eq!(pitches, vec![48, 72]);
    assert_eq!(read.phrase.notes[1].length, PPQ);
    assert_eq!(read.phrase.notes[0].length, 2 * PPQ);
}

#[test]
fn broken_files_are_errors() {
    let good = write_smf(&sample_phrase(), &WriteOptions::default()).unwrap();
    for cut in [0, 4, 13, 14, 20, good.len() - 1] {
        assert!(read_smf(&good[..cut]).is_err(), "truncated at {cut}");
    }
    assert!(read_smf(b"RIFF....").is_err());
    let mut smpte = chunk(b"MThd", &[0, 0, 0, 1, 0xE7, 0x28]);
    smpte.extend(chunk(b"MTrk", &[0x00, 0xFF, 0x2F, 0x00]));
    assert!(matches!(read_smf(&smpte), Err(MidiError::SmpteTiming)));
    let mut zero = chunk(b"MThd", &[0, 0, 0, 1, 0, 0]);
    zero.extend(chunk(b"MTrk", &[0x00, 0xFF, 0x2F, 0x00]));
    assert!(read_smf(&zero).is_err());
    // A note that ends millions of bars later is refused, not allocated.
    let mut long = chunk(b"MThd", &[0, 0, 0, 1, 0, 1]);
    long.extend(chunk(
        b"MTrk",
        &[
            0x00, 0x90, 0x3C, 0x64, 0xFF, 0xFF, 0xFF, 0x7F, 0x3C, 0x00, 0x00, 0xFF, 0x2F, 0x00,
        ],
    ));
    assert!(matches!(read_smf(&long), Err(MidiError::TooLong { .. })));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = read_smf(&bytes);
    }

    #[test]
    fn mutated_files_never_panic_and_stay_valid(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = write_smf(&sample_phrase(), &WriteOptions::default()).unwrap();
        for (at, value) in edits {
            let i = at.index(bytes.len());
            bytes[i] = value;
        }
        let cut = cut.index(bytes.len() + 1);
        if let Ok(read) = read_smf(&bytes[..cut]) {
            prop_assert!(read.phrase.is_normalized());
        }
    }

    #[test]
    fn any_valid_phrase_round_trips(
        raw in prop::collection::vec((0u32..7680, 0u8..128, 1u32..4000, 1u8..128), 0..50),
        bars in 1u32..5,
    ) {
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, bars);
        phrase.notes = raw.into_iter().map(|(start, pitch, length, velocity)| Note { start, length, pitch, velocity }).collect();
        phrase.normalize();
        let bytes = write_smf(&phrase, &WriteOptions::default()).unwrap();
        let read = read_smf(&bytes).unwrap();
        prop_assert_eq!(read.phrase.notes, phrase.notes);
    }
}
