//! Transport-locked playback: phrase + host transport → sample-accurate note events.
//!
//! Runs on the audio thread: no allocation, no locks, bounded work per block (at most
//! [`MAX_EVENTS_PER_BLOCK`] events, [`MAX_BARS_PER_BLOCK`] bars and [`MAX_SEGMENTS`] loop
//! wraps per block).
//!
//! # Timing model
//! - The phrase is anchored to the host's bar grid: phrase bar `k = n mod len` plays in host
//!   bar `n` (loop mode), so a phrase generated at any moment lands on the grid.
//! - Each block covers the half-open beat interval `[start, end)`. While the transport runs
//!   continuously, `start` is exactly the previous block's `end`, so every onset has exactly one
//!   owner block whatever the rounding; its sample offset is `round((beat - host_pos) * spq)`,
//!   clamped into the block.
//! - A host position that differs from the expected one by more than [`RELOCATE_THRESHOLD`]
//!   beats is a relocation: every sounding note is released at sample 0. Hosts quantise
//!   positions (Ardour: 1/1920 beat): differences up to half the threshold are taken as
//!   rounding and the scheduler continues its own timeline, so onsets stay sample-exact.
//! - Stop, relocation, a loop wrap (also one inside a block), a phrase change, mode Off and
//!   deactivation release every sounding note. Every note-on gets exactly one note-off.
//! - Garbage transport (NaN, zero or absurd tempo, sample rate or position) plays nothing and
//!   releases what sounds.

use std::borrow::Borrow;

use crate::phrase::{Phrase, TimeSignature, PPQ};

/// Hard cap on events in one block; note-offs for everything sounding always fit.
pub const MAX_EVENTS_PER_BLOCK: usize = 1024;
/// Host bars a single block may cover before the rest of the block is left silent.
pub const MAX_BARS_PER_BLOCK: u32 = 256;
/// Loop wraps handled inside one block (a tiny loop in a huge block stays bounded).
pub const MAX_SEGMENTS: usize = 16;
/// Host position jitter tolerated before a jump counts as relocation, in quarter notes.
pub const RELOCATE_THRESHOLD: f64 = 1.0 / 960.0;
/// Loops shorter than this (quarter notes) are treated as no loop.
pub const MIN_LOOP_LENGTH: f64 = 1.0 / 16.0;

/// The host transport at the first sample of a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Transport {
    pub playing: bool,
    pub sample_rate: f64,
    /// Quarter notes per minute.
    pub tempo: f64,
    /// Song position in quarter notes.
    pub pos_beats: f64,
    /// Song position of the current bar's downbeat, when the host reports it.
    pub bar_start_beats: Option<f64>,
    /// 0-based index of that bar.
    pub bar_number: Option<i64>,
    /// Host meter as reported (validated before use).
    pub time_sig_numerator: i32,
    pub time_sig_denominator: i32,
    /// Active loop, in quarter notes.
    pub loop_range: Option<(f64, f64)>,
}

impl Transport {
    /// A running transport in 4/4 with no bar information and no loop.
    pub fn playing_at(sample_rate: f64, tempo: f64, pos_beats: f64) -> Transport {
        Transport {
            playing: true,
            sample_rate,
            tempo,
            pos_beats,
            bar_start_beats: None,
            bar_number: None,
            time_sig_numerator: 4,
            time_sig_denominator: 4,
            loop_range: None,
        }
    }

    /// The host meter, or 4/4 when it reports none that is valid.
    pub fn time_signature(&self) -> TimeSignature {
        let n = u8::try_from(self.time_sig_numerator).ok();
        let d = u8::try_from(self.time_sig_denominator).ok();
        n.zip(d)
            .and_then(|(n, d)| TimeSignature::new(n, d))
            .unwrap_or_default()
    }

    /// Song position of bar 0 for bars of `bar` quarter notes, from the host's bar start and
    /// bar number; 0 when the host reports none or nonsense.
    pub fn bar_origin(&self, bar: f64) -> f64 {
        match (self.bar_start_beats, self.bar_number) {
            (Some(start), Some(number)) if start.is_finite() && number.unsigned_abs() < 1 << 40 => {
                let origin = start - number as f64 * bar;
                if origin.is_finite() && origin.abs() < 1e8 {
                    origin
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }

    /// Whether the block's rate, tempo and position are usable at all.
    pub fn is_sane(&self) -> bool {
        self.sample_rate.is_finite()
            && (1_000.0..=1_000_000.0).contains(&self.sample_rate)
            && self.tempo.is_finite()
            && (1.0..=5_000.0).contains(&self.tempo)
            && self.pos_beats.is_finite()
            && self.pos_beats.abs() < 1e8
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NoteEventKind {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NoteEvent {
    /// Offset inside the block, `< block_len`.
    pub sample: u32,
    pub kind: NoteEventKind,
    pub pitch: u8,
    pub velocity: u8,
}

/// Fixed-capacity event list filled by [`Scheduler::process`]; allocated once, off the audio
/// thread.
#[derive(Debug, Clone)]
pub struct EventBuffer {
    events: Vec<NoteEvent>,
}

impl Default for EventBuffer {
    fn default() -> Self {
        EventBuffer {
            events: Vec::with_capacity(MAX_EVENTS_PER_BLOCK),
        }
    }
}

impl EventBuffer {
    pub fn as_slice(&self) -> &[NoteEvent] {
        &self.events
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    pub fn clear(&mut self) {
        self.events.clear();
    }

    fn push(&mut self, event: NoteEvent) {
        // The scheduler's budget keeps this below capacity; the check makes overflow silent
        // rather than an allocation on the audio thread.
        if self.events.len() < MAX_EVENTS_PER_BLOCK {
            self.events.push(event);
        }
    }
}

/// How the phrase maps onto host bars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaybackMode {
    /// Phrase bar `n mod len` in host bar `n`, forever.
    #[default]
    Loop,
    /// Once, starting at the first bar line after the phrase arrives or the mode is chosen.
    Once,
    /// Silent.
    Off,
}

/// When a newly offered phrase replaces the playing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SwitchMode {
    #[default]
    NextBar,
    Immediately,
}

#[derive(Debug, Clone, Copy)]
struct Sounding {
    /// Song position (quarter notes) of the note's end.
    end: f64,
}

/// Per-block geometry, computed once per block.
#[derive(Debug, Clone, Copy)]
struct Grid {
    /// Samples per quarter note.
    spq: f64,
    /// Song position of host bar 0.
    origin: f64,
    /// Host bar length in quarter notes.
    bar: f64,
    block_len: u32,
}

impl Grid {
    fn bar_index(&self, q: f64) -> i64 {
        ((q - self.origin) / self.bar).floor() as i64
    }

    fn bar_start(&self, n: i64) -> f64 {
        self.origin + n as f64 * self.bar
    }
}

/// Maps song positions of one block segment to sample offsets.
#[derive(Debug, Clone, Copy)]
struct Segment {
    /// Beat range owned by this segment.
    from: f64,
    to: f64,
    /// `sample(q) = s0 + (q - q0) * spq`.
    q0: f64,
    s0: f64,
}

impl Segment {
    fn sample(&self, q: f64, grid: &Grid) -> u32 {
        let s = (self.s0 + (q - self.q0) * grid.spq + 0.5).floor();
        s.clamp(0.0, (grid.block_len - 1) as f64) as u32
    }
}

/// Walks the phrase's onsets bar by bar inside one segment.
#[derive(Debug, Clone, Copy)]
struct Onsets {
    bar: i64,
    /// Index into `phrase.notes` of the next candidate, and the end of this bar's notes.
    next: usize,
    end: usize,
    bars_walked: u32,
}

/// Plays one phrase at a time, locked to the host's bars. `P` is how the caller owns phrases
/// (e.g. `Arc<Phrase>`); the scheduler never drops one on the audio thread: replaced phrases
/// wait in a retire slot until [`Scheduler::take_retired`].
pub struct Scheduler<P> {
    current: Option<P>,
    pending: Option<(P, SwitchMode)>,
    retired: Option<P>,
    mode: PlaybackMode,
    /// `Once` mode: the host bar where the phrase starts, set at the first bar line after
    /// arming.
    once_start: Option<i64>,
    once_armed: bool,
    sounding: [Option<Sounding>; 128],
    sounding_count: usize,
    /// While playing continuously: the host position expected at the next block, and the
    /// song position up to which onsets have been handled.
    expected: Option<(f64, f64)>,
    /// Set when a bar-line switch could not happen this block (retire slot full).
    switch_blocked: bool,
    /// The last block's bar geometry; `None` while stopped or on a garbage transport.
    grid: Option<Grid>,
    /// Where the current phrase is at the end of the last block, in quarter notes.
    playhead: Option<f64>,
}

impl<P: Borrow<Phrase>> Default for Scheduler<P> {
    fn default() -> Self {
        Self::new()
    }
}

impl<P: Borrow<Phrase>> Scheduler<P> {
    pub fn new() -> Self {
        Scheduler {
            current: None,
            pending: None,
            retired: None,
            mode: PlaybackMode::Loop,
            once_start: None,
            once_armed: false,
            sounding: [None; 128],
            sounding_count: 0,
            expected: None,
            switch_blocked: false,
            grid: None,
            playhead: None,
        }
    }

    /// The position inside the current phrase (quarter notes from its start) at the end of the
    /// last block; `None` when it is not playing: stopped, Off, Once before its first bar or
    /// after its last.
    pub fn playhead(&self) -> Option<f64> {
        self.playhead
    }

    pub fn current(&self) -> Option<&P> {
        self.current.as_ref()
    }

    pub fn pending(&self) -> Option<&P> {
        self.pending.as_ref().map(|(p, _)| p)
    }

    pub fn mode(&self) -> PlaybackMode {
        self.mode
    }

    /// Number of notes currently sounding (on sent, off not yet sent).
    pub fn sounding(&self) -> usize {
        self.sounding_count
    }

    pub fn set_mode(&mut self, mode: PlaybackMode) {
        if mode != self.mode {
            self.mode = mode;
            self.once_start = None;
            self.once_armed = mode == PlaybackMode::Once;
        }
    }

    /// Queues `phrase` to take over; returns a previously queued phrase it displaced.
    pub fn offer(&mut self, phrase: P, switch: SwitchMode) -> Option<P> {
        self.pending.replace((phrase, switch)).map(|(p, _)| p)
    }

    /// A phrase replaced by a newer one; the caller drops or recycles it off the audio thread.
    pub fn take_retired(&mut self) -> Option<P> {
        self.retired.take()
    }

    /// Releases everything that sounds at sample 0 (deactivation, reset) and forgets the
    /// transport, so the next block starts fresh.
    pub fn release_all(&mut self, out: &mut EventBuffer) {
        out.clear();
        self.release_all_at(0, out);
        self.expected = None;
    }

    fn release_all_at(&mut self, sample: u32, out: &mut EventBuffer) {
        if self.sounding_count == 0 {
            return;
        }
        for pitch in 0..128u8 {
            if self.sounding[pitch as usize].take().is_some() {
                out.push(NoteEvent {
                    sample,
                    kind: NoteEventKind::Off,
                    pitch,
                    velocity: 0,
                });
            }
        }
        self.sounding_count = 0;
    }

    /// Moves the pending phrase in. Returns false if the retire slot is still occupied.
    fn switch_phrase(&mut self) -> bool {
        if self.pending.is_none() || self.retired.is_some() {
            return false;
        }
        let (next, _) = self.pending.take().expect("checked above");
        self.retired = self.current.replace(next);
        if self.mode == PlaybackMode::Once {
            self.once_start = None;
            self.once_armed = true;
        }
        true
    }

    /// Produces this block's events into `out` (cleared first), sorted by sample.
    pub fn process(&mut self, transport: &Transport, block_len: u32, out: &mut EventBuffer) {
        self.process_block(transport, block_len, out);
        self.playhead = match (self.grid, self.expected) {
            (Some(grid), Some((host_pos, _))) => {
                let bar = grid.bar_index(host_pos);
                self.phrase_bar(bar)
                    .map(|k| k as f64 * grid.bar + (host_pos - grid.bar_start(bar)))
            }
            _ => None,
        };
    }

    fn process_block(&mut self, transport: &Transport, block_len: u32, out: &mut EventBuffer) {
        out.clear();
        self.switch_blocked = false;
        if block_len == 0 {
            return;
        }
        self.grid = None;
        if !transport.playing || !transport.is_sane() {
            self.release_all_at(0, out);
            self.expected = None;
            self.switch_phrase();
            return;
        }
        if self.mode == PlaybackMode::Off {
            self.release_all_at(0, out);
        }

        let ts = transport.time_signature();
        let bar = ts.bar_quarters();
        let origin = transport.bar_origin(bar);
        let grid = Grid {
            spq: transport.sample_rate * 60.0 / transport.tempo,
            origin,
            bar,
            block_len,
        };
        self.grid = Some(grid);
        let threshold = RELOCATE_THRESHOLD.max(2.0 / grid.spq);
        let reported = transport.pos_beats;
        // Hosts report rounded positions (Ardour: to 1/1920 beat, up to ±6 samples at 120 bpm
        // and 48 kHz). A difference within half the relocation threshold is that rounding: the
        // timeline continues from where the previous block ended, so onsets stay
        // sample-exact. A larger one (drift) follows the host without releasing notes; beyond
        // the threshold it is a relocation.
        let (pos, start) = match self.expected {
            Some((host_pos, owned_from)) if (host_pos - reported).abs() <= threshold => {
                let rounding = (host_pos - reported).abs() <= threshold / 2.0;
                (if rounding { host_pos } else { reported }, owned_from)
            }
            _ => {
                self.release_all_at(0, out);
                (reported, reported)
            }
        };

        // Sample offsets round to nearest, so this block owns the beats whose rounded sample is
        // in [0, block_len): up to half a sample before its end. The next block continues from
        // exactly there, so no onset is skipped or played twice whatever the rounding.
        let host_end = pos + block_len as f64 / grid.spq;
        let own_end = pos + (block_len as f64 - 0.5) / grid.spq;
        if matches!(self.pending, Some((_, SwitchMode::Immediately))) || self.current.is_none() {
            self.release_all_at(0, out);
            self.switch_phrase();
        }

        let loop_range = transport
            .loop_range
            .filter(|(a, b)| a.is_finite() && b.is_finite() && b - a >= MIN_LOOP_LENGTH);

        let mut segment = Segment {
            from: start,
            to: own_end,
            q0: pos,
            s0: 0.0,
        };
        let mut host_end = host_end;
        for _ in 0..MAX_SEGMENTS {
            let wrap = loop_range.filter(|&(_, end)| segment.from < end && host_end > end);
            let Some((loop_start, loop_end)) = wrap else {
                self.run_segment(&segment, &grid, out);
                self.expected = Some((host_end, segment.to));
                return;
            };
            let owned_end = segment.to;
            segment.to = loop_end;
            self.run_segment(&segment, &grid, out);
            let wrap_sample = segment.s0 + (loop_end - segment.q0) * grid.spq;
            self.release_all_at(segment.sample(loop_end, &grid), out);
            segment = Segment {
                from: loop_start,
                to: loop_start + (owned_end - loop_end),
                q0: loop_start,
                s0: wrap_sample,
            };
            host_end = loop_start + (host_end - loop_end);
        }
        // Too many wraps in one block: stay silent for the rest of it and resync next block.
        self.release_all_at(block_len - 1, out);
        self.expected = None;
    }

    fn phrase_bar(&self, host_bar: i64) -> Option<u32> {
        let phrase: &Phrase = self.current.as_ref()?.borrow();
        let len = phrase.bars.max(1) as i64;
        match self.mode {
            PlaybackMode::Loop => Some(host_bar.rem_euclid(len) as u32),
            PlaybackMode::Once => {
                let offset = host_bar - self.once_start?;
                (0..len).contains(&offset).then_some(offset as u32)
            }
            PlaybackMode::Off => None,
        }
    }

    /// Positions the onset walker at the first note at or after `q`.
    fn seek_onsets(&self, q: f64, grid: &Grid) -> Onsets {
        let bar = grid.bar_index(q);
        let mut onsets = self.bar_onsets(bar, grid);
        if let Some(phrase) = self.current.as_ref() {
            let notes = &phrase.borrow().notes;
            let bar_start = grid.bar_start(bar);
            let first_tick = self
                .phrase_bar(bar)
                .map_or(0, |k| k * phrase.borrow().time_signature.bar_ticks());
            let range = onsets.next..onsets.end;
            let skip = notes[range]
                .partition_point(|n| bar_start + (n.start - first_tick) as f64 / (PPQ as f64) < q);
            onsets.next += skip;
        }
        onsets
    }

    fn bar_onsets(&self, bar: i64, _grid: &Grid) -> Onsets {
        let empty = Onsets {
            bar,
            next: 0,
            end: 0,
            bars_walked: 0,
        };
        let (Some(phrase), Some(k)) = (self.current.as_ref(), self.phrase_bar(bar)) else {
            return empty;
        };
        let phrase = phrase.borrow();
        let bar_ticks = phrase.time_signature.bar_ticks();
        let range = phrase.notes_starting_in(k * bar_ticks, (k + 1) * bar_ticks);
        Onsets {
            bar,
            next: range.start,
            end: range.end,
            bars_walked: 0,
        }
    }

    /// The next onset before `limit`: (song position, end position, pitch, velocity).
    fn peek_onset(
        &self,
        onsets: &mut Onsets,
        limit: f64,
        grid: &Grid,
    ) -> Option<(f64, f64, u8, u8)> {
        let phrase = self.current.as_ref()?.borrow();
        loop {
            let bar_start = grid.bar_start(onsets.bar);
            if bar_start >= limit {
                return None;
            }
            if onsets.next < onsets.end {
                if let Some(k) = self.phrase_bar(onsets.bar) {
                    let note = phrase.notes[onsets.next];
                    let first_tick = k * phrase.time_signature.bar_ticks();
                    let at = bar_start + (note.start - first_tick) as f64 / PPQ as f64;
                    // Notes past the host bar's end (phrase bar longer than the host's) are
                    // not played.
                    if at < bar_start + grid.bar {
                        if at >= limit {
                            return None;
                        }
                        let end = at + note.length as f64 / PPQ as f64;
                        return Some((at, end, note.pitch, note.velocity));
                    }
                }
            }
            onsets.bars_walked += 1;
            if onsets.bars_walked > MAX_BARS_PER_BLOCK {
                return None;
            }
            let walked = onsets.bars_walked;
            *onsets = self.bar_onsets(onsets.bar + 1, grid);
            onsets.bars_walked = walked;
        }
    }

    fn earliest_release(&self, limit: f64) -> Option<(f64, u8)> {
        if self.sounding_count == 0 {
            return None;
        }
        let mut best: Option<(f64, u8)> = None;
        for (pitch, s) in self.sounding.iter().enumerate() {
            if let Some(s) = s {
                if s.end < limit && best.is_none_or(|(end, _)| s.end < end) {
                    best = Some((s.end, pitch as u8));
                }
            }
        }
        best
    }

    /// Emits the events of `[segment.from, segment.to)` in time order.
    fn run_segment(&mut self, segment: &Segment, grid: &Grid, out: &mut EventBuffer) {
        let limit = segment.to;
        let mut cursor = segment.from;
        let mut onsets = self.seek_onsets(cursor, grid);
        // Every iteration emits or consumes something; this bound is never reached in practice.
        for _ in 0..(4 * MAX_EVENTS_PER_BLOCK + 2 * MAX_BARS_PER_BLOCK as usize) {
            let release = self.earliest_release(limit);
            let wants_bar_line = !self.switch_blocked
                && (matches!(self.pending, Some((_, SwitchMode::NextBar)))
                    || (self.mode == PlaybackMode::Once && self.once_armed));
            let bar_line = wants_bar_line
                .then(|| {
                    let n = ((cursor - grid.origin) / grid.bar).ceil() as i64;
                    (n, grid.bar_start(n))
                })
                .filter(|&(_, at)| at < limit);
            let onset = self.peek_onset(&mut onsets, limit, grid);

            // Earliest first; at equal times: release, then bar line, then onset.
            let release_at = release.map_or(f64::INFINITY, |(at, _)| at.max(cursor));
            let bar_at = bar_line.map_or(f64::INFINITY, |(_, at)| at);
            let onset_at = onset.map_or(f64::INFINITY, |(at, ..)| at);
            if release_at.is_infinite() && bar_at.is_infinite() && onset_at.is_infinite() {
                return;
            }
            if release_at <= bar_at && release_at <= onset_at {
                let (_, pitch) = release.expect("finite time implies an event");
                self.sounding[pitch as usize] = None;
                self.sounding_count -= 1;
                out.push(NoteEvent {
                    sample: segment.sample(release_at, grid),
                    kind: NoteEventKind::Off,
                    pitch,
                    velocity: 0,
                });
                cursor = release_at;
            } else if bar_at <= onset_at {
                let (n, at) = bar_line.expect("finite time implies a bar line");
                cursor = at;
                if matches!(self.pending, Some((_, SwitchMode::NextBar))) {
                    self.release_all_at(segment.sample(at, grid), out);
                    if !self.switch_phrase() {
                        self.switch_blocked = true;
                    }
                }
                if self.mode == PlaybackMode::Once && self.once_armed {
                    self.once_armed = false;
                    self.once_start = Some(n);
                }
                onsets = self.seek_onsets(at, grid);
            } else {
                let (at, end, pitch, velocity) = onset.expect("finite time implies an onset");
                onsets.next += 1;
                cursor = at;
                // Room for this on, a retrigger off, and the offs of everything sounding.
                if out.len() + self.sounding_count + 2 > MAX_EVENTS_PER_BLOCK {
                    continue;
                }
                let sample = segment.sample(at, grid);
                if self.sounding[pitch as usize].take().is_some() {
                    self.sounding_count -= 1;
                    out.push(NoteEvent {
                        sample,
                        kind: NoteEventKind::Off,
                        pitch,
                        velocity: 0,
                    });
                }
                out.push(NoteEvent {
                    sample,
                    kind: NoteEventKind::On,
                    pitch,
                    velocity,
                });
                self.sounding[pitch as usize] = Some(Sounding { end });
                self.sounding_count += 1;
            }
        }
    }
}
