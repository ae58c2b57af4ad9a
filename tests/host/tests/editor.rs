//! The editor under a virtual X server: opens through the CLAP gui extension embedded in a host
//! window, renders something (screenshot), and a synthetic click on Generate produces a phrase.
//!
//! Starts its own `Xvfb` (Debian packages: xvfb, xdotool, x11-apps for xwd, imagemagick, libegl1,
//! libegl-mesa0 and libgl1-mesa-dri (software EGL), libxkbcommon-x11-0, libx11-xcb1). The screenshot
//! after generation is written to `target/editor-test/editor.png` (and to `$SMDIM_SCREENSHOT`
//! when set, e.g. `docs/editor.png`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clack_extensions::gui::{GuiApiType, GuiConfiguration, PluginGui, Window};
use smdim_host_tests::{phrase_in_state, HostTransport, Plugin, Processor, Sim};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, WindowClass};

mod display;

use display::{start_xvfb, tool, GENERATE_AT};

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
        "xwd",
        &[
            "-id",
            &window.to_string(),
            "-silent",
            "-out",
            xwd_file.to_str().unwrap(),
        ],
        display,
    );
    let png = format!("png:{}", path.display());
    tool(
        convert(),
        &[&format!("xwd:{}", xwd_file.display()), &png],
        display,
    );
    let _ = std::fs::remove_file(&xwd_file);
    let colours = tool(convert(), &[&png, "-format", "%k", "info:"], display);
    let rgb = tool(convert(), &[&png, "rgb:-"], display);
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

    // The host window the editor embeds into.
    let (conn, screen_num) = x11rb::connect(Some(&display)).expect("X connection");
    let screen = &conn.setup().roots[screen_num];
    let parent = conn.generate_id().unwrap();
    let (width, height) = {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().expect("gui extension");
        let config = GuiConfiguration {
            api_type: GuiApiType::X11,
            is_floating: false,
        };
        assert!(
            gui.is_api_supported(&handle, config),
            "X11 embedding supported"
        );
        gui.create(&handle, config).expect("gui create");
        let size = gui.get_size(&handle).expect("gui size");
        (size.width, size.height)
    };
    assert!(
        width >= 400 && height >= 300,
        "readable default size {width}x{height}"
    );
    conn.create_window(
        screen.root_depth,
        parent,
        screen.root,
        0,
        0,
        width as u16,
        height as u16,
        0,
        WindowClass::INPUT_OUTPUT,
        screen.root_visual,
        &CreateWindowAux::new().background_pixel(screen.black_pixel),
    )
    .unwrap();
    conn.map_window(parent).unwrap();
    // A round trip: the server has created the window before the plugin's own connection
    // refers to it.
    conn.get_input_focus().unwrap().reply().unwrap();
    {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().unwrap();
        // SAFETY: `parent` lives until the end of the test, after the gui is destroyed.
        unsafe { gui.set_parent(&handle, Window::from_x11_handle(parent as _)) }
            .expect("set_parent");
        gui.show(&handle).expect("show");
    }

    // Let it render while the transport plays (the playhead moves).
    let pump = |plugin: &mut Plugin, processor: &mut Processor, sim: &mut Sim, millis: u64| {
        let until = Instant::now() + Duration::from_millis(millis);
        while Instant::now() < until {
            sim.block(processor, 512, &[]);
            plugin.pump();
            std::thread::sleep(Duration::from_millis(10));
        }
    };
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
    tool(
        "xdotool",
        &[
            "mousemove",
            "--window",
            &parent.to_string(),
            &GENERATE_AT.0.to_string(),
            &GENERATE_AT.1.to_string(),
            "click",
            "1",
        ],
        &display,
    );
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
    if let Some(copy) = std::env::var_os("SMDIM_SCREENSHOT") {
        std::fs::copy(&after, copy).expect("copy screenshot");
    }
    assert!(
        processor.notes.iter().any(|n| n.on),
        "the generated phrase plays"
    );

    {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().unwrap();
        gui.destroy(&handle);
    }
    // The editor's window thread closes asynchronously.
    pump(&mut plugin, &mut processor, &mut sim, 500);
    plugin.deactivate(processor);
    drop(plugin);
    conn.destroy_window(parent).unwrap();
    conn.flush().unwrap();
    drop(conn);
    std::thread::sleep(Duration::from_millis(200));
}
