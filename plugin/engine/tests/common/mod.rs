//! A simulated host driving the scheduler block by block.
#![allow(dead_code)]

use std::sync::Arc;

use smdim_engine::phrase::{Note, Phrase, TimeSignature};
use smdim_engine::scheduler::{
    EventBuffer, NoteEventKind, Scheduler, Transport, MAX_EVENTS_PER_BLOCK,
};

/// An event with its absolute sample time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heard {
    pub at: u64,
    pub on: bool,
    pub pitch: u8,
}

pub struct Host {
    pub transport: Transport,
    pub sample: u64,
    pub scheduler: Scheduler<Arc<Phrase>>,
    pub buffer: EventBuffer,
    pub heard: Vec<Heard>,
    /// Pitches the listener believes are sounding.
    pub down: [bool; 128],
}

impl Host {
    pub fn new(transport: Transport, phrase: Phrase) -> Host {
        let mut scheduler = Scheduler::new();
        scheduler.offer(Arc::new(phrase), Default::default());
        Host {
            transport,
            sample: 0,
            scheduler,
            buffer: EventBuffer::default(),
            heard: Vec::new(),
            down: [false; 128],
        }
    }

    /// One block: checks the per-block invariants, records events, advances the transport
    /// like a host would (position follows tempo; a loop wraps at its end).
    pub fn block(&mut self, len: u32) {
        self.scheduler
            .process(&self.transport, len, &mut self.buffer);
        drop(self.scheduler.take_retired());
        self.check_and_record(len);
        if self.transport.playing
            && self.transport.tempo.is_finite()
            && self.transport.sample_rate.is_finite()
        {
            let mut pos = self.transport.pos_beats
                + len as f64 * self.transport.tempo / (60.0 * self.transport.sample_rate);
            if let Some((a, b)) = self.transport.loop_range {
                if b - a >= smdim_engine::scheduler::MIN_LOOP_LENGTH
                    && self.transport.pos_beats < b
                    && pos >= b
                {
                    pos = a + (pos - b) % (b - a);
                }
            }
            self.transport.pos_beats = pos;
        }
        self.sample += len as u64;
    }

    pub fn check_and_record(&mut self, len: u32) {
        let events = self.buffer.as_slice();
        assert!(events.len() <= MAX_EVENTS_PER_BLOCK);
        let mut last = 0;
        for e in events {
            assert!(e.sample < len, "event at {} in a block of {len}", e.sample);
            assert!(e.sample >= last, "events out of order: {events:?}");
            last = e.sample;
            let on = e.kind == NoteEventKind::On;
            let pitch = e.pitch as usize;
            assert_ne!(
                self.down[pitch],
                on,
                "pitch {pitch}: {} while {}",
                if on { "on" } else { "off" },
                if on { "sounding" } else { "silent" }
            );
            self.down[pitch] = on;
            if on {
                assert!(e.velocity > 0);
            }
            self.heard.push(Heard {
                at: self.sample + e.sample as u64,
                on,
                pitch: e.pitch,
            });
        }
        assert_eq!(
            self.down.iter().filter(|d| **d).count(),
            self.scheduler.sounding()
        );
    }

    /// Deactivation: everything must be released.
    pub fn finish(&mut self) {
        self.scheduler.release_all(&mut self.buffer);
        self.check_and_record(1);
        assert!(self.down.iter().all(|d| !d), "hanging notes after release");
    }

    pub fn onsets(&self) -> Vec<(u64, u8)> {
        self.heard
            .iter()
            .filter(|h| h.on)
            .map(|h| (h.at, h.pitch))
            .collect()
    }
}

pub fn phrase_from(ts: TimeSignature, bars: u32, notes: &[(u32, u32, u8)]) -> Phrase {
    let mut phrase = Phrase::empty(ts, bars);
    phrase.notes = notes
        .iter()
        .map(|&(start, length, pitch)| Note {
            start,
            length,
            pitch,
            velocity: 100,
        })
        .collect();
    phrase.normalize();
    phrase
}

/// Every onset the phrase implies in `[from, to)` quarter notes, host meter = phrase meter,
/// loop mode, bar 0 at position 0: (song position, pitch).
pub fn expected_onsets(phrase: &Phrase, from: f64, to: f64) -> Vec<(f64, u8)> {
    let bar_q = phrase.time_signature.bar_quarters();
    let mut out = Vec::new();
    let first = (from / bar_q).floor() as i64 - 1;
    let last = (to / bar_q).ceil() as i64 + 1;
    for n in first..=last {
        let k = n.rem_euclid(phrase.bars as i64) as u32;
        let bar_ticks = phrase.time_signature.bar_ticks();
        for note in &phrase.notes {
            if note.start / bar_ticks == k {
                let q = n as f64 * bar_q + (note.start - k * bar_ticks) as f64 / 960.0;
                if q >= from && q < to {
                    out.push((q, note.pitch));
                }
            }
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    out
}
