//! Editing the musician's own notes through a host: the CLAP harness plays notes into SMDIM's
//! note input while the transport runs (a throwaway take, a relocation, then the phrase; and in
//! a second test two passes of a host loop),
//! the editor's **Use capture** and **Continue** / **Infill** buttons are clicked under Xvfb, and
//! the result plays: the kept bar comes out of the plugin's note output exactly as it was played
//! (the same keys at the same samples of its bar: the notes were played on the grid, which
//! quantising leaves alone), the rest is generated, Infill keeps the bar outside its range, no
//! heap operation happens in `process` while notes arrive, and the saved project reopens with
//! the same phrase and source.
//!
//! Starts its own `Xvfb` (same Debian packages as `editor.rs`).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use smdim_engine::phrase::{Note, Phrase};
use smdim_host_tests::{phrase_in_state, process_heap_ops, HostTransport, Plugin, Processor, Sim};
use smdim_x11_test_support::{start_xvfb, xdotool};

mod editor_host;

use editor_host::{close_editor, embed_editor, move_in_editor, pump};

/// Button centres in editor pixels (second and third rows; see docs/editor.png).
const USE_CAPTURE_AT: (u32, u32) = (156, 41);
const CONTINUE_AT: (u32, u32) = (33, 64);
const INFILL_AT: (u32, u32) = (210, 64);
const VARY_AT: (u32, u32) = (386, 64);
/// The Vary strength slider's handle at its default, 30 %.
const VARY_SLIDER_AT: (u32, u32) = (436, 64);

/// Each test starts its own X server and points `DISPLAY` (process-wide) at it: one at a time.
static ONE_X_SERVER: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 120 bpm at 48 kHz.
const SAMPLES_PER_BEAT: f64 = 24_000.0;

/// (beat, key, beats long): two bars from beat 16 (bar 5), on the 1/8-beat grid.
const PLAYED: [(f64, u8, f64); 7] = [
    (16.0, 60, 1.0),
    (17.0, 64, 0.5),
    (17.5, 67, 0.5),
    (18.0, 72, 2.0),
    (20.0, 62, 1.0),
    (21.0, 65, 1.0),
    (22.0, 69, 1.5),
];
const VELOCITY: f64 = 0.8;

/// Runs blocks until the host reaches `until` beats, playing `notes` (beat, key, length) into
/// the plugin at their samples; returns every block's (first sample, first beat).
fn play(
    sim: &mut Sim,
    processor: &mut Processor,
    until: f64,
    notes: &[(f64, u8, f64)],
    blocks: &mut Vec<(u64, f64)>,
) {
    let events: Vec<(f64, u8, f64)> = notes
        .iter()
        .flat_map(|&(beat, key, length)| [(beat, key, VELOCITY), (beat + length, key, 0.0)])
        .collect();
    while sim.transport.beats < until {
        let start = sim.transport.beats;
        let end = start + 512.0 / SAMPLES_PER_BEAT;
        let played: Vec<(u32, u8, f64)> = events
            .iter()
            .filter(|&&(beat, _, _)| beat >= start - 1e-9 && beat < end - 1e-9)
            .map(|&(beat, key, v)| (((beat - start) * SAMPLES_PER_BEAT).round() as u32, key, v))
            .collect();
        blocks.push((processor.sample, start));
        sim.block_playing(processor, 512, &[], &played);
    }
}

fn click(display: &str, parent: u32, (x, y): (u32, u32)) {
    move_in_editor(display, parent, x, y);
    xdotool(display, &["click", "1"]);
}

/// The source's notes in the saved state.
fn saved_source(plugin: &mut Plugin) -> Option<Phrase> {
    let saved = smdim_host_tests::saved_state(&plugin.save_state())?;
    serde_json::from_value(saved.get("source")?.clone()).ok()
}

/// Clicks Use capture until the plugin has a source; returns it.
fn use_capture(
    display: &str,
    parent: u32,
    plugin: &mut Plugin,
    processor: &mut Processor,
    sim: &mut Sim,
) -> Phrase {
    let started = Instant::now();
    loop {
        click(display, parent, USE_CAPTURE_AT);
        pump(plugin, processor, sim, 300);
        if let Some(source) = saved_source(plugin) {
            return source;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "Use capture did nothing"
        );
    }
}

/// [`PLAYED`] as the source's notes: from bar 5's downbeat, velocity 0.8 as MIDI.
fn played_from_bar_5() -> Vec<Note> {
    let velocity = (VELOCITY * 127.0).round() as u8;
    PLAYED
        .iter()
        .map(|&(beat, pitch, length)| Note {
            start: ((beat - 16.0) * smdim_engine::PPQ as f64) as u32,
            length: (length * smdim_engine::PPQ as f64) as u32,
            pitch,
            velocity,
        })
        .collect()
}

/// Clicks `button` until the current phrase changes; returns the new one.
fn edit(
    display: &str,
    parent: u32,
    button: (u32, u32),
    plugin: &mut Plugin,
    processor: &mut Processor,
    sim: &mut Sim,
) -> Phrase {
    let before = phrase_in_state(&plugin.save_state());
    let started = Instant::now();
    loop {
        click(display, parent, button);
        for _ in 0..30 {
            pump(plugin, processor, sim, 100);
            if let Some(now) = phrase_in_state(&plugin.save_state()) {
                if Some(&now) != before.as_ref() {
                    return now;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the edit never arrived"
        );
    }
}

/// Notes of bar `bar` (0-based) of `phrase`, relative to the bar.
fn bar_notes(phrase: &Phrase, bar: u32) -> Vec<Note> {
    let len = phrase.time_signature.bar_ticks();
    phrase
        .notes
        .iter()
        .filter(|n| n.start / len == bar)
        .map(|n| Note {
            start: n.start - bar * len,
            ..*n
        })
        .collect()
}

#[test]
fn played_notes_are_continued_and_infilled_through_the_editor() {
    let _one = ONE_X_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let (_xvfb, display) = start_xvfb();
    std::env::set_var("DISPLAY", &display);
    let heap_before = process_heap_ops();
    let mut plugin = Plugin::new();
    let mut processor = plugin.activate(48_000.0, 512);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    // Quiet playback of what SMDIM generates (the preview voice is not under test here).
    let setup = [plugin.param_event("Preview sound", 0, 0.0)];
    sim.block(&mut processor, 512, &setup);
    let (conn, parent, _) = embed_editor(&mut plugin, &display);
    pump(&mut plugin, &mut processor, &mut sim, 1500);

    // A throwaway take in bar 1, a relocation to bar 5 (a new take), then the phrase.
    let mut blocks = Vec::new();
    play(
        &mut sim,
        &mut processor,
        3.0,
        &[(0.5, 50, 1.0)],
        &mut blocks,
    );
    sim.relocate(15.0);
    play(&mut sim, &mut processor, 24.5, &PLAYED, &mut blocks);
    assert_eq!(
        process_heap_ops(),
        heap_before,
        "heap operations in process"
    );

    // Use capture: the newest take, bars 5-6, becomes the source.
    let source = use_capture(&display, parent, &mut plugin, &mut processor, &mut sim);
    let expected = played_from_bar_5();
    assert_eq!(source.bars, 2, "{source:?}");
    assert_eq!(source.notes, expected, "the source is what was played");

    // Continue (keep 1 bar, up to Bars = 4): the kept bar note for note, the rest generated.
    let continued = edit(
        &display,
        parent,
        CONTINUE_AT,
        &mut plugin,
        &mut processor,
        &mut sim,
    );
    assert_eq!(continued.bars, 4);
    assert_eq!(
        bar_notes(&continued, 0),
        bar_notes(&source, 0),
        "bar 1 kept"
    );
    assert!(
        (1..4).any(|b| !bar_notes(&continued, b).is_empty()),
        "bars 2-4 generated"
    );

    // It plays: some host bar's note-ons are exactly the played bar, at the same samples.
    let from = processor.sample;
    let until = sim.transport.beats + 4.0 * 4.0 * 2.0;
    play(&mut sim, &mut processor, until, &[], &mut blocks);
    let bar_samples = 4.0 * SAMPLES_PER_BEAT;
    let mut bars: std::collections::BTreeMap<i64, BTreeSet<(u64, u8)>> = Default::default();
    for n in processor
        .notes
        .iter()
        .filter(|n| n.on && n.sample >= from && n.channel == 0)
    {
        let (block_sample, block_beat) = *blocks
            .iter()
            .rev()
            .find(|(s, _)| *s <= n.sample)
            .expect("a block");
        let beat = block_beat + (n.sample - block_sample) as f64 / SAMPLES_PER_BEAT;
        let bar = (beat / 4.0 + 1e-9).floor();
        let offset = ((beat - bar * 4.0) * SAMPLES_PER_BEAT).round() as u64;
        bars.entry(bar as i64).or_default().insert((offset, n.key));
    }
    let played_bar: BTreeSet<(u64, u8)> = PLAYED
        .iter()
        .filter(|(beat, _, _)| *beat < 20.0)
        .map(|&(beat, key, _)| (((beat - 16.0) * SAMPLES_PER_BEAT) as u64, key))
        .collect();
    assert!(
        bars.values().any(|notes| *notes == played_bar),
        "the kept bar plays as played: {bars:?}"
    );
    assert_eq!(
        played_bar
            .iter()
            .map(|(o, _)| o % (bar_samples as u64 / 32))
            .max(),
        Some(0),
        "played on the grid"
    );

    // Infill bar 1 of the source: bar 2 stays note for note.
    let infilled = edit(
        &display,
        parent,
        INFILL_AT,
        &mut plugin,
        &mut processor,
        &mut sim,
    );
    assert_eq!(infilled.bars, 2);
    assert_eq!(bar_notes(&infilled, 1), bar_notes(&source, 1), "bar 2 kept");

    // Vary at 0 % (the slider pulled past its left end) gives the source back.
    let (x, y) = VARY_SLIDER_AT;
    move_in_editor(&display, parent, x, y);
    xdotool(&display, &["mousedown", "1"]);
    for x in [420, 380, 300] {
        pump(&mut plugin, &mut processor, &mut sim, 100);
        move_in_editor(&display, parent, x, y);
    }
    pump(&mut plugin, &mut processor, &mut sim, 100);
    xdotool(&display, &["mouseup", "1"]);
    pump(&mut plugin, &mut processor, &mut sim, 300);
    let varied = edit(
        &display,
        parent,
        VARY_AT,
        &mut plugin,
        &mut processor,
        &mut sim,
    );
    assert_eq!(varied.notes, source.notes, "Vary 0 % is the source");
    assert_eq!(varied.bars, source.bars);

    // The project reopens with the same phrase and source.
    let state = plugin.save_state();
    let mut reopened = Plugin::new();
    reopened.load_state(&state);
    assert_eq!(phrase_in_state(&reopened.save_state()), Some(varied));
    assert_eq!(saved_source(&mut reopened), Some(source));
    close_editor(plugin, processor, &mut sim, conn, parent);
}

/// Runs `passes` of the host loop from its start, playing `notes[p]` (beat, key, length) in pass
/// `p` at their samples, wraps inside blocks included.
fn play_loop(sim: &mut Sim, processor: &mut Processor, notes: &[&[(f64, u8, f64)]]) {
    let (loop_start, loop_end) = sim.transport.loop_range.expect("a loop");
    let events = |pass: usize| -> Vec<(f64, u8, f64)> {
        notes.get(pass).map_or(Vec::new(), |n| {
            n.iter()
                .flat_map(|&(b, k, l)| [(b, k, VELOCITY), (b + l, k, 0.0)])
                .collect()
        })
    };
    let mut pass = 0;
    while pass < notes.len() {
        let start = sim.transport.beats;
        let end = start + 512.0 / SAMPLES_PER_BEAT;
        let in_range = |list: Vec<(f64, u8, f64)>, from: f64, to: f64, at: f64| {
            list.into_iter()
                .filter(move |&(b, _, _)| b >= from - 1e-9 && b < to - 1e-9)
                .map(move |(b, k, v)| (((b - from) * SAMPLES_PER_BEAT + at).round() as u32, k, v))
        };
        let mut played: Vec<(u32, u8, f64)> = Vec::new();
        if end > loop_end {
            let w = (loop_end - start) * SAMPLES_PER_BEAT;
            played.extend(in_range(events(pass), start, loop_end, 0.0));
            let rest = end - loop_end;
            played.extend(in_range(events(pass + 1), loop_start, loop_start + rest, w));
            pass += 1;
        } else {
            played.extend(in_range(events(pass), start, end, 0.0));
        }
        played.sort_by_key(|e| e.0);
        sim.block_playing(processor, 512, &[], &played);
    }
}

#[test]
fn the_newest_loop_pass_becomes_the_source() {
    let _one = ONE_X_SERVER.lock().unwrap_or_else(|e| e.into_inner());
    let (_xvfb, display) = start_xvfb();
    std::env::set_var("DISPLAY", &display);
    let heap_before = process_heap_ops();
    let mut plugin = Plugin::new();
    let mut processor = plugin.activate(48_000.0, 512);
    // The host loops bars 5-6 (beats 16-24).
    let mut start = HostTransport::playing(120.0, 16.0);
    start.loop_range = Some((16.0, 24.0));
    let mut sim = Sim::new(48_000.0, start);
    let setup = [plugin.param_event("Preview sound", 0, 0.0)];
    sim.block(&mut processor, 512, &setup);
    let (conn, parent, _) = embed_editor(&mut plugin, &display);
    // Pass 1: another idea; pass 2 (after the wrap): the one to keep; then a third, silent
    // pass starts before Use capture.
    let first: [(f64, u8, f64); 2] = [(16.5, 50, 1.0), (19.0, 52, 2.0)];
    play_loop(&mut sim, &mut processor, &[&first, &PLAYED, &[]]);
    assert!(
        sim.wraps_inside_blocks >= 2,
        "the loop wrapped inside blocks"
    );
    assert_eq!(
        process_heap_ops(),
        heap_before,
        "heap operations in process"
    );
    sim.set_playing(false);
    let source = use_capture(&display, parent, &mut plugin, &mut processor, &mut sim);
    let expected = played_from_bar_5();
    assert_eq!(source.bars, 2, "the loop region: {source:?}");
    assert_eq!(source.notes, expected, "the pass after the wrap, as played");
    close_editor(plugin, processor, &mut sim, conn, parent);
}
