//! The editor under a virtual X server: opens through the CLAP gui extension embedded in a host
//! window, renders something (screenshot), and a synthetic click on Generate produces a phrase.
//!
//! Starts its own `Xvfb` (Debian packages: xvfb, xdotool, x11-apps for xwd, imagemagick, libegl1,
//! libegl-mesa0 and libgl1-mesa-dri (software EGL), libxkbcommon-x11-0, libx11-xcb1). The screenshot
//! after generation is written to `target/editor-test/editor.png` and copied to `docs/editor.png`
//! (the README's screenshot; `$SMDIM_SCREENSHOT` names another file instead).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clack_extensions::gui::PluginGui;
use smdim_host_tests::{phrase_in_state, saved_state, HostTransport, Plugin, Sim};
use smdim_x11_test_support::{start_xvfb, tool, xdotool};

mod editor_host;

use editor_host::{close_editor, embed_editor, move_in_editor, pump, GENERATE_AT, X11_EMBEDDED};

/// The centre of the ×4 button in editor pixels (top row, right of Variation).
const FOUR_VARIATIONS_AT: (u32, u32) = (195, 14);

/// Phrases in the saved history.
fn history_len(state: &[u8]) -> usize {
    let saved = saved_state(state).expect("SMDIM's state");
    saved["history"].as_array().map_or(0, Vec::len)
}

/// ImageMagick's convert (not a stand-in earlier on PATH).
fn convert() -> &'static str {
    ["/usr/bin/convert-im6.q16", "/usr/bin/convert"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .unwrap_or("convert")
}

/// Screenshot of `window` as PNG at `path`; returns the number of distinct colours and the raw
/// RGB pixels.
fn screenshot(window: u32, display: &str, path: &Path) -> (u32, Vec<u8>) {
    let xwd_file = path.with_extension("xwd");
    tool(
        display,
        "xwd",
        &[
            "-id",
            &window.to_string(),
            "-silent",
            "-out",
            xwd_file.to_str().unwrap(),
        ],
    );
    let png = format!("png:{}", path.display());
    tool(
        display,
        convert(),
        &[&format!("xwd:{}", xwd_file.display()), &png],
    );
    let _ = std::fs::remove_file(&xwd_file);
    let colours = tool(display, convert(), &[&png, "-format", "%k", "info:"]);
    let rgb = tool(display, convert(), &[&png, "rgb:-"]);
    let count = String::from_utf8_lossy(&colours)
        .trim()
        .parse()
        .expect("colour count");
    (count, rgb)
}

#[test]
fn editor_opens_renders_and_generate_click_produces_a_phrase() {
    let (_xvfb, display) = start_xvfb();
    // The plugin's window connects to the same server.
    std::env::set_var("DISPLAY", &display);
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/editor-test");
    std::fs::create_dir_all(&out_dir).unwrap();

    let mut plugin = Plugin::new();
    // The plugin's default settings (4 bars, density 1, 16 steps).
    let mut processor = plugin.activate(48_000.0, 512);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    sim.block(&mut processor, 512, &[]);

    {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().expect("gui extension");
        assert!(
            gui.is_api_supported(&handle, X11_EMBEDDED),
            "X11 embedding supported"
        );
    }
    // The host window the editor embeds into; let it render while the transport plays (the
    // playhead moves).
    let (conn, parent, (width, height)) = embed_editor(&mut plugin, &display);
    assert!(
        width >= 400 && height >= 300,
        "readable default size {width}x{height}"
    );

    // Wait for the first frames (software GL on a loaded machine can take a while).
    let before = out_dir.join("editor-before.png");
    let opened = Instant::now();
    let (colours_before, pixels_before) = loop {
        pump(&mut plugin, &mut processor, &mut sim, 500);
        let shot = screenshot(parent, &display, &before);
        if shot.0 > 8 || opened.elapsed() > Duration::from_secs(30) {
            break shot;
        }
    };
    eprintln!("editor rendered after {:?}", opened.elapsed());
    assert!(
        colours_before > 8,
        "the editor renders (only {colours_before} colours)"
    );
    pump(&mut plugin, &mut processor, &mut sim, 300);
    assert!(
        phrase_in_state(&plugin.save_state()).is_none(),
        "no phrase before the click"
    );

    // Click Generate.
    move_in_editor(&display, parent, GENERATE_AT.0, GENERATE_AT.1);
    xdotool(&display, &["click", "1"]);
    let started = Instant::now();
    let mut phrase = None;
    while started.elapsed() < Duration::from_secs(60) {
        pump(&mut plugin, &mut processor, &mut sim, 100);
        phrase = phrase_in_state(&plugin.save_state());
        if phrase.is_some() {
            break;
        }
    }
    let phrase = phrase.expect("clicking Generate produced a phrase within 60 s");
    assert!(!phrase.notes.is_empty());
    eprintln!("click → phrase in {:?}", started.elapsed());
    // Let the piano roll and playhead draw, then keep the screenshot.
    pump(&mut plugin, &mut processor, &mut sim, 1500);
    let after = out_dir.join("editor.png");
    let (colours_after, pixels_after) = screenshot(parent, &display, &after);
    assert_eq!(pixels_before.len(), pixels_after.len());
    let changed = pixels_before
        .chunks(3)
        .zip(pixels_after.chunks(3))
        .filter(|(a, b)| a != b)
        .count();
    eprintln!("colours {colours_before} → {colours_after}, {changed} pixels changed");
    // The piano roll now draws notes, bar lines and the playhead instead of the hint.
    assert!(
        changed > 2_000,
        "the phrase is drawn: only {changed} pixels changed"
    );
    // The README's screenshot is this one, so it always shows the editor as it is.
    let copy = std::env::var_os("SMDIM_SCREENSHOT").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/editor.png"),
        std::path::PathBuf::from,
    );
    std::fs::copy(&after, &copy).expect("copy screenshot");
    assert!(
        processor.notes.iter().any(|n| n.on),
        "the generated phrase plays"
    );

    // ×4 (right of Variation): four variations join the history, the last becomes current.
    move_in_editor(&display, parent, FOUR_VARIATIONS_AT.0, FOUR_VARIATIONS_AT.1);
    xdotool(&display, &["click", "1"]);
    let started = Instant::now();
    while history_len(&plugin.save_state()) < 5 && started.elapsed() < Duration::from_secs(60) {
        pump(&mut plugin, &mut processor, &mut sim, 100);
    }
    assert_eq!(
        history_len(&plugin.save_state()),
        5,
        "four variations after the phrase"
    );
    let current = phrase_in_state(&plugin.save_state()).unwrap();
    assert_ne!(current, phrase);
    assert_eq!(current.bars, phrase.bars);

    close_editor(plugin, processor, &mut sim, conn, parent);
    std::thread::sleep(Duration::from_millis(200));
}
