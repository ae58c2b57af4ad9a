//! Drag from the real editor: after Generate, a synthetic press on the "Drag .mid" handle,
//! motion into an XDND drop target (x11rb, from `smdim-x11-test-support`) and a release: the
//! target receives the URI of a .mid in `$XDG_CACHE_HOME/smdim/drag/` that holds the generated
//! phrase.
//!
//! Starts its own `Xvfb` (same Debian packages as `editor.rs`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use smdim_host_tests::{HostTransport, Plugin, Sim};
use smdim_x11_test_support::{start_xvfb, xdotool, DropTarget, Mode};

/// The centre of the "Drag .mid" handle in editor pixels (top row, after Export .mid; see
/// `plugin/smdim/src/editor.rs` and `target/editor-test/editor.png`).
const DRAG_HANDLE_AT: (u32, u32) = (546, 14);

/// Where the drop target's window stands: right of the editor.
const TARGET_AT: (i16, i16) = (800, 150);

mod editor_host;

use editor_host::{close_editor, embed_editor, generate_by_click, move_in_editor, pump};

#[test]
fn dragging_the_handle_drops_the_phrase_file_into_an_xdnd_target() {
    let (_xvfb, display) = start_xvfb();
    // The plugin's window and its drag connect to the same server.
    std::env::set_var("DISPLAY", &display);
    let cache = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../target/editor-drag-test")
        .join(format!("cache-{}", std::process::id()));
    std::fs::create_dir_all(&cache).unwrap();
    let cache = cache.canonicalize().unwrap();
    std::env::set_var("XDG_CACHE_HOME", &cache);

    let mut plugin = Plugin::new();
    let mut processor = plugin.activate(48_000.0, 512);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    sim.block(&mut processor, 512, &[]);

    let (conn, parent, _) = embed_editor(&mut plugin, &display);
    pump(&mut plugin, &mut processor, &mut sim, 1500);

    let at = |x: u32, y: u32| move_in_editor(&display, parent, x, y);
    let phrase = generate_by_click(&mut plugin, &mut processor, &mut sim, &display, parent);

    // The drop target sits right of the editor.
    let target = DropTarget::start(&display, TARGET_AT, Mode::Accept);
    // Press on the handle, pull it out of the editor into the target, release.
    at(DRAG_HANDLE_AT.0, DRAG_HANDLE_AT.1);
    pump(&mut plugin, &mut processor, &mut sim, 200);
    xdotool(&display, &["mousedown", "1"]);
    pump(&mut plugin, &mut processor, &mut sim, 200);
    for (x, y) in [(555, 18), (540, 30), (600, 60), (700, 120)] {
        at(x, y);
        pump(&mut plugin, &mut processor, &mut sim, 150);
    }
    for (x, y) in [(860, 200), (880, 220), (890, 230)] {
        xdotool(&display, &["mousemove", &x.to_string(), &y.to_string()]);
        pump(&mut plugin, &mut processor, &mut sim, 250);
    }
    let over = Instant::now();
    while !target.is_dragged_over() && over.elapsed() < Duration::from_secs(20) {
        pump(&mut plugin, &mut processor, &mut sim, 50);
    }
    xdotool(&display, &["mouseup", "1"]);
    pump(&mut plugin, &mut processor, &mut sim, 1500);
    let report = target.finish();

    let uri = report
        .uri
        .clone()
        .unwrap_or_else(|| panic!("no drop: {report:?}"));
    let path = smdim_drag::path_from_file_uri(uri.trim()).expect("a file URI");
    assert!(
        path.starts_with(cache.join("smdim").join("drag")),
        "{}",
        path.display()
    );
    let name = path.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        name.starts_with("smdim-") && name.contains("bars-seed"),
        "{name}"
    );
    // The file outlives the drag and is the generated phrase.
    let midi = smdim_engine::midi_file::read_smf(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(midi.phrase.notes, phrase.notes);

    close_editor(plugin, processor, &mut sim, conn, parent);
    let _ = std::fs::remove_dir_all(&cache);
}
