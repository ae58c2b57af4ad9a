//! The preview voice through the CLAP host: the audio output sounds exactly while SMDIM's notes
//! sound and is exactly silent otherwise (after the release tail), stereo, finite and bounded,
//! at 44.1/48/96 kHz and block sizes 1 to 4,096, through relocation, a channel change and a
//! stop; all zeros with the voice off; no heap operation in `process` with it on; the default
//! for new instances (on) and for older projects (off).
//!
//! Needs `cargo xtask bundle smdim --release` first (or `SMDIM_CLAP=/path/SMDIM.clap`).

use smdim_engine::phrase::{Note, Phrase, TimeSignature};
use smdim_engine::preview::{CEILING, RELEASE_TAIL_SECONDS};
use smdim_host_tests::{process_heap_ops, state_with_phrase, HostTransport, Plugin, Sim};

/// Two 4/4 bars with a rest long enough to hear the silence after the release tail.
fn phrase() -> Phrase {
    let n = |start: u32, length: u32, pitch: u8| Note {
        start,
        length,
        pitch,
        velocity: 100,
    };
    let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 2);
    phrase.notes = vec![
        n(0, 480, 60),
        n(480, 240, 64),
        n(480, 240, 67),
        n(480, 240, 71),
        // Beats 1.5 to 4 rest (1.25 s at 120 bpm).
        n(1920, 960, 48),
        n(2400, 120, 84),
        n(2880, 960, 55),
        n(2880, 960, 62),
    ];
    phrase.normalize();
    phrase
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self, max: u32) -> u32 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        1 + ((self.0 >> 33) % max as u64) as u32
    }
}

/// (on, off) sample spans of every output note; a note still on ends at `end`.
fn spans(notes: &[smdim_host_tests::OutNote], end: u64) -> Vec<(u64, u64)> {
    let mut open: Vec<(u8, u8, u64)> = Vec::new();
    let mut spans = Vec::new();
    for n in notes {
        if n.on {
            open.push((n.channel, n.key, n.sample));
        } else if let Some(i) = open
            .iter()
            .position(|&(c, k, _)| c == n.channel && k == n.key)
        {
            spans.push((open.remove(i).2, n.sample));
        }
    }
    spans.extend(open.into_iter().map(|(_, _, on)| (on, end)));
    spans
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len() as f64).sqrt()
}

/// Counts of (windows that had to sound, windows that had to be silent).
fn check_audio(
    recorded: &[Vec<f32>; 2],
    start: u64,
    notes: &[smdim_host_tests::OutNote],
    rate: f64,
    context: &str,
) -> (usize, usize) {
    let [left, right] = recorded;
    assert_eq!(left.len(), right.len());
    let end = start + left.len() as u64;
    for (i, s) in left.iter().chain(right).enumerate() {
        assert!(
            s.is_finite() && s.abs() <= CEILING,
            "{context}: sample {i} = {s}"
        );
    }
    let spans = spans(notes, end);
    let window = (rate * 0.005) as u64;
    let attack = (rate * 0.002) as u64;
    let tail = (rate * RELEASE_TAIL_SECONDS).ceil() as u64;
    let (mut loud, mut quiet) = (0, 0);
    let mut a = start;
    while a + window <= end {
        let b = a + window;
        let range = (a - start) as usize..(b - start) as usize;
        let must_sound = spans.iter().any(|&(on, off)| on + attack <= a && off >= b);
        let may_sound = spans.iter().any(|&(on, off)| on < b && off + tail > a);
        if must_sound {
            loud += 1;
            for (side, channel) in [("left", left), ("right", right)] {
                let level = rms(&channel[range.clone()]);
                assert!(
                    level > 1e-4,
                    "{context}: {side} silent at {a}..{b} while a note sounds ({level})"
                );
            }
        } else if !may_sound {
            quiet += 1;
            assert!(
                left[range.clone()]
                    .iter()
                    .chain(&right[range])
                    .all(|&s| s == 0.0),
                "{context}: sound at {a}..{b} with no note sounding for the release tail"
            );
        }
        a = b;
    }
    (loud, quiet)
}

fn with_phrase() -> Plugin {
    let mut plugin = Plugin::new();
    plugin.load_state(&state_with_phrase(&phrase()));
    plugin
}

#[test]
fn sounds_exactly_while_notes_sound_at_every_rate_and_block_size() {
    let before = process_heap_ops();
    let mut rng = Lcg(11);
    for &(rate, max_block, seconds) in &[
        (44_100.0, 1u32, 2.2),
        (48_000.0, 4096, 14.0),
        (96_000.0, 700, 9.0),
        (44_100.0, 64, 6.0),
    ] {
        let context = format!("{rate} Hz, blocks 1..={max_block}");
        let mut plugin = with_phrase();
        let mut processor = plugin.activate(rate, max_block);
        let start = processor.record_audio();
        let mut sim = Sim::new(rate, HostTransport::playing(120.0, 0.0));
        let total = (seconds * rate) as u64;
        let mut first = true;
        let (mut relocated, mut rechannelled, mut stopped) = (false, false, false);
        while processor.sample < total {
            let at = processor.sample as f64 / total as f64;
            let mut events = Vec::new();
            if first {
                events.push(plugin.param_event("Preview sound", 0, 1.0));
                first = false;
            }
            if at > 0.4 && !relocated {
                sim.relocate(5.5);
                relocated = true;
            }
            if at > 0.6 && !rechannelled {
                events.push(plugin.param_event("MIDI channel", 0, 6.0));
                rechannelled = true;
            }
            if at > 0.8 && !stopped {
                sim.set_playing(false);
                stopped = true;
            }
            sim.block(&mut processor, rng.next(max_block), &events);
        }
        let recorded = processor.recorded.take().expect("recorded");
        let (loud, quiet) = check_audio(&recorded, start, &processor.notes, rate, &context);
        assert!(processor.notes.len() >= 8, "{context}: notes played");
        assert!(
            loud >= 20 && quiet >= 20,
            "{context}: both kinds of window checked ({loud} sounding, {quiet} silent)"
        );
        plugin.deactivate(processor);
    }
    assert_eq!(process_heap_ops(), before, "heap operations inside process");
}

#[test]
fn off_is_all_zeros_and_deactivation_leaves_nothing_ringing() {
    let mut plugin = with_phrase();
    let mut processor = plugin.activate(48_000.0, 512);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    // The loaded state has no preview setting (an older project): off.
    for _ in 0..400 {
        sim.block(&mut processor, 512, &[]);
    }
    assert!(processor.notes.len() >= 8, "the notes still play");
    assert!(!processor.nonzero_audio, "voice off: all zeros");

    // On, sounding, then deactivated mid-note: the next activation starts silent.
    let on = [plugin.param_event("Preview sound", 0, 1.0)];
    // A note already sounding when it was switched on stays unvoiced; wait for the next one.
    let mut block = sim.block(&mut processor, 512, &on);
    while !block.iter().any(|n| n.on) {
        block = sim.block(&mut processor, 512, &[]);
    }
    for _ in 0..4 {
        sim.block(&mut processor, 512, &[]);
    }
    assert!(processor.nonzero_audio, "the voice sounds");
    plugin.deactivate(processor);
    let mut processor = plugin.activate(48_000.0, 512);
    let start = processor.record_audio();
    let mut stopped = HostTransport::playing(120.0, 0.0);
    stopped.playing = false;
    let mut sim = Sim::new(48_000.0, stopped);
    for _ in 0..8 {
        sim.block(&mut processor, 512, &[]);
    }
    assert_eq!(start, 0);
    assert!(!processor.nonzero_audio, "nothing rings after deactivation");
    plugin.deactivate(processor);
}

#[test]
fn new_instances_have_it_on_older_projects_off_and_saved_values_return() {
    let mut plugin = Plugin::new();
    assert_eq!(plugin.param_value("Preview sound"), 1.0, "new instance: on");
    let level = plugin.param_value("Preview level");
    assert!(level > 0.0 && level < 1.0, "a level below full: {level}");

    let mut old = with_phrase();
    assert_eq!(old.param_value("Preview sound"), 0.0, "older project: off");

    // A project saved with the voice on (and a level) reopens with both.
    let mut processor = plugin.activate(48_000.0, 256);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    let level_event = plugin.param_event("Preview level", 0, 0.25);
    sim.block(&mut processor, 256, &[level_event]);
    plugin.deactivate(processor);
    let saved = plugin.save_state();
    let mut reopened = Plugin::new();
    reopened.load_state(&saved);
    assert_eq!(reopened.param_value("Preview sound"), 1.0);
    assert!((reopened.param_value("Preview level") - 0.25).abs() < 1e-6);

    // Saved off stays off.
    let mut processor = old.activate(48_000.0, 256);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    sim.block(&mut processor, 256, &[]);
    old.deactivate(processor);
    let saved = old.save_state();
    let mut reopened = Plugin::new();
    reopened.load_state(&saved);
    assert_eq!(reopened.param_value("Preview sound"), 0.0);
}
