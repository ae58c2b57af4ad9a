//! A .mid dropped onto the real editor becomes the source to edit: under Xvfb, an XDND drag
//! (smdim-drag's source, as a file manager or a DAW would start one) from a window right of the
//! editor onto the editor's piano roll; the drop is accepted and the plugin's saved state then
//! holds the file's notes as its source. A corrupt file dropped the same way changes nothing.
//!
//! Starts its own `Xvfb` (same Debian packages as `editor.rs`).

use std::path::{Path, PathBuf};
use std::thread;
use std::time::{Duration, Instant};

use smdim_drag::{start_file_drag_with, DragOptions, DragOutcome};
use smdim_engine::midi_file::{save_smf, WriteOptions};
use smdim_engine::phrase::{Note, Phrase, TimeSignature};
use smdim_host_tests::{HostTransport, Plugin, Processor, Sim};
use smdim_x11_test_support::{start_xvfb, window, xdotool};
use x11rb::protocol::xproto::EventMask;
use x11rb::rust_connection::RustConnection;

mod editor_host;

use editor_host::{close_editor, embed_editor, pump};

fn idea() -> Phrase {
    let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 2);
    for (i, pitch) in [62u8, 65, 69, 67, 65, 64, 62, 60].into_iter().enumerate() {
        phrase.notes.push(Note {
            start: i as u32 * 960,
            length: 720,
            pitch,
            velocity: 70 + i as u8,
        });
    }
    phrase
}

/// The source's notes in the plugin's saved state.
fn saved_source(plugin: &mut Plugin) -> Option<Vec<Note>> {
    let saved = smdim_host_tests::saved_state(&plugin.save_state())?;
    serde_json::from_value(saved.get("source")?.get("notes")?.clone()).ok()
}

/// Drags `path` from a window right of the editor onto the editor, pumping the plugin.
fn drop_onto_editor(
    display: &str,
    plugin: &mut Plugin,
    processor: &mut Processor,
    sim: &mut Sim,
    path: &Path,
) -> DragOutcome {
    let (conn, _) = RustConnection::connect(Some(display)).unwrap();
    let source = window(&conn, 850, 100, EventMask::NO_EVENT);
    xdotool(display, &["mousemove", "900", "150"]);
    xdotool(display, &["mousedown", "1"]);
    let options = DragOptions {
        display: Some(display.to_string()),
        timeout: Duration::from_secs(30),
        ..DragOptions::default()
    };
    let path = path.to_path_buf();
    let drag = thread::spawn(move || start_file_drag_with(source, &path, &options));
    pump(plugin, processor, sim, 400);
    // Into the piano roll (the editor is 800 × 540 at (0, 0)).
    for (x, y) in [(830, 160), (700, 200), (450, 220), (400, 230), (390, 232)] {
        xdotool(display, &["mousemove", &x.to_string(), &y.to_string()]);
        pump(plugin, processor, sim, 250);
    }
    xdotool(display, &["mouseup", "1"]);
    let started = Instant::now();
    while !drag.is_finished() {
        assert!(
            started.elapsed() < Duration::from_secs(40),
            "drag never ended"
        );
        pump(plugin, processor, sim, 50);
    }
    pump(plugin, processor, sim, 500);
    drag.join().expect("drag thread").expect("the drag runs")
}

#[test]
fn a_midi_file_dropped_on_the_editor_becomes_the_source() {
    let (_xvfb, display) = start_xvfb();
    std::env::set_var("DISPLAY", &display);
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/editor-drop-test")
        .join(format!("{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let good = dir.join("my idea.mid");
    save_smf(&idea(), &WriteOptions::default(), &good).unwrap();
    let corrupt = dir.join("broken.mid");
    std::fs::write(&corrupt, b"MThd\0\0\0\x06\0\x01\0\x09garbage").unwrap();

    let mut plugin = Plugin::new();
    let mut processor = plugin.activate(48_000.0, 512);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    sim.block(&mut processor, 512, &[]);
    let (conn, parent, _) = embed_editor(&mut plugin, &display);
    pump(&mut plugin, &mut processor, &mut sim, 1500);
    assert_eq!(saved_source(&mut plugin), None, "no source yet");

    let outcome = drop_onto_editor(&display, &mut plugin, &mut processor, &mut sim, &good);
    assert!(
        matches!(outcome, DragOutcome::Dropped { .. }),
        "the editor accepts the drop: {outcome:?}"
    );
    let notes = saved_source(&mut plugin).expect("the dropped file is the source");
    assert_eq!(notes, idea().notes, "the file's notes, velocities included");

    // A file that is not MIDI: the source stays.
    let _ = drop_onto_editor(&display, &mut plugin, &mut processor, &mut sim, &corrupt);
    assert_eq!(saved_source(&mut plugin), Some(idea().notes));

    close_editor(plugin, processor, &mut sim, conn, parent);
    let _ = std::fs::remove_dir_all(&dir);
}
