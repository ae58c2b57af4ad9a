//! Constraints that hold by construction: a phrase plan plus per-choice logit masks.
//!
//! The plan fixes the skeleton: `Bar TimeSig` at the start of every bar (and `Position_0 Tempo`
//! in the first), with a budget of free slots per bar from the density setting. Free slots of a
//! bar must spell `(Position (Pitch Duration)+)+` with strictly increasing positions inside the
//! bar and at most `max_notes_per_onset` pitches per position; pitches must be in range and key.
//!
//! Diffusion fills slots in random order, so a choice must keep a valid completion possible
//! whatever is already known to its left and right. The bar grammar is a finite automaton whose
//! states are (phase, position, notes at this onset); for each phase the reachable positions fit
//! a `u128` bitmask, so forward-reachable and backward-co-reachable state sets over a bar cost a
//! few dozen word operations per slot. A token is allowed at a slot when some reachable state
//! before it steps, on that token, into a state from which the rest of the bar can still be
//! completed. Hence every sampled sequence decodes with zero skipped tokens.

use crate::phrase::TimeSignature;
use crate::vocab::{Token, TokenId, Vocabulary, POSITIONS_PER_BEAT};

/// Notes per onset never exceed this (the automaton's counter range).
pub const MAX_NOTES_PER_ONSET_LIMIT: u32 = 12;

/// What the musician asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct PhraseRequest {
    pub bars: u32,
    pub time_signature: TimeSignature,
    /// Quarter notes per minute; written as the tempo token of bar one.
    pub tempo: Option<f32>,
    /// Average notes per quarter note; sets each bar's token budget.
    pub notes_per_quarter: f64,
    pub lowest_pitch: u8,
    pub highest_pitch: u8,
    pub key: Option<Key>,
    pub max_notes_per_onset: u32,
}

impl Default for PhraseRequest {
    fn default() -> Self {
        PhraseRequest {
            bars: 8,
            time_signature: TimeSignature::FOUR_FOUR,
            tempo: Some(120.0),
            notes_per_quarter: 1.5,
            lowest_pitch: 36,
            highest_pitch: 96,
            key: None,
            max_notes_per_onset: 4,
        }
    }
}

/// A key as a tonic pitch class and a scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Key {
    pub tonic: u8,
    pub scale: Scale,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    Major,
    Minor,
    HarmonicMinor,
    Dorian,
    Mixolydian,
    MajorPentatonic,
    MinorPentatonic,
}

impl Scale {
    pub const ALL: [(&'static str, Scale); 7] = [
        ("major", Scale::Major),
        ("minor", Scale::Minor),
        ("harmonic-minor", Scale::HarmonicMinor),
        ("dorian", Scale::Dorian),
        ("mixolydian", Scale::Mixolydian),
        ("major-pentatonic", Scale::MajorPentatonic),
        ("minor-pentatonic", Scale::MinorPentatonic),
    ];

    fn steps(self) -> &'static [u8] {
        match self {
            Scale::Major => &[0, 2, 4, 5, 7, 9, 11],
            Scale::Minor => &[0, 2, 3, 5, 7, 8, 10],
            Scale::HarmonicMinor => &[0, 2, 3, 5, 7, 8, 11],
            Scale::Dorian => &[0, 2, 3, 5, 7, 9, 10],
            Scale::Mixolydian => &[0, 2, 4, 5, 7, 9, 10],
            Scale::MajorPentatonic => &[0, 2, 4, 7, 9],
            Scale::MinorPentatonic => &[0, 3, 5, 7, 10],
        }
    }

    pub fn name(self) -> &'static str {
        Scale::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("?", |(n, _)| n)
    }
}

const NOTE_NAMES: [&str; 12] = [
    "C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B",
];

impl Key {
    pub fn contains(&self, pitch: u8) -> bool {
        let class = (pitch as i32 - self.tonic as i32).rem_euclid(12) as u8;
        self.scale.steps().contains(&class)
    }

    /// Parses `D-minor`, `F#-dorian`, `Bb major`, `Am` (minor), `C` (major).
    pub fn parse(text: &str) -> Option<Key> {
        let text = text.trim();
        let split = text
            .char_indices()
            .skip(1)
            .find(|(_, c)| !matches!(c, '#' | 'b'))
            .map_or(text.len(), |(i, _)| i);
        let (note, rest) = text.split_at(split);
        let mut chars = note.chars();
        let letter = chars.next()?.to_ascii_uppercase();
        let base = NOTE_NAMES
            .iter()
            .position(|n| n.starts_with(letter) && n.len() == 1)? as i32;
        let accidental: i32 = chars.map(|c| if c == '#' { 1 } else { -1 }).sum();
        let tonic = (base + accidental).rem_euclid(12) as u8;
        let rest = rest
            .trim_start_matches(['-', ' ', '_'])
            .to_ascii_lowercase();
        let scale = match rest.as_str() {
            "" | "maj" => Scale::Major,
            "m" | "min" => Scale::Minor,
            other => Scale::ALL.iter().find(|(n, _)| *n == other)?.1,
        };
        Some(Key { tonic, scale })
    }
}

impl std::fmt::Display for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}-{}",
            NOTE_NAMES[self.tonic as usize],
            self.scale.name()
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("time signature {0} has no token in the model's vocabulary")]
    UnsupportedMeter(TimeSignature),
    #[error("{bars} bars at this density need {needed} tokens; the model takes at most {max}: lower bars or density")]
    TooLong {
        bars: u32,
        needed: usize,
        max: usize,
    },
    #[error("no pitch in {low}-{high} fits the key")]
    NoPitches { low: u8, high: u8 },
    #[error("bars must be at least 1")]
    NoBars,
    #[error("no layout of {bars} bars has a length that is a multiple of {multiple}: change the density or the notes per onset")]
    NoLayout { bars: u32, multiple: usize },
}

/// The skeleton of a phrase: token slots with fixed tokens and MASK, plus the constraints.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tokens: Vec<TokenId>,
    pub constraints: Constraints,
}

/// A bar's free slots and the automaton state they start in.
#[derive(Debug, Clone, Copy, PartialEq)]
struct FreeRun {
    start: usize,
    end: usize,
    /// True for bar one, whose free slots follow `Position_0 Tempo`.
    after_tempo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Position(u32),
    Pitch,
    Duration,
    Other,
}

/// The per-choice masks of a [`Plan`].
#[derive(Debug, Clone)]
pub struct Constraints {
    runs: Vec<FreeRun>,
    run_of_slot: Vec<Option<u32>>,
    classes: Vec<Class>,
    pitch_allowed: Vec<bool>,
    positions_per_bar: u32,
    max_notes: usize,
}

/// Automaton states at one slot boundary of a bar. `q[c]`/`r[c]`: after the c-th pitch /
/// duration at the current onset; bit `p` = the onset's position.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct States {
    start: bool,
    p: u128,
    q: [u128; MAX_NOTES_PER_ONSET_LIMIT as usize + 1],
    r: [u128; MAX_NOTES_PER_ONSET_LIMIT as usize + 1],
}

fn bit(p: u32) -> u128 {
    1u128 << p
}

/// Bits strictly above the lowest set bit of `m` (all positions after the earliest onset).
fn above_lowest(m: u128) -> u128 {
    if m == 0 {
        0
    } else {
        !((m & m.wrapping_neg()) | ((m & m.wrapping_neg()) - 1))
    }
}

/// Bits strictly below the highest set bit of `m`.
fn below_highest(m: u128) -> u128 {
    if m == 0 {
        0
    } else {
        let top = 127 - m.leading_zeros();
        bit(top) - 1
    }
}

impl Constraints {
    fn position_mask(&self) -> u128 {
        if self.positions_per_bar >= 128 {
            u128::MAX
        } else {
            bit(self.positions_per_bar) - 1
        }
    }

    fn initial(&self, run: &FreeRun) -> States {
        let mut s = States::default();
        if run.after_tempo {
            s.r[0] = bit(0);
        } else {
            s.start = true;
        }
        s
    }

    fn accepting(&self) -> States {
        let mut s = States::default();
        let all = self.position_mask();
        for c in 0..=self.max_notes {
            s.r[c] = all;
        }
        s
    }

    /// Classes a slot may take: a known token's class, or every class when masked.
    fn slot_class(&self, token: TokenId, mask: TokenId) -> Option<Class> {
        (token != mask).then(|| {
            self.classes
                .get(token as usize)
                .copied()
                .unwrap_or(Class::Other)
        })
    }

    fn forward(&self, s: &States, class: Option<Class>) -> States {
        let mut n = States::default();
        let any_r = s.r.iter().fold(0, |acc, m| acc | m);
        let position_ok = if s.start {
            self.position_mask()
        } else {
            above_lowest(any_r) & self.position_mask()
        };
        let (pos, pitch, duration) = match class {
            None => (position_ok, true, true),
            Some(Class::Position(v)) => {
                (position_ok & if v < 128 { bit(v) } else { 0 }, false, false)
            }
            Some(Class::Pitch) => (0, true, false),
            Some(Class::Duration) => (0, false, true),
            Some(Class::Other) => (0, false, false),
        };
        n.p = pos;
        if pitch {
            n.q[1] |= s.p;
            for c in 0..self.max_notes {
                n.q[c + 1] |= s.r[c];
            }
        }
        if duration {
            for c in 1..=self.max_notes {
                n.r[c] |= s.q[c];
            }
        }
        n
    }

    fn backward(&self, after: &States, class: Option<Class>) -> States {
        let mut b = States::default();
        let (positions, pitch, duration) = match class {
            None => (after.p, true, true),
            Some(Class::Position(v)) => (after.p & if v < 128 { bit(v) } else { 0 }, false, false),
            Some(Class::Pitch) => (0, true, false),
            Some(Class::Duration) => (0, false, true),
            Some(Class::Other) => (0, false, false),
        };
        b.start = positions != 0;
        let r_by_position = below_highest(positions);
        if pitch {
            b.p = after.q[1];
        }
        for c in 0..=self.max_notes {
            if duration && c >= 1 {
                b.q[c] = after.r[c];
            }
            let mut r = r_by_position;
            if pitch && c < self.max_notes {
                r |= after.q[c + 1];
            }
            b.r[c] = r;
        }
        b
    }

    /// Whether `free` masked slots starting a bar (after `Position_0 Tempo` or not) can be
    /// filled exactly: chords, the notes-per-onset limit and the bar's positions all count.
    fn fillable(&self, free: usize, after_tempo: bool) -> bool {
        let run = FreeRun {
            start: 0,
            end: free,
            after_tempo,
        };
        let mut states = self.initial(&run);
        for _ in 0..free {
            states = self.forward(&states, None);
        }
        free == 0 && !after_tempo || states.r.iter().any(|&r| r != 0)
    }

    /// Fills `allowed` for slot `i` of `tokens`. Returns false when the slot is not governed by
    /// the plan (a fixed skeleton slot or outside it), leaving `allowed` untouched.
    pub fn allowed_at(
        &self,
        vocab: &Vocabulary,
        tokens: &[TokenId],
        i: usize,
        allowed: &mut [bool],
    ) -> bool {
        let Some(Some(run_index)) = self.run_of_slot.get(i) else {
            return false;
        };
        let run = self.runs[*run_index as usize];
        let mask = vocab.mask_id();
        let mut before = self.initial(&run);
        for &token in &tokens[run.start..i] {
            before = self.forward(&before, self.slot_class(token, mask));
        }
        let mut after = self.accepting();
        for &token in tokens[i + 1..run.end].iter().rev() {
            after = self.backward(&after, self.slot_class(token, mask));
        }

        let any_r = before.r.iter().fold(0, |acc, m| acc | m);
        let position_ok = (if before.start {
            self.position_mask()
        } else {
            above_lowest(any_r)
        }) & after.p;
        let pitch_ok = (before.p & after.q[1]) != 0
            || (0..self.max_notes).any(|c| before.r[c] & after.q[c + 1] != 0);
        let duration_ok = (1..=self.max_notes).any(|c| before.q[c] & after.r[c] != 0);
        for (id, slot) in allowed.iter_mut().enumerate() {
            *slot = match self.classes.get(id) {
                Some(Class::Position(v)) => *v < 128 && position_ok & bit(*v) != 0,
                Some(Class::Pitch) => pitch_ok && self.pitch_allowed[id],
                Some(Class::Duration) => duration_ok,
                _ => false,
            };
        }
        true
    }
}

/// The fillable bar length nearest `target` in steps of `step`: the smallest growth if the bar
/// has room, else the smallest cut.
fn nearest_fillable(
    constraints: &Constraints,
    target: usize,
    after_tempo: bool,
    step: usize,
) -> Option<usize> {
    // No bar holds more than a position, pitches and durations on every position (+ slack).
    let capacity = constraints.positions_per_bar as usize * (1 + 2 * constraints.max_notes) + 2;
    let longer = (0..)
        .map(|k| target + k * step)
        .take_while(|&f| f <= capacity.max(target));
    let shorter = (1..).map_while(|k| target.checked_sub(k * step));
    longer
        .chain(shorter)
        .find(|&f| constraints.fillable(f, after_tempo))
}

/// Lays out the skeleton for `request`; `length_multiple` is the model's downsampling factor
/// and `max_len` its longest input.
pub fn plan(
    vocab: &Vocabulary,
    request: &PhraseRequest,
    length_multiple: usize,
    max_len: usize,
) -> Result<Plan, PlanError> {
    if request.bars == 0 {
        return Err(PlanError::NoBars);
    }
    let ts = request.time_signature;
    let ts_id = vocab
        .id_of(&format!("TimeSig_{}/{}", ts.numerator, ts.denominator))
        .ok_or(PlanError::UnsupportedMeter(ts))?;
    let mask = vocab.mask_id();
    let tempo_id = request.tempo.and_then(|tempo| {
        let mut best: Option<(f32, TokenId)> = None;
        for (id, token) in vocab.tokens().iter().enumerate() {
            if let Token::Tempo(t) = token {
                if best.is_none_or(|(b, _)| (t - tempo).abs() < (b - tempo).abs()) {
                    best = Some((*t, id as TokenId));
                }
            }
        }
        best.map(|(_, id)| id)
    });
    let position0 = vocab.id_of("Position_0");

    let (low, high) = (
        request.lowest_pitch.min(request.highest_pitch),
        request.lowest_pitch.max(request.highest_pitch),
    );
    let mut classes = Vec::with_capacity(vocab.len());
    let mut pitch_allowed = Vec::with_capacity(vocab.len());
    for token in vocab.tokens() {
        let (class, allowed) = match *token {
            Token::Position(v) => (Class::Position(v), false),
            Token::Pitch(p) => (
                Class::Pitch,
                (low..=high).contains(&p) && request.key.is_none_or(|k| k.contains(p)),
            ),
            Token::Duration { .. } => (Class::Duration, false),
            _ => (Class::Other, false),
        };
        classes.push(class);
        pitch_allowed.push(allowed);
    }
    if !pitch_allowed.iter().any(|a| *a) {
        return Err(PlanError::NoPitches { low, high });
    }
    let mut constraints = Constraints {
        runs: Vec::new(),
        run_of_slot: Vec::new(),
        classes,
        pitch_allowed,
        positions_per_bar: (ts.numerator as u32 * POSITIONS_PER_BEAT).min(128),
        max_notes: request
            .max_notes_per_onset
            .clamp(1, MAX_NOTES_PER_ONSET_LIMIT) as usize,
    };

    let density = if request.notes_per_quarter.is_finite() {
        request.notes_per_quarter.clamp(0.1, 8.0)
    } else {
        1.5
    };
    let per_bar = ((3.0 * density * ts.bar_quarters()).round() as usize).max(3);
    // Free slots per bar: the density's budget, raised to the next length a bar can fill, or
    // lowered to the most it can hold (a dense request on few pitches and positions). Every bar
    // but a first one carrying the tempo is alike, so each kind is searched once.
    let tempo_first = tempo_id.is_some() && position0.is_some();
    let budget = |after_tempo| {
        nearest_fillable(&constraints, per_bar, after_tempo, 1).ok_or(PlanError::NoLayout {
            bars: request.bars,
            multiple: 1,
        })
    };
    let mut bars = vec![(false, budget(false)?); request.bars as usize];
    if tempo_first {
        bars[0] = (true, budget(true)?);
    }
    let skeleton = 2 * bars.len() + if tempo_first { 2 } else { 0 };
    // The model's downsampling needs a multiple of `length_multiple`. One bar absorbs the
    // difference: the last one if it can, else the first (the bars between are like the last):
    // longer if it has room, else shorter (a bar near its capacity, e.g. one note per onset on
    // every position, cannot grow).
    let multiple = length_multiple.max(1);
    let total = skeleton + bars.iter().map(|&(_, free)| free).sum::<usize>();
    let short = (multiple - total % multiple) % multiple;
    if short != 0 {
        let last = bars.len() - 1;
        let candidates = if last == 0 { &[0][..] } else { &[last, 0][..] };
        let adjusted = candidates.iter().find_map(|&i| {
            let (after_tempo, free) = bars[i];
            nearest_fillable(&constraints, free + short, after_tempo, multiple).map(|f| (i, f))
        });
        let Some((i, free)) = adjusted else {
            return Err(PlanError::NoLayout {
                bars: request.bars,
                multiple,
            });
        };
        bars[i].1 = free;
    }
    let mut tokens = Vec::new();
    for &(after_tempo, free) in &bars {
        tokens.push(vocab.bar_id());
        tokens.push(ts_id);
        if after_tempo {
            tokens.push(position0.expect("checked"));
            tokens.push(tempo_id.expect("checked"));
        }
        constraints.runs.push(FreeRun {
            start: tokens.len(),
            end: tokens.len() + free,
            after_tempo,
        });
        tokens.extend(std::iter::repeat_n(mask, free));
    }
    if tokens.len() > max_len {
        return Err(PlanError::TooLong {
            bars: request.bars,
            needed: tokens.len(),
            max: max_len,
        });
    }
    constraints.run_of_slot = vec![None; tokens.len()];
    for (index, run) in constraints.runs.iter().enumerate() {
        for slot in &mut constraints.run_of_slot[run.start..run.end] {
            *slot = Some(index as u32);
        }
    }
    Ok(Plan {
        tokens,
        constraints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_parse() {
        assert_eq!(
            Key::parse("D-minor"),
            Some(Key {
                tonic: 2,
                scale: Scale::Minor
            })
        );
        assert_eq!(
            Key::parse("F#-dorian"),
            Some(Key {
                tonic: 6,
                scale: Scale::Dorian
            })
        );
        assert_eq!(
            Key::parse("Bb major"),
            Some(Key {
                tonic: 10,
                scale: Scale::Major
            })
        );
        assert_eq!(
            Key::parse("Am"),
            Some(Key {
                tonic: 9,
                scale: Scale::Minor
            })
        );
        assert_eq!(
            Key::parse("C"),
            Some(Key {
                tonic: 0,
                scale: Scale::Major
            })
        );
        assert_eq!(Key::parse("H-minor"), None);
        assert_eq!(Key::parse("C-banana"), None);
        assert_eq!(Key::parse(""), None);
        let d_minor = Key::parse("D-minor").unwrap();
        assert!(d_minor.contains(62) && d_minor.contains(65) && d_minor.contains(70));
        assert!(!d_minor.contains(66) && !d_minor.contains(71));
        assert_eq!(d_minor.to_string(), "D-minor");
    }

    #[test]
    fn bit_helpers() {
        assert_eq!(above_lowest(0b0100), !0b0111u128);
        assert_eq!(below_highest(0b0100), 0b0011);
        assert_eq!(above_lowest(0), 0);
        assert_eq!(below_highest(0), 0);
        assert_eq!(below_highest(1u128 << 127), (1u128 << 127) - 1);
    }

    #[test]
    fn plans_fit_the_model() {
        let vocab = Vocabulary::remi_v1();
        for bars in 1..=16 {
            for ts in [(4, 4), (3, 4), (6, 8), (2, 2)] {
                let request = PhraseRequest {
                    bars,
                    time_signature: TimeSignature::new(ts.0, ts.1).unwrap(),
                    ..Default::default()
                };
                let plan = plan(vocab, &request, 4, 4096).unwrap();
                assert_eq!(plan.tokens.len() % 4, 0);
                assert_eq!(
                    plan.tokens.iter().filter(|&&t| t == vocab.bar_id()).count(),
                    bars as usize
                );
                for run in &plan.constraints.runs {
                    assert!(plan
                        .constraints
                        .fillable(run.end - run.start, run.after_tempo));
                }
            }
        }
        let too_long = PhraseRequest {
            bars: 16,
            notes_per_quarter: 8.0,
            ..Default::default()
        };
        assert!(matches!(
            plan(vocab, &too_long, 4, 512),
            Err(PlanError::TooLong { .. })
        ));
        // Regression (found by the sampler property test): one pitch, one note per onset, 2/2
        // at a density that fills the second bar to 45 of its 48 slots; the phrase must still
        // reach a multiple of 4 (the last bar could not grow, so it shrinks).
        let full = PhraseRequest {
            bars: 2,
            time_signature: TimeSignature::new(2, 2).unwrap(),
            notes_per_quarter: 3.556911549127619,
            lowest_pitch: 21,
            highest_pitch: 21,
            key: None,
            max_notes_per_onset: 1,
            ..Default::default()
        };
        let plan_full = plan(vocab, &full, 4, 4096).unwrap();
        assert_eq!(plan_full.tokens.len() % 4, 0);
        for run in &plan_full.constraints.runs {
            assert!(plan_full
                .constraints
                .fillable(run.end - run.start, run.after_tempo));
        }
        let odd = PhraseRequest {
            time_signature: TimeSignature::new(7, 16).unwrap(),
            ..Default::default()
        };
        assert!(matches!(
            plan(vocab, &odd, 4, 512),
            Err(PlanError::UnsupportedMeter(_))
        ));
        let empty = PhraseRequest {
            lowest_pitch: 61,
            highest_pitch: 61,
            key: Key::parse("C"),
            ..Default::default()
        };
        assert!(matches!(
            plan(vocab, &empty, 4, 512),
            Err(PlanError::NoPitches { .. })
        ));
    }
}
