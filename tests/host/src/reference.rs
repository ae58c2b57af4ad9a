//! The note events a phrase must produce on a host timeline, computed independently of the
//! plugin (straight from the definition: phrase bar `n mod len` plays in host bar `n`; every
//! note sounds from its onset to its end; stop, relocation and loop wraps release everything).

use smdim_engine::phrase::{Phrase, PPQ};

/// A stretch of host time with constant tempo.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Absolute sample where it starts.
    pub start: u64,
    pub len: u64,
    /// Song position at `start`, in quarter notes.
    pub beat: f64,
    pub tempo: f64,
    pub playing: bool,
    /// The next span does not continue this one (loop wrap, relocation, stop): everything
    /// sounding is released at the end.
    pub release_at_end: bool,
}

/// (absolute sample, on?, key)
pub type Expected = (u64, bool, u8);

pub fn expected(
    phrase: &Phrase,
    bar_quarters: f64,
    sample_rate: f64,
    spans: &[Span],
) -> Vec<Expected> {
    let mut out = Vec::new();
    let mut sounding: [Option<f64>; 128] = [None; 128];
    let bar_ticks = phrase.time_signature.bar_ticks();
    let len = phrase.bars.max(1) as i64;
    for span in spans {
        if !span.playing {
            release(&mut sounding, span.start, &mut out);
            continue;
        }
        let spq = sample_rate * 60.0 / span.tempo;
        let b0 = span.beat;
        let b1 = b0 + span.len as f64 / spq;
        let sample = |beat: f64| span.start + ((beat - b0) * spq).round().max(0.0) as u64;
        // Onsets in [b0, b1), in time order.
        let mut onsets: Vec<(f64, f64, u8)> = Vec::new();
        let first_bar = (b0 / bar_quarters).floor() as i64;
        let last_bar = (b1 / bar_quarters).floor() as i64;
        for n in first_bar..=last_bar {
            let k = n.rem_euclid(len) as u32;
            let bar_start = n as f64 * bar_quarters;
            let range = phrase.notes_starting_in(k * bar_ticks, (k + 1) * bar_ticks);
            for note in &phrase.notes[range] {
                let at = bar_start + (note.start - k * bar_ticks) as f64 / PPQ as f64;
                if at >= b0 && at < b1 && at < bar_start + bar_quarters {
                    onsets.push((at, at + note.length as f64 / PPQ as f64, note.pitch));
                }
            }
        }
        onsets.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.2.cmp(&b.2)));
        let mut next = 0;
        loop {
            let release = sounding
                .iter()
                .enumerate()
                .filter_map(|(k, e)| e.filter(|&end| end < b1).map(|end| (end, k as u8)))
                .min_by(|a, b| a.0.total_cmp(&b.0));
            let onset = onsets.get(next).copied();
            match (release, onset) {
                (None, None) => break,
                (Some((end, key)), on) if on.is_none_or(|(at, _, _)| end <= at) => {
                    sounding[key as usize] = None;
                    out.push((sample(end.max(b0)), false, key));
                }
                (_, Some((at, end, key))) => {
                    next += 1;
                    if sounding[key as usize].take().is_some() {
                        out.push((sample(at), false, key));
                    }
                    out.push((sample(at), true, key));
                    sounding[key as usize] = Some(end);
                }
                (Some(_), None) => unreachable!("covered by the guard"),
            }
        }
        if span.release_at_end {
            release(&mut sounding, span.start + span.len, &mut out);
        }
    }
    out
}

fn release(sounding: &mut [Option<f64>; 128], at: u64, out: &mut Vec<Expected>) {
    for (key, s) in sounding.iter_mut().enumerate() {
        if s.take().is_some() {
            out.push((at, false, key as u8));
        }
    }
}

/// Matches actual against expected events, each within `tolerance` samples; returns a
/// description of every difference (empty when they agree).
pub fn compare(actual: &[Expected], expected: &[Expected], tolerance: u64) -> Vec<String> {
    let mut unmatched: Vec<Option<Expected>> = actual.iter().copied().map(Some).collect();
    let mut problems = Vec::new();
    for &(sample, on, key) in expected {
        let found = unmatched.iter_mut().find(|a| {
            a.is_some_and(|(s, o, k)| o == on && k == key && s.abs_diff(sample) <= tolerance)
        });
        match found {
            Some(slot) => *slot = None,
            None => problems.push(format!(
                "missing {} key {key} at sample {sample}",
                if on { "on" } else { "off" }
            )),
        }
    }
    for (sample, on, key) in unmatched.into_iter().flatten() {
        problems.push(format!(
            "unexpected {} key {key} at sample {sample}",
            if on { "on" } else { "off" }
        ));
    }
    problems
}
