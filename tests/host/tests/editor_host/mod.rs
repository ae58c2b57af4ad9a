//! The host side of the editor tests: the plugin's X11 editor embedded in a host window, and the
//! main-thread/audio pump that keeps it running. Shared by `editor.rs` and `editor_drag.rs`; the
//! X server and the input tools come from `smdim-x11-test-support`.

use std::time::{Duration, Instant};

use clack_extensions::gui::{GuiApiType, GuiConfiguration, PluginGui, Window as GuiWindow};
use smdim_host_tests::{Plugin, Processor, Sim};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, CreateWindowAux, Window, WindowClass};
use x11rb::rust_connection::RustConnection;

/// Where the Generate button's centre is, in editor pixels: it is the first widget of the top
/// row (see `plugin/smdim/src/editor.rs`).
#[allow(dead_code)] // not every test binary that compiles this module clicks Generate
pub const GENERATE_AT: (u32, u32) = (56, 22);

/// An editor embedded in a host's X11 window (what a Linux host asks for).
#[allow(dead_code)] // each test binary compiles this module; only editor.rs checks the support
pub const X11_EMBEDDED: GuiConfiguration = GuiConfiguration {
    api_type: GuiApiType::X11,
    is_floating: false,
};

/// Creates the plugin's editor, a host window of its size at (0, 0) on `display`, embeds the
/// editor there and shows it. Returns the host's connection, the host window and the editor's
/// size.
pub fn embed_editor(plugin: &mut Plugin, display: &str) -> (RustConnection, Window, (u32, u32)) {
    let (conn, screen_num) = x11rb::connect(Some(display)).expect("X connection");
    let screen = &conn.setup().roots[screen_num];
    let parent = conn.generate_id().unwrap();
    let (width, height) = {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().expect("gui extension");
        gui.create(&handle, X11_EMBEDDED).expect("gui create");
        let size = gui.get_size(&handle).expect("gui size");
        (size.width, size.height)
    };
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
        // SAFETY: the caller keeps `parent` until `close_editor`, after the gui is destroyed.
        unsafe { gui.set_parent(&handle, GuiWindow::from_x11_handle(parent as _)) }
            .expect("set_parent");
        gui.show(&handle).expect("show");
    }
    (conn, parent, (width, height))
}

/// Runs the plugin for `millis`: audio blocks with the transport playing (the playhead moves)
/// and the main-thread callbacks the editor asks for.
pub fn pump(plugin: &mut Plugin, processor: &mut Processor, sim: &mut Sim, millis: u64) {
    let until = Instant::now() + Duration::from_millis(millis);
    while Instant::now() < until {
        sim.block(processor, 512, &[]);
        plugin.pump();
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Destroys the editor, lets its window thread close (asynchronously), deactivates and drops
/// the plugin, then removes the host window.
pub fn close_editor(
    mut plugin: Plugin,
    mut processor: Processor,
    sim: &mut Sim,
    conn: RustConnection,
    parent: Window,
) {
    {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().unwrap();
        gui.destroy(&handle);
    }
    pump(&mut plugin, &mut processor, sim, 500);
    plugin.deactivate(processor);
    drop(plugin);
    conn.destroy_window(parent).unwrap();
    conn.flush().unwrap();
    drop(conn);
}

/// Moves the pointer to editor pixel (`x`, `y`) of the host window `parent`.
#[allow(dead_code)] // not every test binary that compiles this module moves in the editor
pub fn move_in_editor(display: &str, parent: Window, x: u32, y: u32) {
    smdim_x11_test_support::xdotool(
        display,
        &[
            "mousemove",
            "--window",
            &parent.to_string(),
            &x.to_string(),
            &y.to_string(),
        ],
    );
}

/// Clicks Generate until the plugin's saved state holds a phrase (the editor may still be
/// opening when the first click lands), then lets the editor draw it.
#[allow(dead_code)]
pub fn generate_by_click(
    plugin: &mut Plugin,
    processor: &mut Processor,
    sim: &mut Sim,
    display: &str,
    parent: Window,
) -> smdim_engine::Phrase {
    let started = Instant::now();
    let mut phrase = None;
    while phrase.is_none() && started.elapsed() < Duration::from_secs(60) {
        move_in_editor(display, parent, GENERATE_AT.0, GENERATE_AT.1);
        smdim_x11_test_support::xdotool(display, &["click", "1"]);
        for _ in 0..20 {
            pump(plugin, processor, sim, 100);
            phrase = smdim_host_tests::phrase_in_state(&plugin.save_state());
            if phrase.is_some() {
                break;
            }
        }
    }
    let phrase = phrase.expect("Generate produced a phrase");
    pump(plugin, processor, sim, 500);
    phrase
}
