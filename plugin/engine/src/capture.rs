//! Capturing the notes a musician plays into the plugin, in musical time, for editing.
//!
//! [`channel`] makes a [`Recorder`] (the audio thread: allocation-free, bounded) and a
//! [`Takes`] (any other thread). While the transport plays, the recorder turns note-ons and
//! note-offs into [`Captured`] notes: song positions in quarter notes, with the bar grid and
//! meter they were played against. A note still held when the transport stops, relocates or
//! wraps a loop ends there. Every loop pass and every relocation starts a new *take*, so notes of
//! different passes over the same bars never mix. Finished notes go through a bounded queue;
//! what does not fit is counted ([`Takes::dropped`]), never allocated for.
//!
//! [`Takes::source`] turns the newest take into a [`Phrase`] on whole bars: the host loop region
//! when the take lies in one, else the last `bars` bars up to the bar line after its last note.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::phrase::{Note, Phrase, TimeSignature, MAX_BARS, PPQ};
use crate::scheduler::{Transport, MIN_LOOP_LENGTH, RELOCATE_THRESHOLD};

/// Finished notes in flight from the audio thread to the editor.
pub const QUEUE_CAPACITY: usize = 4096;
/// Notes a [`Takes`] keeps (the oldest go first).
pub const KEEP: usize = 8192;

/// One played note.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Captured {
    /// Song positions in quarter notes.
    pub start: f64,
    pub end: f64,
    pub pitch: u8,
    /// 1..=127.
    pub velocity: u8,
    /// The take it belongs to (a loop pass or a stretch between relocations).
    pub take: u64,
    /// Song position of bar 0 and the bar's length in quarter notes when it was played.
    pub origin: f64,
    pub bar: f64,
    pub time_signature: TimeSignature,
    /// The host loop when it was played, if any.
    pub loop_range: Option<(f64, f64)>,
}

struct Shared {
    queue: ArrayQueue<Captured>,
    dropped: AtomicU64,
}

/// The two ends of a new capture.
pub fn channel() -> (Recorder, Takes) {
    let shared = Arc::new(Shared {
        queue: ArrayQueue::new(QUEUE_CAPACITY),
        dropped: AtomicU64::new(0),
    });
    (
        Recorder {
            shared: shared.clone(),
            open: vec![None; 16 * 128].into_boxed_slice(),
            take: 0,
            expected: None,
            block: None,
        },
        Takes {
            shared,
            notes: Vec::new(),
        },
    )
}

#[derive(Debug, Clone, Copy)]
struct Open {
    start: f64,
    velocity: u8,
}

/// The block's time geometry.
#[derive(Debug, Clone, Copy)]
struct Block {
    pos: f64,
    /// Quarter notes per sample.
    qps: f64,
    origin: f64,
    bar: f64,
    time_signature: TimeSignature,
    loop_range: Option<(f64, f64)>,
    /// Sample offset of a loop wrap inside the block.
    wrap_at: Option<u32>,
    /// The wrap has ended what was held and started a new take.
    wrapped: bool,
}

/// The audio thread's end.
pub struct Recorder {
    shared: Arc<Shared>,
    /// Per (channel, key): the note being held.
    open: Box<[Option<Open>]>,
    take: u64,
    /// Song position expected at the next block while playing.
    expected: Option<f64>,
    block: Option<Block>,
}

impl Recorder {
    /// Starts a block: notes held across a stop, a relocation or a loop wrap between blocks end
    /// there, and a new take begins.
    pub fn begin_block(&mut self, transport: &Transport, block_len: u32) {
        if !transport.playing || !transport.is_sane() {
            if let Some(end) = self.expected.take() {
                self.close_all(end);
                self.take += 1;
            }
            self.block = None;
            return;
        }
        let ts = transport.time_signature();
        let bar = ts.bar_quarters();
        let origin = transport.bar_origin(bar);
        let qps = transport.tempo / (60.0 * transport.sample_rate);
        let pos = transport.pos_beats;
        if let Some(expected) = self.expected {
            if (expected - pos).abs() > RELOCATE_THRESHOLD.max(2.0 * qps) {
                self.close_all(expected);
                self.take += 1;
            }
        }
        let loop_range = transport
            .loop_range
            .filter(|(a, b)| a.is_finite() && b.is_finite() && b - a >= MIN_LOOP_LENGTH);
        let end = pos + block_len as f64 * qps;
        let wrap_at = loop_range
            .filter(|&(_, b)| pos < b && end > b)
            .map(|(_, b)| ((b - pos) / qps).round().clamp(0.0, u32::MAX as f64) as u32);
        self.expected = Some(match (wrap_at, loop_range) {
            (Some(_), Some((a, b))) => a + (end - b),
            _ => end,
        });
        self.block = Some(Block {
            pos,
            qps,
            origin,
            bar,
            time_signature: ts,
            loop_range,
            wrap_at,
            wrapped: false,
        });
    }

    /// Ends the block: a loop wrap inside it ends what is held and starts a new take.
    pub fn end_block(&mut self) {
        self.wrap_before(u32::MAX);
    }

    /// Handles the block's loop wrap if it lies at or before `timing`.
    fn wrap_before(&mut self, timing: u32) {
        let Some(block) = self.block else {
            return;
        };
        if let (Some(w), Some((_, b)), false) = (block.wrap_at, block.loop_range, block.wrapped) {
            if timing >= w {
                self.close_all(b);
                self.take += 1;
                if let Some(current) = self.block.as_mut() {
                    current.wrapped = true;
                }
            }
        }
    }

    fn position(&self, block: &Block, timing: u32) -> f64 {
        match (block.wrap_at, block.loop_range) {
            (Some(w), Some((a, _))) if timing >= w => a + (timing - w) as f64 * block.qps,
            _ => block.pos + timing as f64 * block.qps,
        }
    }

    /// A note-on (`velocity` 1..=127) or, with `velocity` 0, a note-off, `timing` samples into
    /// the block. Ignored while the transport is stopped.
    pub fn note(&mut self, timing: u32, channel: u8, pitch: u8, velocity: u8) {
        if self.block.is_none() {
            return;
        }
        let index = (channel.min(15) as usize) * 128 + pitch.min(127) as usize;
        // A wrap inside this block comes before this event: what was held ends there first.
        self.wrap_before(timing);
        let Some(block) = self.block else {
            return;
        };
        let at = self.position(&block, timing);
        if let Some(open) = self.open[index].take() {
            self.finish(open, at, pitch, &block);
        }
        if velocity > 0 {
            self.open[index] = Some(Open {
                start: at,
                velocity: velocity.min(127),
            });
        }
    }

    fn finish(&self, open: Open, end: f64, pitch: u8, block: &Block) {
        let note = Captured {
            start: open.start,
            end: end.max(open.start),
            pitch,
            velocity: open.velocity,
            take: self.take,
            origin: block.origin,
            bar: block.bar,
            time_signature: block.time_signature,
            loop_range: block.loop_range,
        };
        if self.shared.queue.push(note).is_err() {
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn close_all(&mut self, end: f64) {
        let Some(block) = self.block else {
            // Nothing can be open without a playing block.
            return;
        };
        for index in 0..self.open.len() {
            if let Some(open) = self.open[index].take() {
                self.finish(open, end, (index % 128) as u8, &block);
            }
        }
    }
}

/// The non-audio end: the notes captured so far.
pub struct Takes {
    shared: Arc<Shared>,
    notes: Vec<Captured>,
}

impl Takes {
    /// Takes what the audio thread finished; keeps the newest [`KEEP`].
    pub fn collect(&mut self) -> &[Captured] {
        while let Some(note) = self.shared.queue.pop() {
            self.notes.push(note);
        }
        let excess = self.notes.len().saturating_sub(KEEP);
        self.notes.drain(..excess);
        &self.notes
    }

    /// Notes the queue had no room for (the editor says so).
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Forgets everything captured.
    pub fn clear(&mut self) {
        self.collect();
        self.notes.clear();
    }

    /// The newest take as a phrase on whole bars (see the module docs), or `None` when nothing
    /// was captured. `bars` caps its length (at most [`MAX_BARS`]).
    pub fn source(&mut self, bars: u32) -> Option<Phrase> {
        let notes = self.collect();
        let take = notes.iter().map(|n| n.take).max()?;
        let take: Vec<&Captured> = notes.iter().filter(|n| n.take == take).collect();
        let first = take.first()?;
        let (origin, bar, ts) = (first.origin, first.bar, first.time_signature);
        let bar_of = |q: f64| ((q - origin) / bar).floor();
        let start_q = take.iter().map(|n| n.start).fold(f64::INFINITY, f64::min);
        let end_q = take.iter().map(|n| n.end).fold(f64::NEG_INFINITY, f64::max);
        let bars = bars.clamp(1, MAX_BARS) as f64;
        let (from, to) = match first.loop_range {
            Some((a, b)) if start_q >= a - 1e-9 && end_q <= b + 1e-9 => {
                let from = bar_of(a + 1e-9);
                let to = (((b - origin) / bar) - 1e-9).ceil().max(from + 1.0);
                (from, to.min(from + bars))
            }
            _ => {
                // The bar line after the last note ends the phrase.
                let last_start = take
                    .iter()
                    .map(|n| n.start)
                    .fold(f64::NEG_INFINITY, f64::max);
                let to = bar_of(last_start) + 1.0;
                let from = bar_of(start_q).max(to - bars);
                (from, to)
            }
        };
        let window_start = origin + from * bar;
        let window_end = origin + to * bar;
        let mut phrase = Phrase::empty(ts, (to - from) as u32);
        for n in take {
            if n.start < window_start - 1e-9 || n.start >= window_end {
                continue;
            }
            let start = ((n.start - window_start) * PPQ as f64).round().max(0.0) as u32;
            let end = ((n.end.min(window_end) - window_start) * PPQ as f64).round() as u32;
            phrase.notes.push(Note {
                start,
                length: end.saturating_sub(start).max(1),
                pitch: n.pitch,
                velocity: n.velocity.max(1),
            });
        }
        phrase.normalize();
        Some(phrase)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 120 bpm at 48 kHz: 24,000 samples a quarter note; blocks of 12,000 (half a quarter).
    const BLOCK: u32 = 12_000;

    fn at(q: f64) -> Transport {
        Transport::playing_at(48_000.0, 120.0, q)
    }

    /// Plays blocks from `from` for `blocks` blocks; `events` are (quarter, pitch, velocity).
    fn play(
        rec: &mut Recorder,
        from: f64,
        blocks: u32,
        events: &[(f64, u8, u8)],
        looped: Option<(f64, f64)>,
    ) {
        let mut q = from;
        for _ in 0..blocks {
            let mut t = at(q);
            t.loop_range = looped;
            rec.begin_block(&t, BLOCK);
            let end = q + 0.5;
            for &(eq, pitch, vel) in events {
                // Events inside [q, end), unwrapped positions.
                if eq >= q && eq < end {
                    let timing = ((eq - q) * 24_000.0).round() as u32;
                    rec.note(timing, 0, pitch, vel);
                }
            }
            rec.end_block();
            q = match looped {
                Some((a, b)) if end >= b => a + (end - b),
                _ => end,
            };
        }
    }

    #[test]
    fn played_notes_become_a_phrase_on_whole_bars() {
        let (mut rec, mut takes) = channel();
        // Bar 1 (quarters 4..8): C on the downbeat for a quarter, E on beat 3 for half a bar.
        let events = [(4.0, 60, 100), (5.0, 60, 0), (6.0, 64, 80), (8.0, 64, 0)];
        play(&mut rec, 3.0, 12, &events, None);
        let phrase = takes.source(8).expect("captured");
        assert_eq!(
            phrase.bars, 1,
            "from the first note's bar to the bar line after the last"
        );
        let notes: Vec<(u32, u32, u8, u8)> = phrase
            .notes
            .iter()
            .map(|n| (n.start, n.length, n.pitch, n.velocity))
            .collect();
        assert_eq!(notes, vec![(0, PPQ, 60, 100), (2 * PPQ, 2 * PPQ, 64, 80)]);
        assert_eq!(takes.dropped(), 0);
    }

    #[test]
    fn each_loop_pass_is_a_take_and_held_notes_end_at_the_wrap() {
        let (mut rec, mut takes) = channel();
        let looped = Some((0.0, 8.0));
        // First pass: a low G held past the loop end; second pass: two notes.
        play(&mut rec, 0.0, 16, &[(1.0, 55, 90)], looped);
        play(
            &mut rec,
            0.0,
            16,
            &[(0.0, 72, 100), (1.0, 72, 0), (4.0, 74, 100), (5.0, 74, 0)],
            looped,
        );
        let notes = takes.collect().to_vec();
        let g = notes.iter().find(|n| n.pitch == 55).unwrap();
        assert_eq!(
            (g.start, g.end),
            (1.0, 8.0),
            "held across the wrap: ends at the loop end"
        );
        let phrase = takes.source(16).unwrap();
        assert_eq!(phrase.bars, 2, "the loop region");
        let pitches: Vec<u8> = phrase.notes.iter().map(|n| n.pitch).collect();
        assert_eq!(pitches, vec![72, 74], "the newest pass only");
    }

    #[test]
    fn a_relocation_starts_a_new_take_and_a_stop_ignores_notes() {
        let (mut rec, mut takes) = channel();
        play(&mut rec, 0.0, 4, &[(0.0, 60, 100), (1.0, 60, 0)], None);
        // Jump to bar 8 and play there.
        play(&mut rec, 32.0, 4, &[(32.0, 67, 100), (33.0, 67, 0)], None);
        let phrase = takes.source(4).unwrap();
        assert_eq!(phrase.notes.len(), 1);
        assert_eq!((phrase.notes[0].pitch, phrase.notes[0].start), (67, 0));
        // Stopped: nothing is recorded.
        let mut stopped = at(40.0);
        stopped.playing = false;
        rec.begin_block(&stopped, BLOCK);
        rec.note(0, 0, 50, 100);
        rec.note(100, 0, 50, 0);
        rec.end_block();
        assert!(takes.collect().iter().all(|n| n.pitch != 50));
    }

    #[test]
    fn the_last_bars_are_kept_and_overflow_is_counted() {
        let (mut rec, mut takes) = channel();
        // One note a bar for 10 bars; keep 4.
        let mut events = Vec::new();
        for b in 0..10 {
            events.push((b as f64 * 4.0, 60 + b as u8, 100));
            events.push((b as f64 * 4.0 + 1.0, 60 + b as u8, 0));
        }
        play(&mut rec, 0.0, 80, &events, None);
        let phrase = takes.source(4).unwrap();
        assert_eq!(phrase.bars, 4);
        let pitches: Vec<u8> = phrase.notes.iter().map(|n| n.pitch).collect();
        assert_eq!(pitches, vec![66, 67, 68, 69]);

        // More notes in one go than the queue holds: the rest are counted, not stored.
        rec.begin_block(&at(100.0), BLOCK);
        for i in 0..(QUEUE_CAPACITY + 10) {
            rec.note(1, 0, (i % 128) as u8, 100);
            rec.note(2, 0, (i % 128) as u8, 0);
        }
        rec.end_block();
        assert_eq!(takes.dropped(), 10);
    }
}
