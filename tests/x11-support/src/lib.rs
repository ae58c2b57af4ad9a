//! Test-only helpers for the X11 tests of `smdim-drag` (`plugin/drag/tests/xdnd.rs`) and of the
//! plugin's editor (`tests/host/tests/editor*.rs`): a private `Xvfb`, X command-line tools run
//! against it, and a small XDND drop target written with x11rb.
//!
//! One crate so that the drag library and the editor that uses it are checked against the same
//! drop target. A dev-dependency only: nothing here ships in the plugin.
//!
//! Needs the Debian packages xvfb and xdotool at run time.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, PropMode,
    Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::NONE;

/// A running `Xvfb`; dropping it stops the server, so each test owns its display and a failing
/// test leaves no server behind.
pub struct Xvfb(Child);

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `Xvfb` (1024 x 768, 24 bit, no TCP) on a display it picks itself (`-displayfd`), so
/// tests can run in parallel; returns the guard and the display name (`":N"`).
pub fn start_xvfb() -> (Xvfb, String) {
    start_xvfb_sized(1024, 768)
}

/// [`start_xvfb`] with a screen of `width` x `height` (room for a DAW beside the editor).
pub fn start_xvfb_sized(width: u32, height: u32) -> (Xvfb, String) {
    let screen = format!("{width}x{height}x24");
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            &screen,
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (Debian package xvfb) must be installed");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("Xvfb reports its display");
    assert!(line.trim().parse::<u32>().is_ok(), "Xvfb display {line:?}");
    (Xvfb(child), format!(":{}", line.trim()))
}

/// Runs the X command-line tool `name` against `display`, panics unless it succeeds, and
/// returns its standard output.
pub fn tool(display: &str, name: &str, args: &[&str]) -> Vec<u8> {
    let out = Command::new(name)
        .args(args)
        .env("DISPLAY", display)
        .output()
        .unwrap_or_else(|e| panic!("{name} (install it): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Synthetic pointer and keyboard input (XTest) through `xdotool` (Debian package xdotool).
pub fn xdotool(display: &str, args: &[&str]) {
    tool(display, "xdotool", args);
}

/// Interns the atom `name`.
pub fn atom(conn: &RustConnection, name: &str) -> Atom {
    conn.intern_atom(false, name.as_bytes())
        .unwrap()
        .reply()
        .unwrap()
        .atom
}

/// A mapped window at (x, y), 200 x 200, on `conn`. Override-redirect: there is no window
/// manager, and the window must stay where the test put it.
pub fn window(conn: &RustConnection, x: i16, y: i16, mask: EventMask) -> Window {
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
    // A round trip: the window exists before other connections refer to it.
    conn.get_input_focus().unwrap().reply().unwrap();
    win
}

/// What the drop target saw.
#[derive(Debug, Default, Clone)]
pub struct TargetReport {
    /// XdndEnter offered `text/uri-list`.
    pub entered_with_uri_list: bool,
    /// The XDND version of the source (from XdndEnter).
    pub version: u32,
    /// XdndPosition messages received.
    pub positions: usize,
    /// XdndLeave received.
    pub left: bool,
    /// XdndDrop received.
    pub dropped: bool,
    /// The `text/uri-list` data fetched after the drop.
    pub uri: Option<String>,
}

/// How the drop target behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Accepts `text/uri-list` with XdndActionCopy, fetches the data on drop, finishes.
    Accept,
    /// Refuses every position and finishes a drop unsuccessfully.
    Refuse,
    /// Accepts, then never fetches the data nor sends XdndFinished.
    NeverFinish,
}

/// The XDND drop target: an `XdndAware` (version 5) 200 x 200 window at a given place that
/// accepts `text/uri-list` (or refuses everything), fetches the URI on drop and answers
/// XdndFinished. It runs on its own thread and connection, as another application would.
pub struct DropTarget {
    /// The target's window.
    pub window: Window,
    stop: Arc<AtomicBool>,
    /// XdndPosition messages seen so far (the drag is under way).
    positions: Arc<AtomicUsize>,
    handle: JoinHandle<TargetReport>,
}

impl DropTarget {
    /// Opens the target window at (x, y) on `display` and returns once it is XdndAware.
    pub fn start(display: &str, (x, y): (i16, i16), mode: Mode) -> DropTarget {
        let display = display.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let positions = Arc::new(AtomicUsize::new(0));
        let positions2 = positions.clone();
        let (tx, rx) = mpsc::channel();
        let handle =
            thread::spawn(move || target_loop(&display, (x, y), mode, &stop2, &positions2, tx));
        let window = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("target ready");
        DropTarget {
            window,
            stop,
            positions,
            handle,
        }
    }

    /// Whether a drag has sent XdndPosition to this target yet.
    pub fn is_dragged_over(&self) -> bool {
        self.positions.load(Ordering::SeqCst) != 0
    }

    /// Waits until the drag runs and has sent XdndPosition to this target.
    pub fn wait_until_dragged_over(&self) {
        let start = Instant::now();
        while !self.is_dragged_over() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the drag never reached the target"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Stops the target and returns what it saw.
    pub fn finish(self) -> TargetReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("target thread")
    }
}

/// The atoms the drop target uses.
struct Atoms {
    aware: Atom,
    enter: Atom,
    position: Atom,
    status: Atom,
    leave: Atom,
    drop: Atom,
    finished: Atom,
    selection: Atom,
    copy: Atom,
    uri_list: Atom,
    /// The property on the target window the dropped data is converted into.
    data_prop: Atom,
}

impl Atoms {
    fn new(conn: &RustConnection) -> Atoms {
        Atoms {
            aware: atom(conn, "XdndAware"),
            enter: atom(conn, "XdndEnter"),
            position: atom(conn, "XdndPosition"),
            status: atom(conn, "XdndStatus"),
            leave: atom(conn, "XdndLeave"),
            drop: atom(conn, "XdndDrop"),
            finished: atom(conn, "XdndFinished"),
            selection: atom(conn, "XdndSelection"),
            copy: atom(conn, "XdndActionCopy"),
            uri_list: atom(conn, "text/uri-list"),
            data_prop: atom(conn, "SMDIM_TEST_DROP"),
        }
    }
}

fn target_loop(
    display: &str,
    (x, y): (i16, i16),
    mode: Mode,
    stop: &AtomicBool,
    positions_seen: &AtomicUsize,
    ready: mpsc::Sender<Window>,
) -> TargetReport {
    let (conn, _) = RustConnection::connect(Some(display)).expect("target connects");
    let win = window(&conn, x, y, EventMask::PROPERTY_CHANGE);
    let a = Atoms::new(&conn);
    x11rb::wrapper::ConnectionExt::change_property32(
        &conn,
        PropMode::REPLACE,
        win,
        a.aware,
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
            Event::ClientMessage(ev) if ev.type_ == a.enter => {
                let d = ev.data.as_data32();
                source = d[0];
                report.version = d[1] >> 24;
                report.entered_with_uri_list = d[2..5].contains(&a.uri_list);
            }
            Event::ClientMessage(ev) if ev.type_ == a.position => {
                report.positions += 1;
                positions_seen.fetch_add(1, Ordering::SeqCst);
                let ok = mode != Mode::Refuse && report.entered_with_uri_list;
                let action = if ok { a.copy } else { NONE };
                reply(&conn, source, a.status, [win, ok as u32, 0, 0, action]);
            }
            Event::ClientMessage(ev) if ev.type_ == a.leave => report.left = true,
            Event::ClientMessage(ev) if ev.type_ == a.drop => {
                report.dropped = true;
                if mode == Mode::Accept {
                    conn.convert_selection(
                        win,
                        a.selection,
                        a.uri_list,
                        a.data_prop,
                        ev.data.as_data32()[2],
                    )
                    .unwrap();
                    conn.flush().unwrap();
                } else if mode == Mode::Refuse {
                    reply(&conn, source, a.finished, [win, 0, NONE, 0, 0]);
                }
            }
            Event::SelectionNotify(ev) if ev.property != NONE => {
                let prop = conn
                    .get_property(true, win, ev.property, AtomEnum::ANY, 0, 1 << 16)
                    .unwrap()
                    .reply()
                    .unwrap();
                report.uri = Some(String::from_utf8(prop.value).unwrap());
                reply(&conn, source, a.finished, [win, 1, a.copy, 0, 0]);
            }
            _ => {}
        }
    }
    report
}
