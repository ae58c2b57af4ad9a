//! Drag from the real editor: after Generate, a synthetic press on the "Drag .mid" handle,
//! motion into an XDND drop target (x11rb, below) and a release: the target receives the URI of
//! a .mid in `$XDG_CACHE_HOME/smdim/drag/` that holds the generated phrase.
//!
//! Starts its own `Xvfb` (same Debian packages as `editor.rs`).

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use clack_extensions::gui::{GuiApiType, GuiConfiguration, PluginGui, Window as GuiWindow};
use smdim_host_tests::{phrase_in_state, HostTransport, Plugin, Processor, Sim};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, PropMode,
    Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::NONE;

/// The centre of the "Drag .mid" handle in editor pixels (top row, after Export .mid; see
/// `plugin/smdim/src/editor.rs` and `target/editor-test/editor.png`).
const DRAG_HANDLE_AT: (u32, u32) = (506, 14);

mod display;

use display::{start_xvfb, tool, GENERATE_AT};

fn atom(conn: &RustConnection, name: &str) -> Atom {
    conn.intern_atom(false, name.as_bytes())
        .unwrap()
        .reply()
        .unwrap()
        .atom
}

/// A mapped window at (x, y), 200 x 200, on its own connection.
fn window(conn: &RustConnection, x: i16, y: i16, mask: EventMask) -> Window {
    let screen = &conn.setup().roots[0];
    let win = conn.generate_id().unwrap();
    conn.create_window(
        screen.root_depth,
        win,
        screen.root,
        x,
        y,
        200,
        200,
        0,
        WindowClass::INPUT_OUTPUT,
        screen.root_visual,
        &CreateWindowAux::new()
            .background_pixel(screen.white_pixel)
            .override_redirect(1)
            .event_mask(mask),
    )
    .unwrap();
    conn.map_window(win).unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    win
}

/// What the drop target saw.
#[derive(Debug, Default, Clone)]
struct TargetReport {
    entered_with_uri_list: bool,
    version: u32,
    positions: usize,
    left: bool,
    dropped: bool,
    uri: Option<String>,
}

/// The XDND drop target: an `XdndAware` (version 5) window at (800, 150) that accepts
/// `text/uri-list` (or refuses everything), fetches the URI on drop and answers XdndFinished.
struct DropTarget {
    stop: Arc<AtomicBool>,
    /// XdndPosition messages seen so far (the drag is under way).
    positions: Arc<AtomicUsize>,
    handle: JoinHandle<TargetReport>,
}

impl DropTarget {
    fn start(display: &str, accept: bool) -> DropTarget {
        let display = display.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let positions = Arc::new(AtomicUsize::new(0));
        let positions2 = positions.clone();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || target_loop(&display, accept, &stop2, &positions2, tx));
        let _window: Window = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("target ready");
        DropTarget {
            stop,
            positions,
            handle,
        }
    }

    fn finish(self) -> TargetReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("target thread")
    }
}

fn target_loop(
    display: &str,
    accept: bool,
    stop: &AtomicBool,
    positions_seen: &AtomicUsize,
    ready: mpsc::Sender<Window>,
) -> TargetReport {
    let (conn, _) = RustConnection::connect(Some(display)).expect("target connects");
    let win = window(&conn, 800, 150, EventMask::PROPERTY_CHANGE);
    let [aware, enter, position, status, leave, drop, finished, selection, copy, uri_list, data_prop] =
        [
            "XdndAware",
            "XdndEnter",
            "XdndPosition",
            "XdndStatus",
            "XdndLeave",
            "XdndDrop",
            "XdndFinished",
            "XdndSelection",
            "XdndActionCopy",
            "text/uri-list",
            "SMDIM_TEST_DROP",
        ]
        .map(|n| atom(&conn, n));
    x11rb::wrapper::ConnectionExt::change_property32(
        &conn,
        PropMode::REPLACE,
        win,
        aware,
        AtomEnum::ATOM,
        &[5],
    )
    .unwrap();
    conn.get_input_focus().unwrap().reply().unwrap();
    ready.send(win).unwrap();

    let mut report = TargetReport::default();
    let mut source: Window = NONE;
    let reply = |conn: &RustConnection, to: Window, ty: Atom, data: [u32; 5]| {
        let ev = ClientMessageEvent::new(32, to, ty, data);
        conn.send_event(false, to, EventMask::NO_EVENT, ev).unwrap();
        conn.flush().unwrap();
    };
    while !stop.load(Ordering::SeqCst) {
        let Some(event) = conn.poll_for_event().unwrap() else {
            thread::sleep(Duration::from_millis(5));
            continue;
        };
        match event {
            Event::ClientMessage(ev) if ev.type_ == enter => {
                let d = ev.data.as_data32();
                source = d[0];
                report.version = d[1] >> 24;
                report.entered_with_uri_list = d[2..5].contains(&uri_list);
            }
            Event::ClientMessage(ev) if ev.type_ == position => {
                report.positions += 1;
                positions_seen.fetch_add(1, Ordering::SeqCst);
                let ok = accept && report.entered_with_uri_list;
                let action = if ok { copy } else { NONE };
                reply(&conn, source, status, [win, ok as u32, 0, 0, action]);
            }
            Event::ClientMessage(ev) if ev.type_ == leave => report.left = true,
            Event::ClientMessage(ev) if ev.type_ == drop => {
                report.dropped = true;
                if accept {
                    conn.convert_selection(
                        win,
                        selection,
                        uri_list,
                        data_prop,
                        ev.data.as_data32()[2],
                    )
                    .unwrap();
                    conn.flush().unwrap();
                } else {
                    reply(&conn, source, finished, [win, 0, NONE, 0, 0]);
                }
            }
            Event::SelectionNotify(ev) if ev.property != NONE => {
                let prop = conn
                    .get_property(true, win, ev.property, AtomEnum::ANY, 0, 1 << 16)
                    .unwrap()
                    .reply()
                    .unwrap();
                report.uri = Some(String::from_utf8(prop.value).unwrap());
                reply(&conn, source, finished, [win, 1, copy, 0, 0]);
            }
            _ => {}
        }
    }
    report
}

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
        gui.create(&handle, config).expect("gui create");
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
    conn.get_input_focus().unwrap().reply().unwrap();
    {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().unwrap();
        // SAFETY: `parent` lives until the end of the test, after the gui is destroyed.
        unsafe { gui.set_parent(&handle, GuiWindow::from_x11_handle(parent as _)) }
            .expect("set_parent");
        gui.show(&handle).expect("show");
    }
    let pump = |plugin: &mut Plugin, processor: &mut Processor, sim: &mut Sim, millis: u64| {
        let until = Instant::now() + Duration::from_millis(millis);
        while Instant::now() < until {
            sim.block(processor, 512, &[]);
            plugin.pump();
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    pump(&mut plugin, &mut processor, &mut sim, 1500);

    let at = |x: u32, y: u32| {
        tool(
            "xdotool",
            &[
                "mousemove",
                "--window",
                &parent.to_string(),
                &x.to_string(),
                &y.to_string(),
            ],
            &display,
        );
    };
    // Generate (the editor may still be opening: click until a phrase exists).
    let started = Instant::now();
    let mut phrase = None;
    while phrase.is_none() && started.elapsed() < Duration::from_secs(60) {
        at(GENERATE_AT.0, GENERATE_AT.1);
        tool("xdotool", &["click", "1"], &display);
        for _ in 0..20 {
            pump(&mut plugin, &mut processor, &mut sim, 100);
            phrase = phrase_in_state(&plugin.save_state());
            if phrase.is_some() {
                break;
            }
        }
    }
    let phrase = phrase.expect("Generate produced a phrase");
    pump(&mut plugin, &mut processor, &mut sim, 500);

    // The drop target sits right of the editor.
    let target = DropTarget::start(&display, true);
    // Press on the handle, pull it out of the editor into the target, release.
    at(DRAG_HANDLE_AT.0, DRAG_HANDLE_AT.1);
    pump(&mut plugin, &mut processor, &mut sim, 200);
    tool("xdotool", &["mousedown", "1"], &display);
    pump(&mut plugin, &mut processor, &mut sim, 200);
    for (x, y) in [(515, 18), (540, 30), (600, 60), (700, 120)] {
        at(x, y);
        pump(&mut plugin, &mut processor, &mut sim, 150);
    }
    for (x, y) in [(860, 200), (880, 220), (890, 230)] {
        tool(
            "xdotool",
            &["mousemove", &x.to_string(), &y.to_string()],
            &display,
        );
        pump(&mut plugin, &mut processor, &mut sim, 250);
    }
    let over = Instant::now();
    while target.positions.load(Ordering::SeqCst) == 0 && over.elapsed() < Duration::from_secs(20) {
        pump(&mut plugin, &mut processor, &mut sim, 50);
    }
    tool("xdotool", &["mouseup", "1"], &display);
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

    {
        let handle = plugin.instance.plugin_handle();
        let gui = handle.get_extension::<PluginGui>().unwrap();
        gui.destroy(&handle);
    }
    pump(&mut plugin, &mut processor, &mut sim, 500);
    plugin.deactivate(processor);
    drop(plugin);
    conn.destroy_window(parent).unwrap();
    conn.flush().unwrap();
    drop(conn);
    let _ = std::fs::remove_dir_all(&cache);
}
