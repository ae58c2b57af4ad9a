//! The constrained sampler over random logits: whatever the denoiser says, the result obeys the
//! request and decodes with zero skipped tokens.

use std::sync::atomic::AtomicBool;

use proptest::prelude::*;
use smdim_engine::codec::decode;
use smdim_engine::sampler::constraints::{plan, Key, PhraseRequest, Plan};
use smdim_engine::sampler::{sample, Order, SampleError, SampleStats, SamplerSettings, SplitMix64};
use smdim_engine::{TimeSignature, Vocabulary};

/// A stand-in denoiser: logits from a hash of (tokens, position), so they depend on context.
fn random_denoiser(
    seed: u64,
    vocab_len: usize,
) -> impl FnMut(&[u32], &mut Vec<f32>) -> Result<(), String> {
    move |tokens, out| {
        let context = tokens
            .iter()
            .fold(seed, |h, &t| h.wrapping_mul(31).wrapping_add(t as u64));
        let mut rng = SplitMix64::new(context);
        out.extend((0..tokens.len() * vocab_len).map(|_| (rng.uniform() * 8.0 - 4.0) as f32));
        Ok(())
    }
}

/// Samples the whole of `plan` with the stand-in denoiser of `denoiser_seed`.
fn sample_plan(
    plan: &Plan,
    settings: &SamplerSettings,
    denoiser_seed: u64,
) -> (Vec<u32>, SampleStats) {
    let vocab = Vocabulary::remi_v1();
    let mut denoiser = random_denoiser(denoiser_seed, vocab.len());
    sample(
        vocab,
        &mut denoiser,
        &plan.tokens,
        settings,
        Some(&plan.constraints),
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap()
}

fn check_phrase(request: &PhraseRequest, settings: &SamplerSettings) {
    let vocab = Vocabulary::remi_v1();
    let plan = plan(vocab, request, 4, 4096).unwrap();
    let (tokens, stats) = sample_plan(&plan, settings, settings.seed ^ 0xABCD);
    assert_eq!(stats.relaxed_choices, 0);
    assert!(!tokens.contains(&vocab.mask_id()));
    // The end marker is the plan's, never the model's: it is still there, and dropped.
    assert_eq!(
        &tokens[tokens.len() - 2..],
        &plan.tokens[plan.tokens.len() - 2..]
    );
    let decoded = decode(vocab, plan.phrase_tokens(&tokens));
    assert_eq!(decoded.report.skipped(), 0, "{:?}", decoded.report);
    let phrase = decoded.phrase;
    assert_eq!(phrase.bars, request.bars);
    assert_eq!(phrase.time_signature, request.time_signature);
    assert!(!phrase.notes.is_empty());
    let mut per_onset = std::collections::HashMap::new();
    for note in &phrase.notes {
        assert!((request.lowest_pitch..=request.highest_pitch).contains(&note.pitch));
        if let Some(key) = request.key {
            assert!(key.contains(note.pitch), "{} not in {key}", note.pitch);
        }
        *per_onset.entry(note.start).or_insert(0u32) += 1;
    }
    assert!(per_onset
        .values()
        .all(|&n| n <= request.max_notes_per_onset));
}

#[test]
fn default_request_many_seeds() {
    for seed in 0..40 {
        let settings = SamplerSettings {
            steps: 16,
            temperature: 1.0,
            top_p: 0.95,
            seed,
            order: Order::Random,
            noise: 0.0,
            tonal_focus: 0.0,
        };
        check_phrase(&PhraseRequest::default(), &settings);
        let confidence = SamplerSettings {
            order: Order::Confidence,
            noise: 1.0,
            tonal_focus: 0.0,
            ..settings
        };
        check_phrase(&PhraseRequest::default(), &confidence);
    }
}

/// The model, not a quota, decides how many notes a bar holds: over random logits the bars of
/// one phrase differ in their note counts, and the phrase still has exactly its bars.
#[test]
fn bars_hold_different_numbers_of_notes() {
    let vocab = Vocabulary::remi_v1();
    let request = PhraseRequest::default();
    let plan = plan(vocab, &request, 4, 4096).unwrap();
    let mut differing = 0;
    for seed in 0..10 {
        let settings = SamplerSettings {
            seed,
            order: Order::Confidence,
            ..Default::default()
        };
        let (tokens, _) = sample_plan(&plan, &settings, seed);
        let phrase = decode(vocab, plan.phrase_tokens(&tokens)).phrase;
        assert_eq!(phrase.bars, request.bars);
        let bar_ticks = phrase.time_signature.bar_ticks();
        let mut per_bar = vec![0usize; phrase.bars as usize];
        for note in &phrase.notes {
            per_bar[(note.start / bar_ticks) as usize] += 1;
        }
        if per_bar.iter().min() != per_bar.iter().max() {
            differing += 1;
        }
    }
    assert!(
        differing >= 8,
        "only {differing} of 10 phrases had uneven bars"
    );
}

/// Confidence order keeps exactly the scheduled number of positions per step.
#[test]
fn confidence_order_follows_its_schedule() {
    use smdim_engine::sampler::committed_after;
    let vocab = Vocabulary::remi_v1();
    let initial = vec![vocab.mask_id(); 64];
    let steps = 8;
    let mut seen = Vec::new();
    let mut denoiser = |tokens: &[u32], out: &mut Vec<f32>| -> Result<(), String> {
        seen.push(tokens.iter().filter(|&&t| t != vocab.mask_id()).count());
        out.extend(std::iter::repeat_n(0.5f32, tokens.len() * vocab.len()));
        Ok(())
    };
    let settings = SamplerSettings {
        steps,
        order: Order::Confidence,
        ..Default::default()
    };
    let (tokens, stats) = sample(
        vocab,
        &mut denoiser,
        &initial,
        &settings,
        None,
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap();
    assert!(!tokens.contains(&vocab.mask_id()));
    let expected: Vec<usize> = (0..steps)
        .map(|s| {
            if s == 0 {
                0
            } else {
                committed_after(64, s - 1, steps)
            }
        })
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(stats.denoiser_calls, steps);
    assert_eq!(committed_after(64, steps - 1, steps), 64);
}

/// Found by the property test below (for the earlier per-bar plan): a phrase near its capacity
/// (one pitch, one note per onset) must still reach the model's multiple of 4.
#[test]
fn a_bar_near_capacity_still_fits_the_model() {
    let request = PhraseRequest {
        bars: 2,
        time_signature: TimeSignature::new(2, 2).unwrap(),
        tempo: Some(100.0),
        notes_per_quarter: 3.556911549127619,
        lowest_pitch: 21,
        highest_pitch: 21,
        key: None,
        max_notes_per_onset: 1,
        tokens_per_note: 3.0,
    };
    let one_greedy_step = SamplerSettings {
        steps: 1,
        temperature: 0.0,
        top_p: 0.5,
        seed: 0,
        order: Order::Random,
        noise: 0.0,
        tonal_focus: 0.0,
    };
    check_phrase(&request, &one_greedy_step);
    let confidence = SamplerSettings {
        steps: 16,
        temperature: 1.0,
        top_p: 0.95,
        seed: 3,
        order: Order::Confidence,
        noise: 0.0,
        tonal_focus: 0.0,
    };
    check_phrase(&request, &confidence);
    // A density above what one bar can hold: the bar is filled to capacity, not refused.
    let over_full = PhraseRequest {
        bars: 1,
        notes_per_quarter: 3.980267233106328,
        ..request
    };
    check_phrase(&over_full, &one_greedy_step);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(150))]

    #[test]
    fn constraints_are_never_violated(
        bars in 1u32..=16,
        meter in prop::sample::select(vec![(4u8, 4u8), (3, 4), (6, 8), (2, 4), (12, 8), (2, 2), (5, 4)]),
        density in 0.2f64..4.0,
        low in 21u8..80,
        span in 0u8..40,
        key in prop::option::of(prop::sample::select(vec!["C", "D-minor", "F#-dorian", "Bb-major-pentatonic", "E-minor-pentatonic"])),
        max_notes in 1u32..6,
        seed in any::<u64>(),
        steps in 1u32..24,
        temperature in prop::sample::select(vec![0.0, 0.5, 1.0, 1.5]),
        top_p in 0.5f64..=1.0,
        order in prop::sample::select(vec![Order::Random, Order::Confidence]),
        noise in prop::sample::select(vec![0.0, 1.0, 4.0]),
        tonal_focus in prop::sample::select(vec![0.0, 1.0, 4.0]),
        tokens_per_note in 2.0f64..4.0,
    ) {
        let key = key.and_then(Key::parse);
        let high = (low + span).min(108);
        // Keys need at least one pitch in range: a 12-semitone span always has one.
        let high = if key.is_some() { high.max(low + 12).min(108) } else { high };
        let request = PhraseRequest {
            bars,
            time_signature: TimeSignature::new(meter.0, meter.1).unwrap(),
            tempo: Some(100.0),
            notes_per_quarter: density,
            lowest_pitch: low,
            highest_pitch: high,
            key,
            max_notes_per_onset: max_notes,
            tokens_per_note,
        };
        let settings = SamplerSettings { steps, temperature, top_p, seed, order, noise, tonal_focus };
        check_phrase(&request, &settings);
    }
}

#[test]
fn same_seed_same_tokens_other_seed_other_tokens() {
    let vocab = Vocabulary::remi_v1();
    let plan = plan(vocab, &PhraseRequest::default(), 4, 4096).unwrap();
    let run = |seed| {
        let settings = SamplerSettings {
            seed,
            ..Default::default()
        };
        sample_plan(&plan, &settings, 1).0
    };
    assert_eq!(run(7), run(7));
    assert_ne!(run(7), run(8));
}

#[test]
fn fixed_tokens_never_change_and_cancel_stops() {
    let vocab = Vocabulary::remi_v1();
    let plan = plan(
        vocab,
        &PhraseRequest {
            bars: 2,
            ..Default::default()
        },
        4,
        4096,
    )
    .unwrap();
    let mut initial = plan.tokens.clone();
    // Infill: fix the first onset of bar one to Position_0? It is fixed already; fix a pitch too.
    let first_free = initial.iter().position(|&t| t == vocab.mask_id()).unwrap();
    initial[first_free] = vocab.id_of("Pitch_60").unwrap();
    let mut denoiser = random_denoiser(3, vocab.len());
    let (tokens, stats) = sample(
        vocab,
        &mut denoiser,
        &initial,
        &SamplerSettings::default(),
        Some(&plan.constraints),
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(stats.relaxed_choices, 0);
    for (i, (&a, &b)) in initial.iter().zip(&tokens).enumerate() {
        if a != vocab.mask_id() {
            assert_eq!(a, b, "fixed slot {i} changed");
        }
    }
    assert_eq!(decode(vocab, &tokens).report.skipped(), 0);

    // Cancel after the third step: the sampler stops within one step.
    let cancel = AtomicBool::new(false);
    let mut steps_seen = 0;
    let result = sample(
        vocab,
        &mut denoiser,
        &plan.tokens,
        &SamplerSettings::default(),
        Some(&plan.constraints),
        &cancel,
        |done, _| {
            steps_seen = done;
            if done == 3 {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
        },
    );
    assert!(matches!(result, Err(SampleError::Cancelled)));
    assert_eq!(steps_seen, 3);
}

#[test]
fn unconstrained_sampling_is_the_plain_reference() {
    // Without constraints only MASK/BOS/EOS/PAD are banned: the random denoiser then produces
    // ungrammatical sequences, which is what the constraints exist for.
    let vocab = Vocabulary::remi_v1();
    let initial = vec![vocab.mask_id(); 128];
    let mut denoiser = random_denoiser(5, vocab.len());
    let (tokens, _) = sample(
        vocab,
        &mut denoiser,
        &initial,
        &SamplerSettings::default(),
        None,
        &AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap();
    for banned in ["MASK_None", "BOS_None", "EOS_None", "PAD_None"] {
        assert!(!tokens.contains(&vocab.id_of(banned).unwrap()));
    }
    assert!(decode(vocab, &tokens).report.skipped() > 0);
}

/// A budget under one note (0.2 notes a quarter over two bars of 2/4) still gets a note: found
/// by `constraints_are_never_violated`, where the whole run was filled with bar lines.
#[test]
fn budget_under_one_note_still_gets_one() {
    for (meter, bars, density) in [
        ((2, 4), 2, 0.2),
        ((2, 4), 1, 0.2),
        ((2, 2), 1, 0.2),
        ((3, 4), 1, 0.25),
    ] {
        let request = PhraseRequest {
            bars,
            time_signature: TimeSignature::new(meter.0, meter.1).unwrap(),
            tempo: Some(100.0),
            notes_per_quarter: density,
            lowest_pitch: 21,
            highest_pitch: 21,
            key: None,
            max_notes_per_onset: 1,
            tokens_per_note: 2.0,
        };
        for seed in 0..8 {
            for order in [Order::Random, Order::Confidence] {
                for steps in [1, 2, 16] {
                    let settings = SamplerSettings {
                        steps,
                        temperature: 0.0,
                        top_p: 0.5,
                        seed,
                        order,
                        noise: 0.0,
                        tonal_focus: 0.0,
                    };
                    check_phrase(&request, &settings);
                }
            }
        }
    }
}

/// Share of a phrase's notes in its seven most used pitch classes.
fn top7_share(notes: &[smdim_engine::Note]) -> f64 {
    let mut counts = [0usize; 12];
    for n in notes {
        counts[(n.pitch % 12) as usize] += 1;
    }
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts[..7].iter().sum::<usize>() as f64 / notes.len().max(1) as f64
}

#[test]
fn tonal_focus_gathers_a_long_phrase_in_one_key() {
    // A model with no idea of key (hashed logits): with the focus its 32-bar phrases settle in
    // the key their first notes suggest (seven pitch classes), and they still obey the request.
    let vocab = Vocabulary::remi_v1();
    let request = PhraseRequest {
        bars: 32,
        lowest_pitch: 48,
        highest_pitch: 84,
        ..Default::default()
    };
    let plan = plan(vocab, &request, 4, 4096).unwrap();
    let mut shares = [0.0f64; 2];
    for (k, tonal_focus) in [0.0, 3.0].into_iter().enumerate() {
        for seed in 0..6 {
            let settings = SamplerSettings {
                steps: 16,
                seed,
                tonal_focus,
                ..Default::default()
            };
            let (tokens, stats) = sample_plan(&plan, &settings, seed);
            assert_eq!(stats.relaxed_choices, 0);
            let decoded = decode(vocab, plan.phrase_tokens(&tokens));
            assert_eq!(decoded.report.skipped(), 0);
            assert_eq!(decoded.phrase.bars, 32);
            shares[k] += top7_share(&decoded.phrase.notes) / 6.0;
        }
    }
    assert!(shares[1] > shares[0] + 0.1, "top-7 share {shares:?}");
}
