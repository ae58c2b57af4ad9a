//! Constraints that hold by construction: a phrase plan plus per-choice logit masks.
//!
//! The plan fixes only the frame: `Bar TimeSig Position_0 Tempo` opening bar one, and an end
//! marker `Bar TimeSig` after the last bar. Everything between is one run of free slots whose
//! length comes from the density (a mean over the phrase). The model places the bar lines
//! itself: the run must spell bars `(Position (Pitch Duration)+)*` separated by exactly
//! `bars - 1` `Bar TimeSig` pairs, with strictly increasing positions inside each bar, at most
//! `max_notes_per_onset` pitches per position, and pitches in range and key. So a bar can hold a
//! single held note or eight onsets, as real tunes do, and the phrase still has exactly the
//! requested bars.
//!
//! Diffusion fills slots in any order, so a choice must keep a valid completion possible
//! whatever is already known to its left and right. The grammar is a finite automaton whose
//! states are (bar lines so far, phase, position, notes at this onset); for each (count, phase)
//! the reachable positions fit a `u128` bitmask, so forward-reachable and backward-co-reachable
//! state sets cost a few dozen word operations per slot and bar. A token is allowed at a slot
//! when some reachable state before it steps, on that token, into a state from which the rest
//! of the run can still be completed. Hence every sampled sequence decodes with zero skipped
//! tokens. A [`Sweep`] visits the slots of one sampling step left to right, so a whole step
//! costs one backward and one forward pass.

use crate::phrase::TimeSignature;
pub use crate::theory::{Key, Scale};
use crate::vocab::{Token, TokenId, Vocabulary, POSITIONS_PER_BEAT};
use std::ops::Range;

/// Notes per onset never exceed this (the automaton's counter range).
pub const MAX_NOTES_PER_ONSET_LIMIT: u32 = 12;

/// The densities a plan honours (notes per quarter note); others are clamped to them.
pub const NOTES_PER_QUARTER: std::ops::RangeInclusive<f64> = 0.1..=8.0;

/// What the musician asks for.
#[derive(Debug, Clone, PartialEq)]
pub struct PhraseRequest {
    pub bars: u32,
    pub time_signature: TimeSignature,
    /// Quarter notes per minute; written as the tempo token of bar one.
    pub tempo: Option<f32>,
    /// Average notes per quarter note over the phrase; with `tokens_per_note` it sets the
    /// phrase's token budget (a mean: the model spreads it over the bars).
    pub notes_per_quarter: f64,
    /// Tokens a note costs in the style's REMI (a line: Position Pitch Duration, about 3.3;
    /// chords share their Position, about 2.5).
    pub tokens_per_note: f64,
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
            tokens_per_note: 3.0,
            lowest_pitch: 36,
            highest_pitch: 96,
            key: None,
            max_notes_per_onset: 4,
        }
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
///
/// `tokens` ends with an end marker `Bar TimeSig` (the start of the bar after the phrase), so
/// the model sees where the last bar ends; [`Plan::phrase_tokens`] drops it.
#[derive(Debug, Clone)]
pub struct Plan {
    pub tokens: Vec<TokenId>,
    pub constraints: Constraints,
}

impl Plan {
    /// The phrase's own tokens: `tokens` (or a sampled copy) without the end marker.
    pub fn phrase_tokens<'t>(&self, tokens: &'t [TokenId]) -> &'t [TokenId] {
        &tokens[..self.constraints.run.end.min(tokens.len())]
    }
}

/// The free slots, in one run from the end of bar one's skeleton to the end marker.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct FreeRun {
    pub(super) start: usize,
    pub(super) end: usize,
    /// True when the run follows `Position_0 Tempo` (the first onset is at position 0).
    after_tempo: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Class {
    Position(u32),
    Pitch,
    Duration,
    Bar,
    /// The requested meter's `TimeSig` (other meters are `Other`).
    Meter,
    Other,
}

/// The per-choice masks of a [`Plan`].
#[derive(Debug, Clone)]
pub struct Constraints {
    pub(super) run: FreeRun,
    classes: Vec<Class>,
    pitch_allowed: Vec<bool>,
    positions_per_bar: u32,
    pub(super) max_notes: usize,
    /// The run holds bars 1..=bars: `bars - 1` bar lines are the model's to place.
    bars: usize,
    /// Bar line j (1-based) may stand only within `bar_window` slots of where it would be if
    /// every bar held the same number of tokens: bars breathe (a held note, a run of quavers)
    /// but one bar cannot swallow the phrase while others stay empty.
    bar_window: usize,
    /// Edits ([`super::edit`]): each bar line's own (expected run offset, window), replacing the
    /// uniform spread; a kept bar line has its exact offset and window 0.
    pub(super) lines: Vec<(f64, usize)>,
}

/// Automaton states inside one bar at one slot boundary: `start` (right after `Bar TimeSig`),
/// `open` (after `Bar`, before its `TimeSig`), `p` (after a `Position`), `q[c]`/`r[c]` (after the
/// c-th pitch / duration at the current onset); bit `p` = the onset's position.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct States {
    start: bool,
    open: bool,
    p: u128,
    q: [u128; MAX_NOTES_PER_ONSET_LIMIT as usize + 1],
    r: [u128; MAX_NOTES_PER_ONSET_LIMIT as usize + 1],
}

impl States {
    fn any_r(&self) -> u128 {
        self.r.iter().fold(0, |acc, m| acc | m)
    }

    /// A bar may end here: right after its `TimeSig` (an empty bar) or after a note.
    fn complete(&self) -> bool {
        self.start || self.any_r() != 0
    }
}

const EMPTY: States = States {
    start: false,
    open: false,
    p: 0,
    q: [0; MAX_NOTES_PER_ONSET_LIMIT as usize + 1],
    r: [0; MAX_NOTES_PER_ONSET_LIMIT as usize + 1],
};

/// States at one boundary for the counts of bar lines placed so far that can be live there
/// (`live`, see [`Constraints::bands`]); every other count has no state. Keeping only those
/// (one to three of up to 64 counts) is what makes a pass over a long phrase cheap.
#[derive(Debug, Clone, Default)]
struct Counted {
    live: Range<usize>,
    states: Vec<States>,
}

impl Counted {
    fn get(&self, k: usize) -> &States {
        if self.live.contains(&k) {
            &self.states[k - self.live.start]
        } else {
            &EMPTY
        }
    }

    fn get_mut(&mut self, k: usize) -> Option<&mut States> {
        let start = self.live.start;
        self.live.contains(&k).then(|| &mut self.states[k - start])
    }

    /// Empties every state and makes `live` the counts that may hold one (kept allocation).
    fn reset(&mut self, live: Range<usize>) {
        let live = live.start..live.end.max(live.start);
        self.states.clear();
        self.states.resize(live.len(), EMPTY);
        self.live = live;
    }

    fn with(live: Range<usize>) -> Counted {
        let mut c = Counted::default();
        c.reset(live);
        c
    }
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

/// What a slot may be: a known token's class, or anything when masked.
#[derive(Debug, Clone, Copy)]
struct Slot(Option<Class>);

impl Slot {
    fn allows(self, class: Class) -> bool {
        self.0.is_none_or(|c| c == class)
    }

    fn position(self) -> Option<u128> {
        match self.0 {
            None => Some(u128::MAX),
            Some(Class::Position(v)) if v < 128 => Some(bit(v)),
            _ => None,
        }
    }
}

/// Backward states are checkpointed every this many boundaries and recomputed per segment
/// during a sweep, so memory stays O(bars × (len / SEGMENT + SEGMENT)) instead of O(bars × len).
const SEGMENT: usize = 32;

impl Constraints {
    fn position_mask(&self) -> u128 {
        if self.positions_per_bar >= 128 {
            u128::MAX
        } else {
            bit(self.positions_per_bar) - 1
        }
    }

    fn initial(&self) -> Counted {
        let mut s = Counted::with(0..1);
        let first = &mut s.states[0];
        if self.run.after_tempo {
            first.r[0] = bit(0);
        } else {
            first.start = true;
        }
        s
    }

    fn accepting(&self) -> Counted {
        let mut s = Counted::with(self.bars - 1..self.bars);
        let last = &mut s.states[0];
        last.start = true;
        for c in 0..=self.max_notes {
            last.r[c] = self.position_mask();
        }
        s
    }

    /// Where bar line `line` (1-based) would stand and how far from there it may: (expected
    /// run offset, window).
    fn line_window(&self, line: usize) -> (f64, f64) {
        if let Some(&(expected, window)) = self.lines.get(line - 1) {
            return (expected, window as f64);
        }
        let run = self.run.end - self.run.start;
        let content = run.saturating_sub(2 * (self.bars - 1)) as f64 / self.bars as f64;
        (
            line as f64 * content + 2.0 * (line as f64 - 1.0),
            self.bar_window as f64,
        )
    }

    /// For every boundary 0..=len of the run, the counts of placed bar lines that can be live
    /// there: at least the highest line whose window has passed, at most the highest whose
    /// window has begun, with one to spare each side. A state outside is unreachable from the
    /// start (more lines than could stand) or cannot reach the end (a line it lacks can no
    /// longer be placed), and feeds only states outside, so skipping them changes no mask.
    fn bands(&self) -> Vec<Range<usize>> {
        let n = self.run.end - self.run.start;
        // Highest line whose window begins / ends at each offset, then running maxima.
        let (mut could, mut must) = (vec![0usize; n + 1], vec![0usize; n + 1]);
        for line in 1..self.bars {
            let (expected, window) = self.line_window(line);
            let first = (expected - window).ceil().clamp(0.0, n as f64) as usize;
            let last = (expected + window).floor().clamp(0.0, n as f64) as usize;
            could[first] = could[first].max(line);
            must[last] = must[last].max(line);
        }
        for o in 1..=n {
            could[o] = could[o].max(could[o - 1]);
            must[o] = must[o].max(must[o - 1]);
        }
        // Boundary b follows the slots at offsets 0..b.
        (0..=n)
            .map(|b| match b.checked_sub(1) {
                None => 0..2.min(self.bars),
                Some(o) => must[o].saturating_sub(1)..(could[o] + 2).min(self.bars),
            })
            .collect()
    }

    fn slot(&self, token: TokenId, mask: TokenId) -> Slot {
        Slot((token != mask).then(|| {
            self.classes
                .get(token as usize)
                .copied()
                .unwrap_or(Class::Other)
        }))
    }

    /// Whether bar line `line` (1-based) may stand at run offset `offset`.
    fn bar_line_ok(&self, line: usize, offset: usize) -> bool {
        if line == 0 || line >= self.bars {
            return false;
        }
        let (expected, window) = self.line_window(line);
        (offset as f64 - expected).abs() <= window
    }

    /// The states after the slot at run offset `offset` from those before it (`s`), for the
    /// counts in `live` (the band of the boundary after the slot).
    fn forward(
        &self,
        s: &Counted,
        slot: Slot,
        offset: usize,
        live: Range<usize>,
        out: &mut Counted,
    ) {
        // A slot adds at most one bar line.
        out.reset(s.live.start.max(live.start)..(s.live.end + 1).min(live.end));
        for k in s.live.clone() {
            let st = s.get(k);
            let position_ok = if st.start {
                self.position_mask()
            } else {
                above_lowest(st.any_r()) & self.position_mask()
            };
            if let Some(n) = out.get_mut(k) {
                if let Some(allowed) = slot.position() {
                    n.p |= position_ok & allowed;
                }
                if slot.allows(Class::Pitch) {
                    n.q[1] |= st.p;
                    for c in 0..self.max_notes {
                        n.q[c + 1] |= st.r[c];
                    }
                }
                if slot.allows(Class::Duration) {
                    for c in 1..=self.max_notes {
                        n.r[c] |= st.q[c];
                    }
                }
                if slot.allows(Class::Meter) && st.open {
                    n.start = true;
                }
            }
            if slot.allows(Class::Bar) && self.bar_line_ok(k + 1, offset) && st.complete() {
                if let Some(next) = out.get_mut(k + 1) {
                    next.open = true;
                }
            }
        }
    }

    /// The states before the slot at run offset `offset` from those after it (`after`), for
    /// the counts in `live` (the band of the boundary before the slot).
    fn backward(
        &self,
        after: &Counted,
        slot: Slot,
        offset: usize,
        live: Range<usize>,
        out: &mut Counted,
    ) {
        out.reset(after.live.start.saturating_sub(1).max(live.start)..after.live.end.min(live.end));
        let all = self.position_mask();
        for k in out.live.clone() {
            let a = after.get(k);
            let positions = slot.position().map_or(0, |m| a.p & m);
            let bar_next =
                slot.allows(Class::Bar) && self.bar_line_ok(k + 1, offset) && after.get(k + 1).open;
            let Some(b) = out.get_mut(k) else { continue };
            b.start = positions != 0 || bar_next;
            b.open = slot.allows(Class::Meter) && a.start;
            let r_by_position = below_highest(positions);
            let pitch = slot.allows(Class::Pitch);
            if pitch {
                b.p = a.q[1];
            }
            for c in 0..=self.max_notes {
                if slot.allows(Class::Duration) && c >= 1 {
                    b.q[c] = a.r[c];
                }
                let mut r = r_by_position;
                if pitch && c < self.max_notes {
                    r |= a.q[c + 1];
                }
                if bar_next {
                    r |= all;
                }
                b.r[c] = r;
            }
        }
    }

    /// Whether the run, all masked, with `free` slots can spell the phrase.
    fn fillable(&self, free: usize) -> bool {
        // The bar-line windows depend on the run's length: judge this length's layout.
        let mut sized = self.clone();
        sized.run.end = sized.run.start + free;
        sized.fillable_as_is()
    }

    fn fillable_as_is(&self) -> bool {
        let free = self.run.end - self.run.start;
        self.completes(&vec![None; free])
    }

    /// Whether the run with these known tokens (`None`: masked) can be completed.
    pub(super) fn completes_tokens(&self, tokens: &[TokenId], mask: TokenId) -> bool {
        let run: Vec<Option<TokenId>> = tokens[self.run.start..self.run.end]
            .iter()
            .map(|&t| (t != mask).then_some(t))
            .collect();
        self.completes(&run)
    }

    fn completes(&self, run: &[Option<TokenId>]) -> bool {
        let bands = self.bands();
        let mut states = self.initial();
        let mut next = Counted::default();
        for (offset, token) in run.iter().enumerate() {
            let slot = match token {
                Some(t) => self.slot(*t, TokenId::MAX),
                None => Slot(None),
            };
            self.forward(&states, slot, offset, bands[offset + 1].clone(), &mut next);
            std::mem::swap(&mut states, &mut next);
        }
        let accept = self.accepting();
        states.live.clone().any(|k| {
            let (s, a) = (states.get(k), accept.get(k));
            (s.start && a.start) || s.r.iter().zip(&a.r).any(|(x, y)| x & y != 0)
        })
    }

    /// The tokens allowed between forward states `before` and backward states `after`.
    fn allowed_between(
        &self,
        before: &Counted,
        after: &Counted,
        offset: usize,
        allowed: &mut [bool],
    ) {
        let mut positions = 0u128;
        let (mut pitch_ok, mut duration_ok, mut bar_ok, mut meter_ok) =
            (false, false, false, false);
        // Counts without a forward state add nothing.
        for k in before.live.clone() {
            let (f, b) = (before.get(k), after.get(k));
            let position_ok = if f.start {
                self.position_mask()
            } else {
                above_lowest(f.any_r())
            };
            positions |= position_ok & b.p;
            pitch_ok |=
                (f.p & b.q[1]) != 0 || (0..self.max_notes).any(|c| f.r[c] & b.q[c + 1] != 0);
            duration_ok |= (1..=self.max_notes).any(|c| f.q[c] & b.r[c] != 0);
            bar_ok |= self.bar_line_ok(k + 1, offset) && f.complete() && after.get(k + 1).open;
            meter_ok |= f.open && b.start;
        }
        for (id, slot) in allowed.iter_mut().enumerate() {
            *slot = match self.classes.get(id) {
                Some(Class::Position(v)) => *v < 128 && positions & bit(*v) != 0,
                Some(Class::Pitch) => pitch_ok && self.pitch_allowed[id],
                Some(Class::Duration) => duration_ok,
                Some(Class::Bar) => bar_ok,
                Some(Class::Meter) => meter_ok,
                _ => false,
            };
        }
    }

    /// Starts a left-to-right pass over `tokens` (see [`Sweep`]).
    pub fn sweep<'c>(&'c self, vocab: &Vocabulary, tokens: &[TokenId]) -> Sweep<'c> {
        self.sweep_in(vocab, tokens, self.bands())
    }

    /// [`Constraints::sweep`] keeping the counts in `bands` (by boundary).
    fn sweep_in<'c>(
        &'c self,
        vocab: &Vocabulary,
        tokens: &[TokenId],
        bands: Vec<Range<usize>>,
    ) -> Sweep<'c> {
        let mask = vocab.mask_id();
        let run = self.run;
        let n = run.end - run.start;
        // Checkpoints at boundaries run.start + j * SEGMENT (j = 0..) and at run.end.
        let n_checks = n / SEGMENT + 2;
        let mut checkpoints = vec![Counted::default(); n_checks];
        let mut states = self.accepting();
        let mut next = Counted::default();
        checkpoints[n_checks - 1] = states.clone();
        for b in (0..n).rev() {
            self.backward(
                &states,
                self.slot(tokens[run.start + b], mask),
                b,
                bands[b].clone(),
                &mut next,
            );
            std::mem::swap(&mut states, &mut next);
            if b % SEGMENT == 0 {
                checkpoints[b / SEGMENT] = states.clone();
            }
        }
        Sweep {
            constraints: self,
            mask,
            forward: self.initial(),
            scratch: Counted::default(),
            checkpoints,
            bands,
            segment: Vec::new(),
            segment_index: usize::MAX,
            next_slot: run.start,
            snapshot: tokens[run.start..run.end].to_vec(),
        }
    }
}

/// One left-to-right pass of choices over the run. Slots are visited in ascending order; the
/// backward states were computed from the tokens when the pass began, which is exact because a
/// pass only changes slots it has already visited. [`Sweep::allowed`] fills the mask for a
/// slot, [`Sweep::advance`] moves past it with the token it now holds (or MASK). Both must be
/// called for every slot in order; slots outside the run are not governed.
pub struct Sweep<'c> {
    constraints: &'c Constraints,
    mask: TokenId,
    forward: Counted,
    scratch: Counted,
    checkpoints: Vec<Counted>,
    /// [`Constraints::bands`] of the run, by boundary.
    bands: Vec<Range<usize>>,
    /// Backward states for the boundaries of the current segment (index = offset + 1).
    segment: Vec<Counted>,
    segment_index: usize,
    next_slot: usize,
    snapshot: Vec<TokenId>,
}

impl Sweep<'_> {
    /// Whether slot `i` is one the constraints govern.
    pub fn governs(&self, i: usize) -> bool {
        (self.constraints.run.start..self.constraints.run.end).contains(&i)
    }

    /// Advances the forward states from the current slot up to (not including) slot `i`,
    /// reading the known tokens in between from `tokens`.
    fn catch_up(&mut self, tokens: &[TokenId], i: usize) {
        while self.next_slot < i {
            let token = tokens[self.next_slot];
            self.step(token);
        }
    }

    fn step(&mut self, token: TokenId) {
        let c = self.constraints;
        let offset = self.next_slot - c.run.start;
        c.forward(
            &self.forward,
            c.slot(token, self.mask),
            offset,
            self.bands[offset + 1].clone(),
            &mut self.scratch,
        );
        std::mem::swap(&mut self.forward, &mut self.scratch);
        self.next_slot += 1;
    }

    /// Makes the segment holding the backward states after slot `i` current; returns their
    /// index in `self.segment`.
    fn backward_after(&mut self, i: usize) -> usize {
        let c = self.constraints;
        let offset = i - c.run.start; // boundary offset + 1 is what slot i needs
        let seg = offset / SEGMENT;
        if seg != self.segment_index {
            let n = c.run.end - c.run.start;
            let top = ((seg + 1) * SEGMENT).min(n);
            let top_check = if top == n {
                self.checkpoints.len() - 1
            } else {
                seg + 1
            };
            if self.segment.is_empty() {
                self.segment = vec![Counted::default(); SEGMENT];
            }
            // Boundaries seg*S+1 ..= top, from the checkpoint at top downwards.
            let base = seg * SEGMENT;
            self.segment[top - base - 1].clone_from(&self.checkpoints[top_check]);
            for b in (base + 2..=top).rev() {
                let (lower, upper) = self.segment.split_at_mut(b - base - 1);
                let slot = c.slot(self.snapshot[b - 1], self.mask);
                let live = self.bands[b - 1].clone();
                c.backward(&upper[0], slot, b - 1, live, &mut lower[b - base - 2]);
            }
            self.segment_index = seg;
        }
        offset - seg * SEGMENT
    }

    /// Fills `allowed` for slot `i` (ascending across calls; every slot of the run before `i`
    /// already holds what the pass put there). Returns false for slots outside the run.
    pub fn allowed(&mut self, tokens: &[TokenId], i: usize, allowed: &mut [bool]) -> bool {
        if !self.governs(i) || i < self.next_slot {
            return false;
        }
        self.catch_up(tokens, i);
        let index = self.backward_after(i);
        self.constraints.allowed_between(
            &self.forward,
            &self.segment[index],
            i - self.constraints.run.start,
            allowed,
        );
        true
    }

    /// Moves past slot `i`, which now holds `token` (MASK if it stays free).
    pub fn advance(&mut self, tokens: &[TokenId], i: usize, token: TokenId) {
        if !self.governs(i) || i < self.next_slot {
            return;
        }
        self.catch_up(tokens, i);
        self.step(token);
    }
}

/// Lays out the skeleton for `request`; `length_multiple` is the model's downsampling factor
/// and `max_len` its longest input.
///
/// Layout: `Bar TimeSig [Position_0 Tempo]`, then one run of free slots holding all bars (the
/// model places the `Bar TimeSig` lines between them, exactly `bars - 1`, so each bar holds as
/// many notes as the music wants), then the end marker `Bar TimeSig`. The density sets the
/// run's length (a mean over the phrase, not a per-bar quota), at `tokens_per_note` a note.
pub fn plan(
    vocab: &Vocabulary,
    request: &PhraseRequest,
    length_multiple: usize,
    max_len: usize,
) -> Result<Plan, PlanError> {
    let Base {
        mut constraints,
        ts_id,
        head_tokens,
        per_note,
        density,
    } = base(vocab, request)?;
    let head = head_tokens.len();
    let ts = request.time_signature;
    let bars = request.bars as usize;
    let mask = vocab.mask_id();
    // The notes' tokens plus the model's bar lines.
    let notes = density * ts.bar_quarters() * bars as f64;
    let target = (per_note * notes).round() as usize + 2 * (bars - 1);
    // Bars breathe within ±40 % of the mean bar (real tunes: 7.4 ± 2.3 onsets a bar), and
    // never less than a note's worth.
    let mean_bar = (per_note * notes / bars as f64).max(1.0);
    constraints.bar_window = window_for(mean_bar);
    // The whole sequence (head + run + end marker) must be a multiple of the model's stride;
    // take the nearest such run length the grammar can fill, growth first.
    let multiple = length_multiple.max(1);
    let fits = |free: usize| (head + free + 2).is_multiple_of(multiple);
    let search = 64 * multiple;
    if head + target.saturating_sub(search) + 2 > max_len {
        // Far beyond the model: refuse before searching layouts of that length.
        return Err(PlanError::TooLong {
            bars: request.bars,
            needed: head + target + 2,
            max: max_len,
        });
    }
    // A run of only bar lines is a phrase of empty bars: however low the density, leave room
    // for at least one note (every other token of the run belongs to a note).
    let lines = 2 * (bars - 1);
    let free = (0..=search)
        .flat_map(|d| [target.checked_add(d), target.checked_sub(d)])
        .flatten()
        .filter(|&f| f > lines && fits(f))
        .find(|&f| constraints.fillable(f))
        .ok_or(PlanError::NoLayout {
            bars: request.bars,
            multiple,
        })?;
    let total = head + free + 2;
    if total > max_len {
        return Err(PlanError::TooLong {
            bars: request.bars,
            needed: total,
            max: max_len,
        });
    }
    let mut tokens = Vec::with_capacity(total);
    tokens.extend(&head_tokens);
    tokens.extend(std::iter::repeat_n(mask, free));
    tokens.extend([vocab.bar_id(), ts_id]);
    constraints.run.end = head + free;
    Ok(Plan {
        tokens,
        constraints,
    })
}

/// The window a bar line gets around its expected place, for bars of `mean_bar` tokens.
pub(super) fn window_for(mean_bar: f64) -> usize {
    ((0.4 * mean_bar).round() as usize).max(3)
}

/// What every layout of a request shares: the per-choice tables and the head of bar one.
pub(super) struct Base {
    /// With an empty run starting after the head.
    pub constraints: Constraints,
    pub ts_id: TokenId,
    /// `Bar TimeSig [Position_0 Tempo]`.
    pub head_tokens: Vec<TokenId>,
    /// Tokens a note costs.
    pub per_note: f64,
    /// Notes per quarter note.
    pub density: f64,
}

pub(super) fn base(vocab: &Vocabulary, request: &PhraseRequest) -> Result<Base, PlanError> {
    if request.bars == 0 {
        return Err(PlanError::NoBars);
    }
    let ts = request.time_signature;
    let ts_id = vocab
        .id_of(&format!("TimeSig_{}/{}", ts.numerator, ts.denominator))
        .ok_or(PlanError::UnsupportedMeter(ts))?;
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
    for (id, token) in vocab.tokens().iter().enumerate() {
        let (class, allowed) = match *token {
            Token::Position(v) => (Class::Position(v), false),
            Token::Pitch(p) => (
                Class::Pitch,
                (low..=high).contains(&p) && request.key.is_none_or(|k| k.contains(p)),
            ),
            Token::Duration { .. } => (Class::Duration, false),
            Token::Bar => (Class::Bar, false),
            Token::TimeSig(_) if id as TokenId == ts_id => (Class::Meter, false),
            _ => (Class::Other, false),
        };
        classes.push(class);
        pitch_allowed.push(allowed);
    }
    if !pitch_allowed.iter().any(|a| *a) {
        return Err(PlanError::NoPitches { low, high });
    }
    let bars = request.bars as usize;
    let tempo_first = tempo_id.is_some() && position0.is_some();
    let head = if tempo_first { 4 } else { 2 };
    let constraints = Constraints {
        run: FreeRun {
            start: head,
            end: head,
            after_tempo: tempo_first,
        },
        classes,
        pitch_allowed,
        positions_per_bar: (ts.numerator as u32 * POSITIONS_PER_BEAT).min(128),
        max_notes: request
            .max_notes_per_onset
            .clamp(1, MAX_NOTES_PER_ONSET_LIMIT) as usize,
        bars,
        bar_window: 0,
        lines: Vec::new(),
    };

    let density = if request.notes_per_quarter.is_finite() {
        request
            .notes_per_quarter
            .clamp(*NOTES_PER_QUARTER.start(), *NOTES_PER_QUARTER.end())
    } else {
        1.5
    };
    let per_note = if request.tokens_per_note.is_finite() {
        request.tokens_per_note.clamp(2.0, 3.0 + 1.0)
    } else {
        3.0
    };
    let mut head_tokens = vec![vocab.bar_id(), ts_id];
    if tempo_first {
        head_tokens.extend([position0.expect("checked"), tempo_id.expect("checked")]);
    }
    Ok(Base {
        constraints,
        ts_id,
        head_tokens,
        per_note,
        density,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live bands change no mask: a pass keeping every bar-line count at every boundary
    /// allows exactly the same tokens, slot by slot, over partly decided runs of long and
    /// short phrases, meters and edit-style kept bar lines.
    #[test]
    fn live_bands_allow_exactly_what_every_count_allows() {
        let vocab = Vocabulary::remi_v1();
        let mask = vocab.mask_id();
        let mut rng = crate::sampler::SplitMix64::new(5);
        for (bars, meter, density) in [(64, (4, 4), 2.48), (16, (3, 4), 1.0), (5, (6, 8), 3.0)] {
            let request = PhraseRequest {
                bars,
                time_signature: TimeSignature::new(meter.0, meter.1).unwrap(),
                notes_per_quarter: density,
                ..Default::default()
            };
            let plan = plan(vocab, &request, 4, 4096).unwrap();
            let c = &plan.constraints;
            let n = c.run.end - c.run.start;
            let every = vec![0..c.bars; n + 1];
            // Decide about a third of the run left to right with allowed tokens (uniform
            // choices), the rest stays MASK.
            let mut tokens = plan.tokens.clone();
            let mut allowed = vec![false; vocab.len()];
            let mut sweep = c.sweep(vocab, &tokens);
            for i in c.run.start..c.run.end {
                let mut token = mask;
                if sweep.allowed(&tokens, i, &mut allowed) && rng.uniform() < 0.35 {
                    let ids: Vec<usize> = (0..allowed.len()).filter(|&v| allowed[v]).collect();
                    if !ids.is_empty() {
                        token = ids[(rng.uniform() * ids.len() as f64) as usize] as TokenId;
                    }
                }
                tokens[i] = token;
                sweep.advance(&tokens, i, token);
            }
            let (mut banded, mut full) =
                (c.sweep(vocab, &tokens), c.sweep_in(vocab, &tokens, every));
            let (mut a, mut b) = (vec![false; vocab.len()], vec![false; vocab.len()]);
            let mut checked = 0;
            for i in c.run.start..c.run.end {
                if tokens[i] == mask {
                    assert_eq!(
                        banded.allowed(&tokens, i, &mut a),
                        full.allowed(&tokens, i, &mut b)
                    );
                    assert_eq!(a, b, "{bars} bars, slot {i}");
                    assert!(
                        a.iter().any(|&x| x),
                        "{bars} bars, slot {i}: nothing allowed"
                    );
                    checked += 1;
                }
                banded.advance(&tokens, i, tokens[i]);
                full.advance(&tokens, i, tokens[i]);
            }
            assert!(checked > n / 2, "{checked} of {n}");
            let free: Vec<Option<TokenId>> = tokens[c.run.start..c.run.end]
                .iter()
                .map(|&t| (t != mask).then_some(t))
                .collect();
            assert!(c.completes(&free));
        }
    }

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
                for density in [0.3, 1.5, 4.0] {
                    let request = PhraseRequest {
                        bars,
                        time_signature: TimeSignature::new(ts.0, ts.1).unwrap(),
                        notes_per_quarter: density,
                        ..Default::default()
                    };
                    let plan = plan(vocab, &request, 4, 4096).unwrap();
                    assert_eq!(plan.tokens.len() % 4, 0);
                    // The phrase's own bar line plus the end marker's.
                    assert_eq!(
                        plan.tokens.iter().filter(|&&t| t == vocab.bar_id()).count(),
                        2
                    );
                    let run = plan.constraints.run;
                    assert!(plan.constraints.fillable(run.end - run.start));
                    assert_eq!(plan.phrase_tokens(&plan.tokens).len(), run.end);
                    // The run's length follows the density (about 3 tokens a note).
                    let notes = density * request.time_signature.bar_quarters() * bars as f64;
                    let expected = request.tokens_per_note * notes + 2.0 * (bars as f64 - 1.0);
                    assert!(
                        ((run.end - run.start) as f64 - expected).abs() <= 8.0,
                        "{bars} bars {ts:?} density {density}: run {}",
                        run.end - run.start
                    );
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
        // One pitch, one note per onset: every bar's content is a multiple of 3 tokens, and the
        // sequence must still reach a multiple of 4.
        let sparse_grammar = PhraseRequest {
            bars: 2,
            time_signature: TimeSignature::new(2, 2).unwrap(),
            notes_per_quarter: 3.556911549127619,
            lowest_pitch: 21,
            highest_pitch: 21,
            key: None,
            max_notes_per_onset: 1,
            ..Default::default()
        };
        let p = plan(vocab, &sparse_grammar, 4, 4096).unwrap();
        assert_eq!(p.tokens.len() % 4, 0);
        assert!(p
            .constraints
            .fillable(p.constraints.run.end - p.constraints.run.start));
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

    /// Lengths the grammar cannot spell are refused by `fillable`: with one bar, one note per
    /// onset, a bar's content is 0 or a multiple of 3 tokens.
    #[test]
    fn fillable_follows_the_grammar() {
        let vocab = Vocabulary::remi_v1();
        let request = PhraseRequest {
            bars: 1,
            tempo: None,
            max_notes_per_onset: 1,
            ..Default::default()
        };
        let c = plan(vocab, &request, 1, 4096).unwrap().constraints;
        let ok: Vec<usize> = (0..10).filter(|&n| c.fillable(n)).collect();
        assert_eq!(ok, vec![0, 3, 6, 9]);
        // Two bars: a bar line (2 tokens) must fit between them.
        let two = plan(vocab, &PhraseRequest { bars: 2, ..request }, 1, 4096)
            .unwrap()
            .constraints;
        let ok: Vec<usize> = (0..9).filter(|&n| two.fillable(n)).collect();
        assert_eq!(ok, vec![2, 5, 8]);
    }
}
