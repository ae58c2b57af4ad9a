use smdim_engine::vocab::{Token, POSITIONS_PER_BEAT};
use smdim_engine::{TimeSignature, Vocabulary};

#[test]
fn embedded_vocabulary_has_every_remi_kind() {
    let vocab = Vocabulary::remi_v1();
    assert_eq!(vocab.len(), 271);
    let count = |f: fn(&Token) -> bool| vocab.tokens().iter().filter(|t| f(t)).count();
    assert_eq!(count(|t| matches!(t, Token::Pitch(_))), 88);
    assert_eq!(
        count(|t| matches!(t, Token::Position(_))),
        12 * POSITIONS_PER_BEAT as usize
    );
    assert_eq!(count(|t| matches!(t, Token::Duration { .. })), 64);
    assert_eq!(count(|t| matches!(t, Token::Tempo(_))), 8);
    assert_eq!(count(|t| matches!(t, Token::TimeSig(_))), 10);
    assert_eq!(vocab.token(vocab.mask_id()), Some(Token::Mask));
    assert_eq!(vocab.token(vocab.pad_id()), Some(Token::Pad));
    assert_eq!(vocab.token(vocab.bar_id()), Some(Token::Bar));
    assert_eq!(vocab.token(vocab.len() as u32), None);
    for (id, text) in (0..vocab.len() as u32).map(|i| (i, vocab.text(i).unwrap())) {
        assert_eq!(vocab.id_of(text), Some(id));
    }
}

#[test]
fn token_parser_reads_miditok_spelling() {
    assert_eq!(
        Token::parse("TimeSig_6/8").unwrap(),
        Token::TimeSig(TimeSignature::new(6, 8).unwrap())
    );
    assert_eq!(
        Token::parse("Duration_11.3.4").unwrap(),
        Token::Duration {
            whole: 11,
            part: 3,
            resolution: 4
        }
    );
    assert_eq!(Token::parse("Tempo_94.29").unwrap(), Token::Tempo(94.29));
    for bad in [
        "",
        "Bar",
        "Pitch_200",
        "Pitch_-1",
        "Duration_1.8.8",
        "Duration_0.0.8",
        "Duration_1.2",
        "TimeSig_7/7",
        "TimeSig_0/4",
        "Tempo_NaN",
        "Tempo_-3",
        "Velocity_100",
        "Position_x",
    ] {
        assert!(Token::parse(bad).is_err(), "{bad} should be rejected");
    }
}

#[test]
fn broken_vocabulary_files_are_errors() {
    assert!(Vocabulary::from_json("{").is_err());
    assert!(Vocabulary::from_json(r#"{"name":"x","tokens":["Bar_None","Bar_None"]}"#).is_err());
    assert!(Vocabulary::from_json(r#"{"name":"x","tokens":["PAD_None","Bar_None"]}"#).is_err());
    assert!(Vocabulary::from_json(r#"{"name":"x","tokens":["Foo_1"]}"#).is_err());
    assert!(
        Vocabulary::from_json(r#"{"name":"x","tokens":["PAD_None","MASK_None","Bar_None"]}"#)
            .is_ok()
    );
}
