//! REMI tokens ⇄ [`Phrase`].
//!
//! # Decoding rules
//! Any id sequence decodes; tokens that do not fit the grammar below are skipped and counted in
//! [`DecodeReport`] by [`SkipReason`]. The grammar is miditok's REMI without velocity or program:
//! `Bar TimeSig (Position [Tempo] (Pitch Duration)*)*`, repeated per bar.
//!
//! - `PAD` and `BOS` are ignored; `EOS` ends the phrase. `MASK` and unknown ids are skipped.
//! - Every token but `PAD`/`BOS`/`EOS` before the first `Bar` is skipped.
//! - The phrase has one meter: the first `TimeSig` fixes it, and 4/4 is fixed if a bar has
//!   content before any `TimeSig`. A `TimeSig` of another meter, or one that is not directly
//!   after its `Bar`, is skipped.
//! - `Position_p` must lie inside the bar and must not go backwards; otherwise it is skipped and
//!   the previous position stays.
//! - `Pitch` then `Duration` makes a note at the current position (the bar start if the bar has
//!   had no `Position`). A `Pitch` not followed by a `Duration` and a `Duration` without a
//!   `Pitch` are skipped.
//! - The first `Tempo` becomes the tempo hint; later ones are accepted and ignored.
//! - Bars beyond [`MAX_BARS`] are dropped.
//!
//! Notes are then [normalised](Phrase::normalize): cut at the phrase end, same-pitch overlaps
//! cut, exact duplicates removed.

use serde::Serialize;

use crate::error::EncodeError;
use crate::phrase::{Note, Phrase, TimeSignature, DEFAULT_VELOCITY, MAX_BARS};
use crate::vocab::{Token, TokenId, Vocabulary, POSITIONS_PER_BEAT};

/// Why a token was skipped while decoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum SkipReason {
    UnknownId,
    Mask,
    BeforeFirstBar,
    MisplacedTimeSig,
    MeterChange,
    PositionOutsideBar,
    PositionBackwards,
    PitchWithoutDuration,
    DurationWithoutPitch,
    BeyondMaxBars,
}

impl SkipReason {
    pub const ALL: [SkipReason; 10] = [
        SkipReason::UnknownId,
        SkipReason::Mask,
        SkipReason::BeforeFirstBar,
        SkipReason::MisplacedTimeSig,
        SkipReason::MeterChange,
        SkipReason::PositionOutsideBar,
        SkipReason::PositionBackwards,
        SkipReason::PitchWithoutDuration,
        SkipReason::DurationWithoutPitch,
        SkipReason::BeyondMaxBars,
    ];
}

/// What the decoder had to skip. A grammatical sequence has `skipped() == 0`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DecodeReport {
    counts: [usize; SkipReason::ALL.len()],
}

impl DecodeReport {
    fn skip(&mut self, reason: SkipReason) {
        self.counts[reason as usize] += 1;
    }

    pub fn count(&self, reason: SkipReason) -> usize {
        self.counts[reason as usize]
    }

    pub fn skipped(&self) -> usize {
        self.counts.iter().sum()
    }

    /// Non-zero counts, for messages and logs.
    pub fn nonzero(&self) -> impl Iterator<Item = (SkipReason, usize)> + '_ {
        SkipReason::ALL
            .iter()
            .map(|r| (*r, self.count(*r)))
            .filter(|(_, n)| *n > 0)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub phrase: Phrase,
    pub report: DecodeReport,
}

/// Decodes ids with the rules in the module docs. Never panics.
pub fn decode(vocab: &Vocabulary, ids: &[TokenId]) -> Decoded {
    decode_tokens(ids.iter().map(|&id| vocab.token(id)))
}

/// Decodes already-parsed tokens (`None` = an id outside the vocabulary).
pub fn decode_tokens(tokens: impl IntoIterator<Item = Option<Token>>) -> Decoded {
    let mut report = DecodeReport::default();
    let mut meter: Option<TimeSignature> = None;
    let mut tempo_hint = None;
    // (bar index, position in eighths of a beat, pitch, duration in ticks); bar-relative so the
    // meter, fixed on the first bar, can turn positions into ticks at the end.
    let mut raw_notes: Vec<(u32, u32, u8, u32)> = Vec::new();
    let mut bar: Option<u32> = None;
    let mut bar_has_content = false;
    let mut position: Option<u32> = None;
    let mut pending_pitch: Option<u8> = None;

    for token in tokens {
        let Some(token) = token else {
            report.skip(SkipReason::UnknownId);
            continue;
        };
        if !matches!(token, Token::Duration { .. }) && pending_pitch.take().is_some() {
            report.skip(SkipReason::PitchWithoutDuration);
        }
        match token {
            Token::Pad | Token::Bos => {}
            Token::Eos => break,
            Token::Mask => report.skip(SkipReason::Mask),
            Token::Bar => {
                let next = bar.map_or(0, |b| b + 1);
                if next >= MAX_BARS {
                    report.skip(SkipReason::BeyondMaxBars);
                    break;
                }
                bar = Some(next);
                bar_has_content = false;
                position = None;
            }
            _ if bar.is_none() => report.skip(SkipReason::BeforeFirstBar),
            Token::TimeSig(ts) => {
                if bar_has_content {
                    report.skip(SkipReason::MisplacedTimeSig);
                } else if *meter.get_or_insert(ts) != ts {
                    report.skip(SkipReason::MeterChange);
                }
                bar_has_content = true;
            }
            Token::Position(p) => {
                let ts = *meter.get_or_insert(TimeSignature::FOUR_FOUR);
                bar_has_content = true;
                if p >= ts.numerator as u32 * POSITIONS_PER_BEAT {
                    report.skip(SkipReason::PositionOutsideBar);
                } else if position.is_some_and(|current| p < current) {
                    report.skip(SkipReason::PositionBackwards);
                } else {
                    position = Some(p);
                }
            }
            Token::Tempo(t) => {
                bar_has_content = true;
                tempo_hint.get_or_insert(t);
            }
            Token::Pitch(p) => {
                meter.get_or_insert(TimeSignature::FOUR_FOUR);
                bar_has_content = true;
                pending_pitch = Some(p);
            }
            Token::Duration {
                whole,
                part,
                resolution,
            } => match pending_pitch.take() {
                None => report.skip(SkipReason::DurationWithoutPitch),
                Some(pitch) => {
                    let ts = meter.unwrap_or_default();
                    let beat = ts.beat_ticks() as u64;
                    let ticks = whole as u64 * beat + part as u64 * beat / resolution as u64;
                    let ticks = ticks.clamp(1, u32::MAX as u64) as u32;
                    raw_notes.push((bar.unwrap_or(0), position.unwrap_or(0), pitch, ticks));
                }
            },
        }
    }
    if pending_pitch.is_some() {
        report.skip(SkipReason::PitchWithoutDuration);
    }

    let time_signature = meter.unwrap_or_default();
    let bar_ticks = time_signature.bar_ticks();
    let position_ticks = time_signature.beat_ticks() / POSITIONS_PER_BEAT;
    let mut phrase = Phrase {
        notes: raw_notes
            .into_iter()
            .map(|(bar, pos, pitch, length)| Note {
                start: bar * bar_ticks + pos * position_ticks,
                length,
                pitch,
                velocity: DEFAULT_VELOCITY,
            })
            .collect(),
        time_signature,
        tempo_hint,
        bars: bar.map_or(1, |b| b + 1),
    };
    phrase.normalize();
    Decoded { phrase, report }
}

/// Phrase → REMI ids, quantising to the vocabulary's grid.
pub struct Encoder<'v> {
    vocab: &'v Vocabulary,
    /// Duration tokens as (whole beats, part, resolution, id); their length in ticks depends on
    /// the meter's beat.
    durations: Vec<(u32, u32, u32, TokenId)>,
    tempos: Vec<(f32, TokenId)>,
    pitches: [Option<TokenId>; 128],
    positions: Vec<Option<TokenId>>,
}

/// What the encoder could not represent exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EncodeReport {
    /// Notes whose pitch has no token.
    pub dropped_pitch: usize,
    /// Notes moved to the nearest grid position.
    pub moved: usize,
    /// Notes whose length was rounded to the nearest duration token.
    pub resized: usize,
}

impl<'v> Encoder<'v> {
    pub fn new(vocab: &'v Vocabulary) -> Encoder<'v> {
        let mut durations = Vec::new();
        let mut tempos = Vec::new();
        let mut pitches = [None; 128];
        let mut positions = Vec::new();
        for (id, token) in vocab.tokens().iter().enumerate() {
            let id = id as TokenId;
            match *token {
                Token::Duration {
                    whole,
                    part,
                    resolution,
                } => durations.push((whole, part, resolution, id)),
                Token::Tempo(t) => tempos.push((t, id)),
                Token::Pitch(p) => pitches[p as usize] = Some(id),
                Token::Position(p) => {
                    let p = p as usize;
                    if positions.len() <= p {
                        positions.resize(p + 1, None);
                    }
                    positions[p] = Some(id);
                }
                _ => {}
            }
        }
        Encoder {
            vocab,
            durations,
            tempos,
            pitches,
            positions,
        }
    }

    fn duration_ticks(&self, beat: u32, index: usize) -> u64 {
        let (whole, part, resolution, _) = self.durations[index];
        whole as u64 * beat as u64 + part as u64 * beat as u64 / resolution as u64
    }

    /// Id of the duration closest to `ticks` (ties: the shorter).
    fn nearest_duration(&self, beat: u32, ticks: u32) -> Option<(TokenId, u64)> {
        (0..self.durations.len())
            .map(|i| (self.durations[i].3, self.duration_ticks(beat, i)))
            .min_by_key(|&(_, d)| (d.abs_diff(ticks as u64), d))
    }

    pub fn encode(&self, phrase: &Phrase) -> Result<(Vec<TokenId>, EncodeReport), EncodeError> {
        let ts = phrase.time_signature;
        let ts_id = self
            .vocab
            .id_of(&format!("TimeSig_{}/{}", ts.numerator, ts.denominator))
            .ok_or(EncodeError::UnsupportedTimeSignature(ts))?;
        let bar_id = self.vocab.bar_id();
        let beat = ts.beat_ticks();
        let step = beat / POSITIONS_PER_BEAT;
        let steps_per_bar = ts.numerator as u32 * POSITIONS_PER_BEAT;
        let bars = phrase.bars.clamp(1, MAX_BARS);
        let mut report = EncodeReport::default();

        // Quantise every note to (grid step, pitch, duration id).
        let mut grid: Vec<(u32, u8, TokenId)> = Vec::with_capacity(phrase.notes.len());
        for note in &phrase.notes {
            if self.pitches[note.pitch as usize].is_none() {
                report.dropped_pitch += 1;
                continue;
            }
            let slot = (note.start + step / 2) / step;
            if slot * step != note.start {
                report.moved += 1;
            }
            if slot >= bars * steps_per_bar {
                continue;
            }
            let Some((duration_id, ticks)) = self.nearest_duration(beat, note.length) else {
                return Err(EncodeError::MissingTokens("Duration"));
            };
            if ticks != note.length as u64 {
                report.resized += 1;
            }
            grid.push((slot, note.pitch, duration_id));
        }
        grid.sort_unstable();
        grid.dedup_by_key(|(slot, pitch, _)| (*slot, *pitch));

        let position_id = |p: u32| {
            self.positions
                .get(p as usize)
                .copied()
                .flatten()
                .ok_or(EncodeError::MissingTokens("Position"))
        };
        let mut ids = Vec::with_capacity(bars as usize * 2 + grid.len() * 3 + 2);
        let mut notes = grid.iter().peekable();
        for bar in 0..bars {
            ids.push(bar_id);
            ids.push(ts_id);
            let mut last_slot = None;
            if bar == 0 {
                if let Some(tempo) = phrase.tempo_hint {
                    let nearest = self
                        .tempos
                        .iter()
                        .min_by(|a, b| (a.0 - tempo).abs().total_cmp(&(b.0 - tempo).abs()));
                    if let Some(&(_, tempo_id)) = nearest {
                        ids.push(position_id(0)?);
                        ids.push(tempo_id);
                        last_slot = Some(0);
                    }
                }
            }
            while let Some(&&(slot, pitch, duration_id)) = notes.peek() {
                if slot / steps_per_bar != bar {
                    break;
                }
                notes.next();
                let in_bar = slot % steps_per_bar;
                if last_slot != Some(in_bar) {
                    ids.push(position_id(in_bar)?);
                    last_slot = Some(in_bar);
                }
                ids.push(self.pitches[pitch as usize].expect("filtered above"));
                ids.push(duration_id);
            }
        }
        Ok((ids, report))
    }
}

/// Token ids from text: whitespace/comma separated token strings (`Bar_None Pitch_60 ...`)
/// or plain integers.
pub fn parse_token_text(vocab: &Vocabulary, text: &str) -> Result<Vec<TokenId>, EncodeError> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == '[' || c == ']')
        .map(|t| t.trim_matches('"'))
        .filter(|t| !t.is_empty())
        .map(|t| match t.parse::<TokenId>() {
            Ok(id) => Ok(id),
            Err(_) => vocab
                .id_of(t)
                .ok_or_else(|| EncodeError::UnknownToken(t.to_owned())),
        })
        .collect()
}
