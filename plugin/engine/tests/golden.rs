//! Golden vectors shared with model-export: miditok encoded these tunes and decoded the tokens
//! to the listed notes; our codec must agree in both directions.

use std::path::PathBuf;

use serde::Deserialize;
use smdim_engine::codec::{decode, parse_token_text, Encoder};
use smdim_engine::{TimeSignature, Vocabulary};

#[derive(Deserialize)]
struct GoldenNote {
    start: u32,
    length: u32,
    pitch: u8,
}

#[derive(Deserialize)]
struct Golden {
    name: String,
    tokens: Vec<String>,
    time_signature: [u8; 2],
    tempo: Option<f32>,
    bars: u32,
    notes: Vec<GoldenNote>,
}

fn goldens() -> Vec<Golden> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../vocab/golden");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("vocab/golden exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "expected the golden vectors in {dir:?}");
    files
        .iter()
        .map(|f| serde_json::from_str(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

fn ids(vocab: &Vocabulary, golden: &Golden) -> Vec<u32> {
    golden
        .tokens
        .iter()
        .map(|t| {
            vocab
                .id_of(t)
                .unwrap_or_else(|| panic!("{t} not in vocabulary"))
        })
        .collect()
}

#[test]
fn decoder_matches_miditok_notes() {
    let vocab = Vocabulary::remi_v1();
    for golden in goldens() {
        let decoded = decode(vocab, &ids(vocab, &golden));
        assert_eq!(decoded.report.skipped(), 0, "{}", golden.name);
        let phrase = decoded.phrase;
        let [n, d] = golden.time_signature;
        assert_eq!(
            phrase.time_signature,
            TimeSignature::new(n, d).unwrap(),
            "{}",
            golden.name
        );
        assert_eq!(phrase.bars, golden.bars, "{}", golden.name);
        assert_eq!(phrase.tempo_hint, golden.tempo, "{}", golden.name);
        let got: Vec<(u32, u32, u8)> = phrase
            .notes
            .iter()
            .map(|n| (n.start, n.length, n.pitch))
            .collect();
        let mut want: Vec<(u32, u32, u8)> = golden
            .notes
            .iter()
            .map(|n| (n.start, n.length, n.pitch))
            .collect();
        want.sort_by_key(|&(s, _, p)| (s, p));
        assert_eq!(got, want, "{}", golden.name);
    }
}

#[test]
fn encoder_reproduces_miditok_tokens() {
    let vocab = Vocabulary::remi_v1();
    let encoder = Encoder::new(vocab);
    for golden in goldens() {
        let expected = ids(vocab, &golden);
        let phrase = decode(vocab, &expected).phrase;
        let (encoded, report) = encoder.encode(&phrase).unwrap();
        assert_eq!(report, Default::default(), "{}", golden.name);
        let text = |ids: &[u32]| {
            ids.iter()
                .map(|&i| vocab.text(i).unwrap())
                .collect::<Vec<_>>()
                .join(" ")
        };
        assert_eq!(text(&encoded), text(&expected), "{}", golden.name);
    }
}

#[test]
fn token_text_parses_names_and_ids() {
    let vocab = Vocabulary::remi_v1();
    let bar = vocab.bar_id();
    let parsed = parse_token_text(vocab, &format!("Bar_None, {bar} [\"Pitch_60\"]")).unwrap();
    assert_eq!(parsed, vec![bar, bar, vocab.id_of("Pitch_60").unwrap()]);
    assert!(parse_token_text(vocab, "Bar_None Nonsense_1").is_err());
}
