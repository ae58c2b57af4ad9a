//! End to end with the tiny test model (plugin/inference/tests/data, exported by
//! model-export in seconds) and the ONNX Runtime library from `cargo xtask fetch-ort`.

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use smdim_engine::codec::decode;
use smdim_engine::midi_file::{read_smf, write_smf, WriteOptions};
use smdim_engine::Vocabulary;
use smdim_inference::{
    generate, Denoiser, GenerationSettings, InferenceError, LoadOptions, ModelSource, Provider,
    ProviderChoice, Style,
};

fn data(file: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(file)
}

/// The tiny model with the `style` input.
fn tiny() -> ModelSource {
    ModelSource::from_onnx_path(data("tiny.onnx"))
}

/// The older kind: no `style` input, no `styles` in its card.
fn tiny_nostyle() -> ModelSource {
    ModelSource::from_onnx_path(data("tiny-nostyle.onnx"))
}

fn load(native_scan: bool) -> Denoiser {
    let options = LoadOptions {
        native_scan,
        threads: 1,
        ..Default::default()
    };
    Denoiser::load(&tiny(), &options)
        .unwrap_or_else(|e| panic!("{e} (run `cargo xtask fetch-ort` first)"))
}

/// Fits the tiny model's 64-token limit.
fn small_settings(seed: u64) -> GenerationSettings {
    GenerationSettings {
        bars: 2,
        density: 0.5,
        seed,
        steps: Some(12),
        ..Default::default()
    }
}

#[test]
fn generates_valid_midi_deterministically() {
    let mut denoiser = load(true);
    assert_eq!(denoiser.provider, Provider::Cpu);
    let never = AtomicBool::new(false);
    let mut progress = Vec::new();
    let a = generate(&mut denoiser, &small_settings(7), &never, |done, total| {
        progress.push((done, total))
    })
    .unwrap();
    assert_eq!(progress.len(), 12);
    assert_eq!(progress.last(), Some(&(12, 12)));
    let b = generate(&mut denoiser, &small_settings(7), &never, |_, _| {}).unwrap();
    let c = generate(&mut denoiser, &small_settings(8), &never, |_, _| {}).unwrap();
    assert_eq!(a.tokens, b.tokens, "same seed, same phrase");
    assert_eq!(a.phrase, b.phrase);
    assert_ne!(a.tokens, c.tokens, "another seed, another phrase");

    let vocab = Vocabulary::remi_v1();
    assert_eq!(decode(vocab, &a.tokens).report.skipped(), 0);
    assert_eq!(a.phrase.bars, 2);
    assert!(!a.phrase.notes.is_empty());
    assert!(a.phrase.notes.iter().all(|n| (48..=84).contains(&n.pitch)));
    let bytes = write_smf(&a.phrase, &WriteOptions::default()).unwrap();
    assert_eq!(
        read_smf(&bytes).unwrap().phrase.notes.len(),
        a.phrase.notes.len()
    );
}

#[test]
fn native_scan_matches_the_onnx_fallback() {
    let mut native = load(true);
    let mut fallback = load(false);
    let vocab = Vocabulary::remi_v1();
    let tokens: Vec<u32> = (0..64u32)
        .map(|i| (i * 37 + 5) % vocab.len() as u32)
        .collect();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    native.logits(&tokens, Style::Melody, &mut a).unwrap();
    fallback.logits(&tokens, Style::Melody, &mut b).unwrap();
    let max_err = a
        .iter()
        .zip(&b)
        .map(|(x, y)| (x - y).abs())
        .fold(0f32, f32::max);
    assert!(max_err < 1e-4, "max abs logit difference {max_err}");
    let never = AtomicBool::new(false);
    for seed in 0..3 {
        let x = generate(&mut native, &small_settings(seed), &never, |_, _| {}).unwrap();
        let y = generate(&mut fallback, &small_settings(seed), &never, |_, _| {}).unwrap();
        assert_eq!(x.tokens, y.tokens);
    }
}

#[test]
fn bad_lengths_and_requests_are_errors() {
    let mut denoiser = load(true);
    let mut out = Vec::new();
    assert!(
        denoiser.logits(&[3; 6], Style::Any, &mut out).is_err(),
        "not a multiple of 4"
    );
    assert!(
        denoiser.logits(&[3; 68], Style::Any, &mut out).is_err(),
        "longer than the model takes"
    );
    assert!(denoiser.logits(&[], Style::Any, &mut out).is_err());
    let never = AtomicBool::new(false);
    let too_long = GenerationSettings {
        bars: 16,
        density: 4.0,
        ..Default::default()
    };
    assert!(matches!(
        generate(&mut denoiser, &too_long, &never, |_, _| {}),
        Err(InferenceError::Plan(_))
    ));
    // An unknown key cannot reach `generate`: settings hold a parsed `Key`, and its parse fails.
    assert!("Q-minor".parse::<smdim_engine::Key>().is_err());
}

#[test]
fn corrupt_or_mismatched_models_are_errors() {
    let dir = std::env::temp_dir().join(format!("smdim-corrupt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let card = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.card.json"),
    )
    .unwrap();
    let onnx =
        std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.onnx"))
            .unwrap();
    let options = LoadOptions {
        threads: 1,
        ..Default::default()
    };

    let garbage = ModelSource::Memory {
        onnx: Arc::from(&b"not an onnx file at all"[..]),
        card_json: Arc::from(card.as_str()),
    };
    assert!(matches!(
        Denoiser::load(&garbage, &options),
        Err(InferenceError::Session(_))
    ));
    let truncated = ModelSource::Memory {
        onnx: Arc::from(&onnx[..onnx.len() / 2]),
        card_json: Arc::from(card.as_str()),
    };
    assert!(Denoiser::load(&truncated, &options).is_err());
    let wrong_vocab = card.replace("531cf610", "00000000");
    let mismatched = ModelSource::Memory {
        onnx: Arc::from(onnx.as_slice()),
        card_json: Arc::from(wrong_vocab.as_str()),
    };
    assert!(matches!(
        Denoiser::load(&mismatched, &options),
        Err(InferenceError::VocabularyMismatch(_))
    ));
    let broken_card = ModelSource::Memory {
        onnx: Arc::from(onnx.as_slice()),
        card_json: Arc::from("{"),
    };
    assert!(matches!(
        Denoiser::load(&broken_card, &options),
        Err(InferenceError::Card(_))
    ));
    let missing = ModelSource::from_onnx_path(dir.join("nope.onnx"));
    assert!(matches!(
        Denoiser::load(&missing, &options),
        Err(InferenceError::ModelFile { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn unavailable_gpu_providers_fall_back_to_cpu_with_a_reason() {
    // The CPU build of ONNX Runtime has neither CUDA nor TensorRT.
    let options = LoadOptions {
        provider: ProviderChoice::Auto,
        threads: 1,
        ..Default::default()
    };
    let denoiser = Denoiser::load(&tiny(), &options).unwrap();
    assert_eq!(denoiser.provider, Provider::Cpu);
    let skipped: Vec<Provider> = denoiser.fallbacks.iter().map(|(p, _)| *p).collect();
    assert_eq!(skipped, vec![Provider::TensorRt, Provider::Cuda]);
    assert!(denoiser
        .fallbacks
        .iter()
        .all(|(_, why)| !why.to_string().is_empty()));
}

#[test]
fn generation_is_cancelled_between_steps() {
    let mut denoiser = load(true);
    let never = AtomicBool::new(false);
    let phrase = generate(&mut denoiser, &small_settings(3), &never, |_, _| {}).unwrap();
    assert_eq!(phrase.phrase.bars, 2);

    // Cancelled after the third step (the flag is what the plugin's editor sets from its own
    // thread): no fourth step runs.
    let cancel = AtomicBool::new(false);
    let mut steps_done = 0;
    let settings = GenerationSettings {
        steps: Some(100),
        ..small_settings(4)
    };
    let outcome = generate(&mut denoiser, &settings, &cancel, |done, _| {
        steps_done = done;
        if done == 3 {
            cancel.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    });
    let error = outcome.expect_err("cancelled");
    assert!(matches!(error, InferenceError::Cancelled), "{error}");
    assert_eq!(error.to_string(), "generation cancelled");
    assert_eq!(steps_done, 3, "checked before every step");
}

#[test]
fn the_style_changes_what_the_styled_model_writes() {
    let mut denoiser = load(true);
    assert!(denoiser.is_styled());
    assert_eq!(denoiser.card.styles, ["any", "melody", "chorale"]);
    // The logits first: the style input must reach the graph (the same tokens, another style,
    // other logits), whatever the barely-trained fixture then samples from them.
    let tokens = vec![denoiser.card.vocab.mask_id; 32];
    let mut by_style = Vec::new();
    for style in Style::ALL {
        let mut out = Vec::new();
        denoiser.logits(&tokens, style, &mut out).unwrap();
        by_style.push(out);
    }
    for (i, j) in [(0, 1), (0, 2), (1, 2)] {
        let diff = by_style[i]
            .iter()
            .zip(&by_style[j])
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            diff > 1e-4,
            "{} and {} give the same logits",
            Style::ALL[i],
            Style::ALL[j]
        );
    }

    let never = AtomicBool::new(false);
    let styled = |style| GenerationSettings {
        style,
        ..small_settings(11)
    };
    let melody = generate(&mut denoiser, &styled(Style::Melody), &never, |_, _| {}).unwrap();
    let chorale = generate(&mut denoiser, &styled(Style::Chorale), &never, |_, _| {}).unwrap();
    let again = generate(&mut denoiser, &styled(Style::Melody), &never, |_, _| {}).unwrap();
    assert_eq!(
        melody.tokens, again.tokens,
        "same style and seed, same phrase"
    );
    assert_ne!(melody.tokens, chorale.tokens, "same seed, another style");
    assert_eq!(melody.settings.style, Style::Melody);
    assert_eq!(chorale.settings.style, Style::Chorale);
}

#[test]
fn a_model_without_styles_runs_any_and_refuses_the_others() {
    let options = LoadOptions {
        threads: 1,
        ..Default::default()
    };
    let mut denoiser = Denoiser::load(&tiny_nostyle(), &options).unwrap();
    assert!(!denoiser.is_styled());
    assert!(denoiser.card.styles.is_empty());
    let never = AtomicBool::new(false);
    let any = GenerationSettings {
        style: Style::Any,
        ..small_settings(3)
    };
    let generated = generate(&mut denoiser, &any, &never, |_, _| {}).unwrap();
    assert_eq!(generated.phrase.bars, 2);
    assert_eq!(generated.settings.style, Style::Any);
    let mut out = Vec::new();
    denoiser.logits(&[3; 8], Style::Any, &mut out).unwrap();

    for style in [Style::Melody, Style::Chorale] {
        let mut calls = 0;
        let asked = GenerationSettings {
            style,
            ..small_settings(3)
        };
        let err = generate(&mut denoiser, &asked, &never, |_, _| calls += 1).unwrap_err();
        assert!(
            matches!(err, InferenceError::NoStyles { requested } if requested == style),
            "{err:?}"
        );
        assert_eq!(calls, 0, "refused before sampling");
        let message = err.to_string();
        assert!(message.contains("this model has no styles"), "{message}");
        assert!(message.contains("choose Any"), "{message}");
        assert!(matches!(
            denoiser.logits(&[3; 8], style, &mut out),
            Err(InferenceError::NoStyles { .. })
        ));
    }
}

#[test]
fn a_card_that_disagrees_with_its_graph_is_a_load_error() {
    let options = LoadOptions {
        threads: 1,
        ..Default::default()
    };
    let read = |file: &str| std::fs::read(data(file)).unwrap();
    let card = |file: &str| String::from_utf8(read(file)).unwrap();
    let pairs = [
        // Styles in the card, no style input in the graph.
        (
            "tiny-nostyle.onnx",
            card("tiny.card.json"),
            "no style input",
        ),
        // A style input in the graph, no styles in the card.
        (
            "tiny.onnx",
            card("tiny-nostyle.card.json"),
            "lists no styles",
        ),
    ];
    for (onnx, card_json, expected) in pairs {
        let source = ModelSource::Memory {
            onnx: Arc::from(read(onnx).as_slice()),
            card_json: Arc::from(card_json.as_str()),
        };
        match Denoiser::load(&source, &options) {
            Err(InferenceError::StyleMismatch(why)) => assert!(why.contains(expected), "{why}"),
            Err(other) => panic!("{onnx}: {other}"),
            Ok(_) => panic!("{onnx} loaded with a card that disagrees with it"),
        }
    }
}

#[test]
fn a_card_with_fewer_styles_refuses_the_missing_one() {
    let options = LoadOptions {
        threads: 1,
        ..Default::default()
    };
    let mut card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(data("tiny.card.json")).unwrap()).unwrap();
    card["styles"] = serde_json::json!(["any", "melody"]);
    let two = card.to_string();
    let source = ModelSource::Memory {
        onnx: Arc::from(std::fs::read(data("tiny.onnx")).unwrap().as_slice()),
        card_json: Arc::from(two.as_str()),
    };
    let mut denoiser = Denoiser::load(&source, &options).unwrap();
    let never = AtomicBool::new(false);
    let chorale = GenerationSettings {
        style: Style::Chorale,
        ..small_settings(2)
    };
    let err = generate(&mut denoiser, &chorale, &never, |_, _| {}).unwrap_err();
    assert!(
        matches!(&err, InferenceError::StyleMissing { requested: Style::Chorale, available } if available == &["any", "melody"]),
        "{err:?}"
    );
    assert!(err.to_string().contains("no Chorale style"), "{err}");
    let melody = GenerationSettings {
        style: Style::Melody,
        ..small_settings(2)
    };
    generate(&mut denoiser, &melody, &never, |_, _| {}).unwrap();
}

#[test]
fn a_style_the_model_lacks_is_an_error_and_any_still_works() {
    // What the plugin's editor shows: the error, and no phrase.
    let options = LoadOptions {
        threads: 1,
        ..Default::default()
    };
    let mut denoiser = Denoiser::load(&tiny_nostyle(), &options).unwrap();
    let never = AtomicBool::new(false);
    let melody = GenerationSettings {
        style: Style::Melody,
        ..small_settings(1)
    };
    let error = generate(&mut denoiser, &melody, &never, |_, _| {})
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("this model has no styles: choose Any"),
        "{error}"
    );
    let any = GenerationSettings {
        style: Style::Any,
        ..small_settings(1)
    };
    assert!(generate(&mut denoiser, &any, &never, |_, _| {}).is_ok());
}

#[test]
fn batched_logits_equal_one_call_per_sequence() {
    let mut denoiser = load(true);
    let vocab = Vocabulary::remi_v1();
    let length = 32;
    let sequences: Vec<Vec<smdim_engine::vocab::TokenId>> = (0..3)
        .map(|k| {
            (0..length)
                .map(|i| {
                    if (i + k) % 3 == 0 {
                        vocab.mask_id()
                    } else {
                        ((i * 7 + k * 13) % 200 + 4) as smdim_engine::vocab::TokenId
                    }
                })
                .collect()
        })
        .collect();
    let mut single = Vec::new();
    let mut one = Vec::new();
    for s in &sequences {
        denoiser.logits(s, Style::Melody, &mut one).unwrap();
        single.extend_from_slice(&one);
    }
    let flat: Vec<smdim_engine::vocab::TokenId> = sequences.concat();
    let mut batched = Vec::new();
    denoiser
        .logits_batch(&flat, 3, Style::Melody, &mut batched)
        .unwrap();
    assert_eq!(batched.len(), single.len());
    let worst = batched
        .iter()
        .zip(&single)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst < 1e-4, "batched logits differ by {worst}");
    // A batch that does not divide the tokens, or an empty one, is an error, not a panic.
    assert!(denoiser
        .logits_batch(&flat, 5, Style::Melody, &mut batched)
        .is_err());
    assert!(denoiser
        .logits_batch(&flat, 0, Style::Melody, &mut batched)
        .is_err());
}

#[test]
fn variations_in_lockstep_are_the_single_generations_of_their_seeds() {
    let mut denoiser = load(true);
    let never = AtomicBool::new(false);
    let seeds = [3u64, 11, 12, 40];
    let mut progress = Vec::new();
    let variations = smdim_inference::generate_variations(
        &mut denoiser,
        &small_settings(0),
        &seeds,
        &never,
        |done, total| progress.push((done, total)),
    )
    .unwrap();
    assert_eq!(variations.len(), seeds.len());
    for (v, &seed) in variations.iter().zip(&seeds) {
        let one = generate(&mut denoiser, &small_settings(seed), &never, |_, _| {}).unwrap();
        assert_eq!(v.settings.seed, seed);
        assert_eq!(v.tokens, one.tokens, "seed {seed}");
        assert_eq!(v.phrase, one.phrase, "seed {seed}");
    }
    assert_ne!(variations[0].tokens, variations[1].tokens);
    // One round per step, not one per variation and step.
    assert!(!progress.is_empty() && progress.len() <= 12, "{progress:?}");
    assert_eq!(progress.last().unwrap().1, 12);
    assert!(smdim_inference::generate_variations(
        &mut denoiser,
        &small_settings(0),
        &[],
        &never,
        |_, _| {}
    )
    .unwrap()
    .is_empty());
}

#[test]
fn variations_are_cancelled_refused_or_fail_cleanly() {
    let mut denoiser = load(true);
    let cancelled = AtomicBool::new(true);
    let result = smdim_inference::generate_variations(
        &mut denoiser,
        &small_settings(1),
        &[1, 2, 3],
        &cancelled,
        |_, _| {},
    );
    assert!(
        matches!(result, Err(InferenceError::Cancelled)),
        "{result:?}"
    );
    // Too long for the tiny model: refused before any sampler starts.
    let never = AtomicBool::new(false);
    let long = GenerationSettings {
        bars: 32,
        ..small_settings(1)
    };
    let result =
        smdim_inference::generate_variations(&mut denoiser, &long, &[1, 2], &never, |_, _| {});
    assert!(matches!(result, Err(InferenceError::Plan(_))), "{result:?}");
    // A model whose run fails: every sampler gets the error, the call returns it, nothing hangs.
    struct Failing(smdim_inference::ModelCard);
    impl smdim_inference::Model for Failing {
        fn card(&self) -> &smdim_inference::ModelCard {
            &self.0
        }
        fn provider(&self) -> Provider {
            Provider::Cpu
        }
        fn check_style(&self, _: Style) -> Result<(), InferenceError> {
            Ok(())
        }
        fn logits(
            &mut self,
            _: &[smdim_engine::vocab::TokenId],
            _: Style,
            _: &mut Vec<f32>,
        ) -> Result<(), InferenceError> {
            Err(InferenceError::Run("the device fell off".into()))
        }
    }
    let mut failing = Failing(denoiser.card.clone());
    let result = smdim_inference::generate_variations(
        &mut failing,
        &small_settings(1),
        &[1, 2, 3],
        &never,
        |_, _| {},
    );
    match result {
        Err(InferenceError::Run(message)) => assert!(message.contains("fell off"), "{message}"),
        other => panic!("{other:?}"),
    }
}

/// Variations share their first step: its input (the plan, all MASK) is the same for every
/// seed, so the batching loop runs it once; the results are still each seed's own phrase.
#[test]
fn variations_run_their_shared_first_step_once() {
    struct Counting {
        inner: Denoiser,
        /// Sequences in each call.
        batches: Vec<usize>,
    }
    impl smdim_inference::Model for Counting {
        fn card(&self) -> &smdim_inference::ModelCard {
            &self.inner.card
        }
        fn provider(&self) -> Provider {
            Provider::Cpu
        }
        fn check_style(&self, style: Style) -> Result<(), InferenceError> {
            self.inner.check_style(style)
        }
        fn logits(
            &mut self,
            tokens: &[smdim_engine::vocab::TokenId],
            style: Style,
            out: &mut Vec<f32>,
        ) -> Result<(), InferenceError> {
            self.logits_batch(tokens, 1, style, out)
        }
        fn logits_batch(
            &mut self,
            tokens: &[smdim_engine::vocab::TokenId],
            batch: usize,
            style: Style,
            out: &mut Vec<f32>,
        ) -> Result<(), InferenceError> {
            self.batches.push(batch);
            self.inner.logits_batch(tokens, batch, style, out)
        }
    }
    let mut counting = Counting {
        inner: load(true),
        batches: Vec::new(),
    };
    let never = AtomicBool::new(false);
    let seeds = [3u64, 11, 12, 40];
    let variations = smdim_inference::generate_variations(
        &mut counting,
        &small_settings(0),
        &seeds,
        &never,
        |_, _| {},
    )
    .unwrap();
    let batches = &counting.batches;
    assert_eq!(
        batches[0], 1,
        "the shared first step runs once: {batches:?}"
    );
    assert!(batches[1..].contains(&seeds.len()), "{batches:?}");
    for (v, &seed) in variations.iter().zip(&seeds) {
        let one = generate(
            &mut counting.inner,
            &small_settings(seed),
            &never,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(v.tokens, one.tokens, "seed {seed}");
    }
}

/// The shipped int8 twin quantises activations with one scale per call: a batched call would
/// tie each sequence's logits to the others', so its batches run one sequence at a time and
/// give exactly the single calls' logits.
#[test]
fn the_int8_twin_answers_a_batch_exactly_as_single_calls() {
    let twin =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/smdim-default-int8.onnx");
    let mut denoiser = Denoiser::load(
        &ModelSource::from_onnx_path(&twin),
        &LoadOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!denoiser.card.batch_is_exact());
    let vocab = Vocabulary::remi_v1();
    let a: Vec<smdim_engine::vocab::TokenId> = (0..64)
        .map(|i| {
            if i % 2 == 0 {
                vocab.mask_id()
            } else {
                (i % 90 + 20) as _
            }
        })
        .collect();
    let b: Vec<smdim_engine::vocab::TokenId> = (0..64)
        .map(|i| {
            if i % 5 == 0 {
                vocab.mask_id()
            } else {
                (i % 40 + 100) as _
            }
        })
        .collect();
    let (mut one, mut single) = (Vec::new(), Vec::new());
    for s in [&a, &b] {
        denoiser.logits(s, Style::Chorale, &mut one).unwrap();
        single.extend_from_slice(&one);
    }
    let mut batched = Vec::new();
    denoiser
        .logits_batch(
            &[a.clone(), b.clone()].concat(),
            2,
            Style::Chorale,
            &mut batched,
        )
        .unwrap();
    assert_eq!(batched, single);
}
