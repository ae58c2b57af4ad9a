//! Decoder robustness and encoder round trips.

use proptest::prelude::*;
use smdim_engine::codec::{decode, Encoder, SkipReason};
use smdim_engine::phrase::{Note, Phrase, TimeSignature, DEFAULT_VELOCITY, PPQ};
use smdim_engine::Vocabulary;

fn ids(text: &str) -> Vec<u32> {
    let vocab = Vocabulary::remi_v1();
    text.split_whitespace()
        .map(|t| vocab.id_of(t).unwrap_or_else(|| panic!("{t}")))
        .collect()
}

#[test]
fn each_skip_rule_is_counted() {
    let vocab = Vocabulary::remi_v1();
    let cases: &[(&str, SkipReason)] = &[
        ("Position_4 Bar_None", SkipReason::BeforeFirstBar),
        ("Bar_None TimeSig_4/4 MASK_None", SkipReason::Mask),
        (
            "Bar_None TimeSig_4/4 Position_0 TimeSig_4/4",
            SkipReason::MisplacedTimeSig,
        ),
        (
            "Bar_None TimeSig_4/4 Bar_None TimeSig_3/4",
            SkipReason::MeterChange,
        ),
        (
            "Bar_None TimeSig_3/4 Position_24",
            SkipReason::PositionOutsideBar,
        ),
        (
            "Bar_None TimeSig_4/4 Position_8 Position_4",
            SkipReason::PositionBackwards,
        ),
        (
            "Bar_None TimeSig_4/4 Position_0 Pitch_60 Position_8",
            SkipReason::PitchWithoutDuration,
        ),
        (
            "Bar_None TimeSig_4/4 Position_0 Pitch_60",
            SkipReason::PitchWithoutDuration,
        ),
        (
            "Bar_None TimeSig_4/4 Position_0 Duration_1.0.8",
            SkipReason::DurationWithoutPitch,
        ),
    ];
    for (text, reason) in cases {
        let decoded = decode(vocab, &ids(text));
        assert_eq!(
            decoded.report.count(*reason),
            1,
            "{text}: {:?}",
            decoded.report
        );
        assert_eq!(decoded.report.skipped(), 1, "{text}");
    }
    let unknown = decode(vocab, &[vocab.bar_id(), 100_000]);
    assert_eq!(unknown.report.count(SkipReason::UnknownId), 1);
}

#[test]
fn eos_ends_and_pad_is_silent() {
    let vocab = Vocabulary::remi_v1();
    let decoded = decode(
        vocab,
        &ids("BOS_None Bar_None TimeSig_3/4 Position_8 Pitch_62 Duration_1.0.8 EOS_None Bar_None PAD_None"),
    );
    assert_eq!(decoded.report.skipped(), 0);
    assert_eq!(decoded.phrase.bars, 1);
    assert_eq!(
        decoded.phrase.notes,
        vec![Note {
            start: PPQ,
            length: PPQ,
            pitch: 62,
            velocity: DEFAULT_VELOCITY
        }]
    );
}

#[test]
fn notes_past_the_end_are_cut_and_overlaps_resolved() {
    let vocab = Vocabulary::remi_v1();
    // A 12-beat note in a one-bar 4/4 phrase, and the same pitch again one beat later.
    let decoded = decode(
        vocab,
        &ids("Bar_None TimeSig_4/4 Position_0 Pitch_60 Duration_12.0.4 Position_8 Pitch_60 Duration_8.0.4"),
    );
    let notes = &decoded.phrase.notes;
    assert_eq!(notes.len(), 2);
    assert_eq!((notes[0].start, notes[0].length), (0, PPQ));
    assert_eq!((notes[1].start, notes[1].length), (PPQ, 3 * PPQ));
}

prop_compose! {
    /// Quantised phrases the vocabulary can express exactly.
    fn quantised_phrase()(
        meter in prop::sample::select(vec![(4u8, 4u8), (3, 4), (6, 8), (2, 2), (5, 4), (12, 8)]),
        bars in 1u32..9,
        raw in prop::collection::vec((0u32..10_000, 21u8..=108, 1u32..64), 0..60),
        tempo in prop::option::of(prop::sample::select(vec![60.0f32, 94.29, 128.57, 180.0])),
    ) -> Phrase {
        let ts = TimeSignature::new(meter.0, meter.1).unwrap();
        let step = ts.beat_ticks() / 8;
        let slots = bars * ts.numerator as u32 * 8;
        let mut phrase = Phrase::empty(ts, bars);
        phrase.tempo_hint = tempo;
        for (slot, pitch, len) in raw {
            // Durations up to 4 beats on the 1/8-beat grid are all tokens.
            let length = (len.min(32)) * step;
            phrase.notes.push(Note { start: (slot % slots) * step, length, pitch, velocity: DEFAULT_VELOCITY });
        }
        phrase.normalize();
        // Normalising may cut notes to lengths with no token; keep only exact ones.
        phrase.notes.retain(|n| n.length % step == 0 && n.length <= 32 * step);
        phrase
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn any_id_sequence_decodes_to_a_valid_phrase(seq in prop::collection::vec(0u32..300, 0..400)) {
        let decoded = decode(Vocabulary::remi_v1(), &seq);
        let phrase = &decoded.phrase;
        prop_assert!(phrase.bars >= 1);
        prop_assert!(phrase.is_normalized());
        prop_assert!(phrase.notes.iter().all(|n| n.end() <= phrase.length_ticks() && n.length >= 1));
    }

    #[test]
    fn grammatical_by_construction_sequences_skip_nothing(phrase in quantised_phrase()) {
        let vocab = Vocabulary::remi_v1();
        let (tokens, _) = Encoder::new(vocab).encode(&phrase).unwrap();
        let decoded = decode(vocab, &tokens);
        prop_assert_eq!(decoded.report.skipped(), 0);
    }

    #[test]
    fn quantised_phrases_round_trip_exactly(phrase in quantised_phrase()) {
        let vocab = Vocabulary::remi_v1();
        let (tokens, report) = Encoder::new(vocab).encode(&phrase).unwrap();
        prop_assert_eq!(report, Default::default());
        let back = decode(vocab, &tokens).phrase;
        prop_assert_eq!(&back.notes, &phrase.notes);
        prop_assert_eq!(back.bars, phrase.bars);
        prop_assert_eq!(back.time_signature, phrase.time_signature);
        prop_assert_eq!(back.tempo_hint, phrase.tempo_hint);
    }

    #[test]
    fn unquantised_phrases_encode_to_grammatical_tokens(
        raw in prop::collection::vec((0u32..20_000, 0u8..128, 1u32..30_000, 1u8..128), 0..80),
        bars in 1u32..6,
    ) {
        let vocab = Vocabulary::remi_v1();
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, bars);
        phrase.notes = raw.into_iter().map(|(start, pitch, length, velocity)| Note { start, length, pitch, velocity }).collect();
        phrase.normalize();
        let (tokens, _) = Encoder::new(vocab).encode(&phrase).unwrap();
        let decoded = decode(vocab, &tokens);
        prop_assert_eq!(decoded.report.skipped(), 0);
        prop_assert_eq!(decoded.phrase.bars, phrase.bars);
        prop_assert!(decoded.phrase.notes.len() <= phrase.notes.len());
    }
}

#[test]
fn unsupported_meter_is_an_encode_error() {
    let phrase = Phrase::empty(TimeSignature::new(7, 16).unwrap(), 2);
    assert!(Encoder::new(Vocabulary::remi_v1()).encode(&phrase).is_err());
}

#[test]
fn phrase_serialises_for_host_state() {
    let mut phrase = Phrase::empty(TimeSignature::new(6, 8).unwrap(), 2);
    phrase.notes.push(Note {
        start: 480,
        length: 240,
        pitch: 64,
        velocity: 90,
    });
    phrase.tempo_hint = Some(100.0);
    let json = serde_json::to_string(&phrase).unwrap();
    let back: Phrase = serde_json::from_str(&json).unwrap();
    assert_eq!(back, phrase);
}

#[test]
fn velocities_accent_strong_beats() {
    let mut phrase = Phrase::empty(TimeSignature::new(6, 8).unwrap(), 1);
    for (start, pitch) in [(0, 60), (480, 62), (1440, 64), (1920, 65)] {
        phrase.notes.push(Note {
            start,
            length: 240,
            pitch,
            velocity: 1,
        });
    }
    phrase.shape_velocities(80, 30);
    let v: Vec<u8> = phrase.notes.iter().map(|n| n.velocity).collect();
    assert_eq!(v, vec![110, 80, 95, 80]);
    phrase.shape_velocities(120, 30);
    assert!(phrase.notes.iter().all(|n| n.velocity <= 127));
}
