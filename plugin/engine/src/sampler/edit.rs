//! Editing the musician's own phrase with the diffusion model: the source's tokens stay fixed
//! in the skeleton and only the slots to change are masked, so the sampler denoises around them.
//!
//! - [`Edit::Continue`]: bars `1..=keep_bars` note for note, new bars after them up to the
//!   request's bar count.
//! - [`Edit::Infill`]: bars `from..=to` regenerated, every other bar kept note for note.
//! - [`Edit::Vary`]: a share of the source's notes (chosen with the seed) re-masked; 0 gives the
//!   source back, 1 a new phrase on the source's bar layout. With `keep_rhythm` only the pitches
//!   of the chosen notes are masked: new pitches on the source's onsets and durations (two
//!   notes of one onset never get the same pitch; a new pitch that repeats one still sounding
//!   from an earlier onset restarts it, as any repeated note does, shortening the earlier one).
//!
//! The source is quantised by the [`Encoder`] first (its [`EncodeReport`] says what moved). Kept
//! bars keep their own `Bar TimeSig` lines exactly where they are; the bar lines inside a
//! regenerated stretch are the model's to place, within a window around an even spread. A
//! regenerated bar gets the kept bars' mean token count (the idea's own density), or the
//! request's density when nothing is kept. Masked slots after the end marker pad the sequence
//! to the model's stride; they are not part of the phrase. The constraint automaton checks the
//! whole skeleton before sampling, so a source that cannot be kept (a chord larger than the
//! automaton counts) is an error naming the limit, never a half-kept phrase.

use crate::codec::{EncodeReport, Encoder};
use crate::error::EncodeError;
use crate::phrase::Phrase;
use crate::vocab::{Token, TokenId, Vocabulary};

use super::constraints::MAX_NOTES_PER_ONSET_LIMIT;
use super::constraints::{base, window_for, Base, PhraseRequest, Plan, PlanError};
use super::SplitMix64;

/// What to do with the source.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Edit {
    Continue {
        keep_bars: u32,
    },
    /// Bars `from..=to`, 1-based.
    Infill {
        from: u32,
        to: u32,
    },
    /// `strength`: the share of notes re-masked, 0..=1.
    Vary {
        strength: f64,
        keep_rhythm: bool,
    },
}

impl Edit {
    /// Whether bar `b` (0-based) of the source is kept (Vary keeps every bar's frame and
    /// re-masks notes inside).
    pub fn keeps_bar(&self, b: u32) -> bool {
        match *self {
            Edit::Continue { keep_bars } => b < keep_bars,
            Edit::Infill { from, to } => !(from.saturating_sub(1)..to).contains(&b),
            Edit::Vary { .. } => true,
        }
    }

    /// The source's notes this edit keeps as they are (all of them for Vary).
    pub fn kept_notes(&self, source: &Phrase) -> Vec<crate::phrase::Note> {
        let bar = source.time_signature.bar_ticks().max(1);
        source
            .notes
            .iter()
            .filter(|n| self.keeps_bar(n.start / bar))
            .copied()
            .collect()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error("the source cannot be read into the model's tokens: {0}")]
    Encode(#[from] EncodeError),
    #[error("keep {keep} bars: the source has {source_bars} bar(s)")]
    KeepTooMany { keep: u32, source_bars: u32 },
    #[error(
        "keep {keep} bars of {bars}: nothing left to generate (ask for more bars than you keep)"
    )]
    NothingToGenerate { keep: u32, bars: u32 },
    #[error("keep at least one bar")]
    KeepNone,
    #[error("bars {from}-{to}: the source has bars 1-{source_bars}")]
    BarRange {
        from: u32,
        to: u32,
        source_bars: u32,
    },
    #[error("strength {0}: use 0 (the source back) to 1 (every note new)")]
    Strength(f64),
    #[error("the source has {notes} notes at one onset; the model takes at most {max}")]
    ChordTooLarge { notes: usize, max: u32 },
    #[error("the source needs {needed} tokens; the model takes at most {max}: shorten it")]
    TooLong { needed: usize, max: usize },
    #[error(
        "the kept notes and these settings admit no phrase (try other bars or a wider pitch range)"
    )]
    NoLayout,
}

/// The plan of an edit and what quantising the source changed.
#[derive(Debug, Clone)]
pub struct EditPlan {
    pub plan: Plan,
    pub report: EncodeReport,
}

/// A candidate skeleton: tokens through the end marker, each bar line's (expected offset,
/// window), and where the run ends.
struct Layout {
    tokens: Vec<TokenId>,
    lines: Vec<(f64, usize)>,
    run_end: usize,
}

/// One bar of the skeleton: the source's content, or regenerated.
enum BarSlot {
    Kept(Vec<TokenId>),
    Free,
}

/// Lays out the skeleton of `edit` on `source`. `request` carries the output's bars (for
/// Infill and Vary: the source's), meter (the source's), tempo and the constraints for the new
/// notes; `seed` chooses the notes Vary re-masks.
pub fn plan_edit(
    vocab: &Vocabulary,
    request: &PhraseRequest,
    source: &Phrase,
    edit: &Edit,
    seed: u64,
    length_multiple: usize,
    max_len: usize,
) -> Result<EditPlan, EditError> {
    let source_bars = source.bars.max(1);
    let bars = request.bars;
    match *edit {
        Edit::Continue { keep_bars } => {
            if keep_bars == 0 {
                return Err(EditError::KeepNone);
            }
            if keep_bars > source_bars {
                return Err(EditError::KeepTooMany {
                    keep: keep_bars,
                    source_bars,
                });
            }
            if keep_bars >= bars {
                return Err(EditError::NothingToGenerate {
                    keep: keep_bars,
                    bars,
                });
            }
        }
        Edit::Infill { from, to } => {
            if from == 0 || from > to || to > source_bars {
                return Err(EditError::BarRange {
                    from,
                    to,
                    source_bars,
                });
            }
        }
        Edit::Vary { strength, .. } => {
            if !(0.0..=1.0).contains(&strength) {
                return Err(EditError::Strength(strength));
            }
        }
    }
    let Base {
        mut constraints,
        ts_id,
        head_tokens,
        per_note,
        density,
    } = base(vocab, request)?;
    let mask = vocab.mask_id();
    let bar_id = vocab.bar_id();

    // The source in the model's tokens, with the request's tempo at its head (as a plan's).
    let mut quantised = source.clone();
    quantised.time_signature = request.time_signature;
    quantised.tempo_hint = request.tempo;
    let (ids, report) = Encoder::new(vocab).encode(&quantised)?;
    if !ids.starts_with(&head_tokens) {
        return Err(EditError::Plan(PlanError::UnsupportedMeter(
            request.time_signature,
        )));
    }
    // Bar contents (without their `Bar TimeSig`; bar one without the head).
    let mut contents: Vec<Vec<TokenId>> = Vec::with_capacity(source_bars as usize);
    let mut rest = &ids[head_tokens.len()..];
    loop {
        let end = rest.iter().position(|&t| t == bar_id).unwrap_or(rest.len());
        contents.push(rest[..end].to_vec());
        if end == rest.len() {
            break;
        }
        rest = &rest[(end + 2).min(rest.len())..];
    }

    let output_bars = match *edit {
        Edit::Continue { .. } => bars,
        _ => source_bars,
    } as usize;
    let mut slots: Vec<BarSlot> = (0..output_bars)
        .map(|b| {
            if edit.keeps_bar(b as u32) {
                BarSlot::Kept(contents.get(b).cloned().unwrap_or_default())
            } else {
                BarSlot::Free
            }
        })
        .collect();
    if let Edit::Vary {
        strength,
        keep_rhythm,
    } = *edit
    {
        remask(vocab, &mut slots, strength, keep_rhythm, seed);
    }

    // Kept chords may be larger than the request allows: the automaton must count them.
    let largest = slots
        .iter()
        .filter_map(|s| match s {
            BarSlot::Kept(c) => Some(largest_onset(vocab, c)),
            BarSlot::Free => None,
        })
        .max()
        .unwrap_or(0);
    if largest > MAX_NOTES_PER_ONSET_LIMIT as usize {
        return Err(EditError::ChordTooLarge {
            notes: largest,
            max: MAX_NOTES_PER_ONSET_LIMIT,
        });
    }
    constraints.max_notes = constraints.max_notes.max(largest);

    // A regenerated bar holds as many tokens as a kept one does on average.
    let kept: Vec<usize> = slots
        .iter()
        .filter_map(|s| match s {
            BarSlot::Kept(c) => Some(c.len()),
            BarSlot::Free => None,
        })
        .collect();
    let kept_tokens: usize = kept.iter().sum();
    let mean_bar = if kept_tokens > 0 {
        kept_tokens as f64 / kept.len() as f64
    } else {
        (per_note * density * request.time_signature.bar_quarters()).max(1.0)
    };

    let layout = |extra: isize| -> Layout {
        let mut tokens = head_tokens.clone();
        let mut lines = Vec::with_capacity(output_bars.saturating_sub(1));
        let run_start = tokens.len();
        let mut b = 0;
        while b < output_bars {
            if b > 0 {
                lines.push(((tokens.len() - run_start) as f64, 0));
                tokens.extend([bar_id, ts_id]);
            }
            match &slots[b] {
                BarSlot::Kept(content) => {
                    tokens.extend(content);
                    b += 1;
                }
                BarSlot::Free => {
                    let m = slots[b..]
                        .iter()
                        .take_while(|s| matches!(s, BarSlot::Free))
                        .count();
                    let content = ((mean_bar * m as f64).round() as isize + extra).max(1) as usize;
                    let start = tokens.len() - run_start;
                    let per_bar = content as f64 / m as f64;
                    for i in 1..m {
                        let expected = start as f64 + i as f64 * per_bar + 2.0 * (i - 1) as f64;
                        lines.push((expected, window_for(per_bar)));
                    }
                    tokens.extend(std::iter::repeat_n(mask, content + 2 * (m - 1)));
                    b += m;
                }
            }
        }
        let run_end = tokens.len();
        tokens.extend([bar_id, ts_id]);
        Layout {
            tokens,
            lines,
            run_end,
        }
    };

    let has_free = slots.iter().any(|s| matches!(s, BarSlot::Free));
    let tries: Vec<isize> = if has_free {
        (0..=24).flat_map(|d| [d, -d]).skip(1).collect()
    } else {
        vec![0]
    };
    for extra in tries {
        let Layout {
            mut tokens,
            lines,
            run_end,
        } = layout(extra);
        let multiple = length_multiple.max(1);
        let total = tokens.len().div_ceil(multiple) * multiple;
        if total > max_len {
            return Err(EditError::TooLong {
                needed: tokens.len(),
                max: max_len,
            });
        }
        // Look-ahead slots after the end marker, outside the run: sampled, then dropped.
        tokens.resize(total, mask);
        let mut candidate = constraints.clone();
        candidate.run.end = run_end;
        candidate.lines = lines;
        if candidate.completes_tokens(&tokens, mask) {
            return Ok(EditPlan {
                plan: Plan {
                    tokens,
                    constraints: candidate,
                },
                report,
            });
        }
    }
    Err(EditError::NoLayout)
}

/// The most pitches at one position in a bar's content.
fn largest_onset(vocab: &Vocabulary, content: &[TokenId]) -> usize {
    let mut largest = 0;
    let mut current = 0;
    for &t in content {
        match vocab.token(t) {
            Some(Token::Position(_)) => current = 0,
            Some(Token::Pitch(_)) => {
                current += 1;
                largest = largest.max(current);
            }
            _ => {}
        }
    }
    largest
}

/// Masks `strength` of the kept notes (chosen with `seed`): their pitch, and unless
/// `keep_rhythm` their duration and, when every note of an onset goes, its position.
fn remask(vocab: &Vocabulary, slots: &mut [BarSlot], strength: f64, keep_rhythm: bool, seed: u64) {
    let mask = vocab.mask_id();
    // Every note as (bar, index of its pitch, index of its onset's position).
    let mut notes = Vec::new();
    for (b, slot) in slots.iter().enumerate() {
        let BarSlot::Kept(content) = slot else {
            continue;
        };
        let mut position = None;
        for (i, &t) in content.iter().enumerate() {
            match vocab.token(t) {
                Some(Token::Position(_)) => position = Some(i),
                Some(Token::Pitch(_)) => notes.push((b, i, position)),
                _ => {}
            }
        }
    }
    let count = ((strength * notes.len() as f64).round() as usize).min(notes.len());
    // A partial Fisher-Yates shuffle: the first `count` are the chosen notes.
    let mut rng = SplitMix64::new(seed ^ 0x5641_5259_0000_0000);
    for i in 0..count {
        let j = i + (rng.next_u64() % (notes.len() - i) as u64) as usize;
        notes.swap(i, j);
    }
    let chosen = &notes[..count];
    for &(b, pitch, _) in chosen {
        if let BarSlot::Kept(content) = &mut slots[b] {
            content[pitch] = mask;
            if !keep_rhythm {
                content[pitch + 1] = mask;
            }
        }
    }
    if keep_rhythm {
        return;
    }
    // An onset whose notes are all re-masked may move: its position is masked too.
    for (b, pitch, position) in &notes {
        let Some(position) = *position else { continue };
        let all_chosen = notes
            .iter()
            .filter(|(b2, _, p2)| b2 == b && *p2 == Some(position))
            .all(|n| chosen.contains(n));
        if all_chosen && chosen.iter().any(|(b2, p, _)| b2 == b && p == pitch) {
            if let BarSlot::Kept(content) = &mut slots[*b] {
                content[position] = mask;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::decode;
    use crate::phrase::{Note, TimeSignature, PPQ};
    use crate::sampler::{sample, Order, SamplerSettings};
    use std::sync::atomic::AtomicBool;

    fn vocab() -> &'static Vocabulary {
        Vocabulary::remi_v1()
    }

    /// A four-bar idea: a rising line with a two-note chord in bar 2 and a held note in bar 4.
    fn source() -> Phrase {
        let q = PPQ;
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 4);
        let notes = [
            (0, q, 60),
            (q, q, 62),
            (2 * q, 2 * q, 64),
            (4 * q, q, 65),
            (4 * q, q, 69),
            (5 * q, q / 2, 67),
            (8 * q, q, 64),
            (10 * q, q, 62),
            (12 * q, 4 * q, 60),
        ];
        for (start, length, pitch) in notes {
            phrase.notes.push(Note {
                start,
                length,
                pitch,
                velocity: 100,
            });
        }
        phrase.normalize();
        phrase
    }

    fn request(bars: u32) -> PhraseRequest {
        PhraseRequest {
            bars,
            time_signature: TimeSignature::FOUR_FOUR,
            lowest_pitch: 48,
            highest_pitch: 84,
            ..Default::default()
        }
    }

    /// Samples a plan with random logits (any model must give a valid phrase).
    fn run(plan: &Plan, seed: u64, order: Order) -> Phrase {
        let v = vocab();
        let mut rng = SplitMix64::new(seed);
        let mut denoiser = |tokens: &[TokenId], out: &mut Vec<f32>| -> Result<(), ()> {
            out.clear();
            out.extend((0..tokens.len() * v.len()).map(|_| (rng.uniform() * 8.0) as f32));
            Ok(())
        };
        let settings = SamplerSettings {
            steps: 12,
            temperature: 1.0,
            top_p: 1.0,
            seed,
            order,
            noise: 1.0,
            tonal_focus: 0.0,
        };
        let never = AtomicBool::new(false);
        let (tokens, stats) = sample(
            v,
            &mut denoiser,
            &plan.tokens,
            &settings,
            Some(&plan.constraints),
            &never,
            |_, _| {},
        )
        .unwrap();
        assert_eq!(stats.relaxed_choices, 0);
        for (i, (&before, &after)) in plan.tokens.iter().zip(&tokens).enumerate() {
            if before != v.mask_id() {
                assert_eq!(before, after, "fixed slot {i} changed");
            }
        }
        let decoded = decode(v, plan.phrase_tokens(&tokens));
        assert_eq!(decoded.report.skipped(), 0, "{:?}", decoded.report);
        decoded.phrase
    }

    fn notes_in(phrase: &Phrase, bars: std::ops::Range<u32>) -> Vec<(u32, u32, u8)> {
        let bar = phrase.time_signature.bar_ticks();
        phrase
            .notes
            .iter()
            .filter(|n| bars.contains(&(n.start / bar)))
            .map(|n| (n.start, n.length, n.pitch))
            .collect()
    }

    #[test]
    fn continue_keeps_the_first_bars_note_for_note() {
        let src = source();
        for seed in 0..20 {
            let order = [Order::Random, Order::Confidence][seed as usize % 2];
            let edit = Edit::Continue { keep_bars: 2 };
            let plan = plan_edit(vocab(), &request(6), &src, &edit, seed, 4, 512).unwrap();
            assert!(plan.plan.tokens.len().is_multiple_of(4));
            let out = run(&plan.plan, seed, order);
            assert_eq!(out.bars, 6);
            assert_eq!(notes_in(&out, 0..2), notes_in(&src, 0..2), "seed {seed}");
        }
    }

    #[test]
    fn infill_keeps_every_other_bar() {
        let src = source();
        for seed in 0..20 {
            let edit = Edit::Infill { from: 2, to: 3 };
            let plan = plan_edit(vocab(), &request(4), &src, &edit, seed, 4, 512).unwrap();
            let out = run(&plan.plan, seed, Order::Random);
            assert_eq!(out.bars, 4);
            assert_eq!(notes_in(&out, 0..1), notes_in(&src, 0..1));
            assert_eq!(notes_in(&out, 3..4), notes_in(&src, 3..4));
        }
        // The first bar (after the head) and the last can be regenerated too.
        for (from, to) in [(1, 1), (4, 4), (1, 4)] {
            let edit = Edit::Infill { from, to };
            let plan = plan_edit(vocab(), &request(4), &src, &edit, 3, 4, 512).unwrap();
            let out = run(&plan.plan, 3, Order::Confidence);
            assert_eq!(out.bars, 4, "{from}-{to}");
        }
    }

    #[test]
    fn vary_zero_is_the_source_and_one_keeps_the_bars() {
        let src = source();
        let edit = Edit::Vary {
            strength: 0.0,
            keep_rhythm: false,
        };
        let plan = plan_edit(vocab(), &request(4), &src, &edit, 1, 4, 512).unwrap();
        let out = run(&plan.plan, 1, Order::Random);
        assert_eq!(notes_in(&out, 0..4), notes_in(&src, 0..4));

        for seed in 0..10 {
            let edit = Edit::Vary {
                strength: 1.0,
                keep_rhythm: false,
            };
            let plan = plan_edit(vocab(), &request(4), &src, &edit, seed, 4, 512).unwrap();
            let out = run(&plan.plan, seed, Order::Random);
            assert_eq!((out.bars, out.time_signature), (4, src.time_signature));
        }
    }

    #[test]
    fn vary_masks_the_share_asked_for() {
        let src = source();
        let masked = |strength: f64, keep_rhythm: bool| {
            let edit = Edit::Vary {
                strength,
                keep_rhythm,
            };
            let plan = plan_edit(vocab(), &request(4), &src, &edit, 9, 4, 512).unwrap();
            let run = &plan.plan.tokens[..plan.plan.constraints.run.end];
            run.iter().filter(|&&t| t == vocab().mask_id()).count()
        };
        assert_eq!(masked(0.0, false), 0);
        // Nine notes: a third is three notes, each at least pitch and duration.
        assert!((6..=9).contains(&masked(1.0 / 3.0, false)));
        assert_eq!(masked(1.0, true), 9, "every pitch and nothing else");
    }

    #[test]
    fn keep_rhythm_keeps_onsets_and_durations() {
        let src = source();
        let edit = Edit::Vary {
            strength: 1.0,
            keep_rhythm: true,
        };
        for seed in 0..10 {
            let plan = plan_edit(vocab(), &request(4), &src, &edit, seed, 4, 512).unwrap();
            let out = run(&plan.plan, seed, Order::Confidence);
            let rhythm = |p: &Phrase| {
                let mut r: Vec<(u32, u32)> = p.notes.iter().map(|n| (n.start, n.length)).collect();
                r.sort();
                r
            };
            assert_eq!(rhythm(&out), rhythm(&src), "seed {seed}");
            assert!(out.notes.iter().all(|n| (48..=84).contains(&n.pitch)));
        }
    }

    #[test]
    fn impossible_edits_name_the_limit() {
        let src = source();
        let err = |edit: Edit, bars: u32| {
            plan_edit(vocab(), &request(bars), &src, &edit, 0, 4, 512)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err(Edit::Continue { keep_bars: 5 }, 8),
            "keep 5 bars: the source has 4 bar(s)"
        );
        assert!(err(Edit::Continue { keep_bars: 4 }, 4).contains("nothing left to generate"));
        assert_eq!(
            err(Edit::Infill { from: 3, to: 5 }, 4),
            "bars 3-5: the source has bars 1-4"
        );
        assert!(err(
            Edit::Vary {
                strength: 1.5,
                keep_rhythm: false
            },
            4
        )
        .starts_with("strength 1.5"));
        let long = plan_edit(
            vocab(),
            &request(64),
            &src,
            &Edit::Continue { keep_bars: 4 },
            0,
            4,
            64,
        )
        .unwrap_err();
        assert!(matches!(long, EditError::TooLong { max: 64, .. }), "{long}");
        // A meter without a token.
        let mut odd = src.clone();
        odd.time_signature = TimeSignature::new(7, 8).unwrap();
        let mut r = request(4);
        r.time_signature = odd.time_signature;
        let e = plan_edit(
            vocab(),
            &r,
            &odd,
            &Edit::Infill { from: 1, to: 1 },
            0,
            4,
            512,
        );
        assert!(e.unwrap_err().to_string().contains("7/8"));
    }
}
