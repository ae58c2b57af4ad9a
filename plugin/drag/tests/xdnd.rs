//! A real XDND drag under a virtual X server: a source window, a small XDND drop target written
//! with x11rb (below), and synthetic pointer/keyboard input from `xdotool` (XTest).
//!
//! Each test starts its own `Xvfb` (Debian packages: xvfb, xdotool).
#![cfg(all(unix, not(target_os = "macos")))]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use smdim_drag::{path_from_file_uri, start_file_drag_with, DragOptions, DragOutcome};
use smdim_engine::midi_file::{read_smf, save_smf, WriteOptions};
use smdim_engine::phrase::{Note, Phrase, TimeSignature};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, GrabMode,
    GrabStatus, PropMode, Window, WindowClass,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::{CURRENT_TIME, NONE};

struct Xvfb(Child);

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_xvfb() -> (Xvfb, String) {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1024x768x24",
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

fn xdotool(display: &str, args: &[&str]) {
    let out = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .output()
        .expect("xdotool (Debian package xdotool) must be installed");
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

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

/// How the drop target behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Accept,
    Refuse,
    /// Accepts, then never fetches the data nor sends XdndFinished.
    NeverFinish,
}

/// The XDND drop target: an `XdndAware` (version 5) window at (500, 100) that accepts
/// `text/uri-list` (or refuses everything), fetches the URI on drop and answers XdndFinished.
struct DropTarget {
    window: Window,
    stop: Arc<AtomicBool>,
    /// XdndPosition messages seen so far (the drag is under way).
    positions: Arc<AtomicUsize>,
    handle: JoinHandle<TargetReport>,
}

impl DropTarget {
    fn start(display: &str, mode: Mode) -> DropTarget {
        let display = display.to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let positions = Arc::new(AtomicUsize::new(0));
        let positions2 = positions.clone();
        let (tx, rx) = mpsc::channel();
        let handle = thread::spawn(move || target_loop(&display, mode, &stop2, &positions2, tx));
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

    /// Waits until the drag runs and has sent XdndPosition to this target.
    fn wait_until_dragged_over(&self) {
        let start = Instant::now();
        while self.positions.load(Ordering::SeqCst) == 0 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "the drag never reached the target"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn finish(self) -> TargetReport {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.join().expect("target thread")
    }
}

fn target_loop(
    display: &str,
    mode: Mode,
    stop: &AtomicBool,
    positions_seen: &AtomicUsize,
    ready: mpsc::Sender<Window>,
) -> TargetReport {
    let (conn, _) = RustConnection::connect(Some(display)).expect("target connects");
    let win = window(&conn, 500, 100, EventMask::PROPERTY_CHANGE);
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
                let ok = mode != Mode::Refuse && report.entered_with_uri_list;
                let action = if ok { copy } else { NONE };
                reply(&conn, source, status, [win, ok as u32, 0, 0, action]);
            }
            Event::ClientMessage(ev) if ev.type_ == leave => report.left = true,
            Event::ClientMessage(ev) if ev.type_ == drop => {
                report.dropped = true;
                if mode == Mode::Accept {
                    conn.convert_selection(
                        win,
                        selection,
                        uri_list,
                        data_prop,
                        ev.data.as_data32()[2],
                    )
                    .unwrap();
                    conn.flush().unwrap();
                } else if mode == Mode::Refuse {
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

fn test_phrase() -> Phrase {
    let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 2);
    for (i, pitch) in [60u8, 64, 67, 72, 71, 67].into_iter().enumerate() {
        phrase.notes.push(Note {
            start: i as u32 * 480,
            length: 400,
            pitch,
            velocity: 90 + i as u8,
        });
    }
    phrase.normalize();
    phrase
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("smdim-drag-test-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn options(display: &str) -> DragOptions {
    DragOptions {
        display: Some(display.to_string()),
        timeout: Duration::from_secs(20),
        finish_timeout: Duration::from_secs(5),
        ..DragOptions::default()
    }
}

/// Presses the button on the source window and starts the drag on a thread.
fn begin_drag(
    display: &str,
    source: Window,
    path: PathBuf,
) -> JoinHandle<Result<DragOutcome, smdim_drag::DragError>> {
    xdotool(display, &["mousemove", "100", "100"]);
    xdotool(display, &["mousedown", "1"]);
    let opts = options(display);
    let handle = thread::spawn(move || start_file_drag_with(source, &path, &opts));
    thread::sleep(Duration::from_millis(300));
    for (x, y) in [
        ("250", "150"),
        ("450", "180"),
        ("560", "200"),
        ("580", "210"),
    ] {
        xdotool(display, &["mousemove", x, y]);
        thread::sleep(Duration::from_millis(150));
    }
    handle
}

fn join(handle: JoinHandle<Result<DragOutcome, smdim_drag::DragError>>) -> DragOutcome {
    let start = Instant::now();
    while !handle.is_finished() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "drag never ended"
        );
        thread::sleep(Duration::from_millis(20));
    }
    handle.join().expect("drag thread").expect("drag runs")
}

/// Waits until a drag owns `XdndSelection` (it is running), plus time for its first poll.
fn wait_until_drag_runs(conn: &RustConnection) {
    let selection = atom(conn, "XdndSelection");
    let start = Instant::now();
    while conn
        .get_selection_owner(selection)
        .unwrap()
        .reply()
        .unwrap()
        .owner
        == NONE
    {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the drag never started"
        );
        thread::sleep(Duration::from_millis(10));
    }
    thread::sleep(Duration::from_millis(300));
}

/// After the drag no client holds the pointer or keyboard: another client can grab both.
fn assert_no_grab_left(display: &str) {
    let (conn, screen) = RustConnection::connect(Some(display)).unwrap();
    let root = conn.setup().roots[screen].root;
    let p = conn
        .grab_pointer(
            false,
            root,
            EventMask::BUTTON_PRESS,
            GrabMode::ASYNC,
            GrabMode::ASYNC,
            NONE,
            NONE,
            CURRENT_TIME,
        )
        .unwrap()
        .reply()
        .unwrap();
    assert_eq!(p.status, GrabStatus::SUCCESS, "pointer still grabbed");
    let k = conn
        .grab_keyboard(false, root, CURRENT_TIME, GrabMode::ASYNC, GrabMode::ASYNC)
        .unwrap()
        .reply()
        .unwrap();
    assert_eq!(k.status, GrabStatus::SUCCESS, "keyboard still grabbed");
    conn.ungrab_pointer(CURRENT_TIME).unwrap();
    conn.ungrab_keyboard(CURRENT_TIME).unwrap();
    conn.flush().unwrap();
}

#[test]
fn drop_delivers_the_midi_file_uri() {
    let (_xvfb, display) = start_xvfb();
    let (conn, _) = RustConnection::connect(Some(&display)).unwrap();
    let source = window(&conn, 0, 0, EventMask::NO_EVENT);
    let target = DropTarget::start(&display, Mode::Accept);

    let phrase = test_phrase();
    // Spaces, '#' and '%' exercise the URI encoding.
    let path = temp_dir("drop").join("SMDIM C major 2 bars seed #7 100%.mid");
    let write = WriteOptions {
        tempo: 97.0,
        track_name: "SMDIM lead",
        ..WriteOptions::default()
    };
    save_smf(&phrase, &write, &path).unwrap();

    let drag = begin_drag(&display, source, path.clone());
    target.wait_until_dragged_over();
    xdotool(&display, &["mouseup", "1"]);
    let outcome = join(drag);
    let target_window = target.window;
    let report = target.finish();

    assert_eq!(
        outcome,
        DragOutcome::Dropped {
            target: target_window
        },
        "{report:?}"
    );
    assert!(
        report.entered_with_uri_list && report.version == 5,
        "{report:?}"
    );
    assert!(
        report.positions > 0 && report.dropped && !report.left,
        "{report:?}"
    );
    let uri = report.uri.expect("the target received the data");
    let lines: Vec<&str> = uri.lines().collect();
    assert_eq!(lines.len(), 1, "{uri:?}");
    assert!(lines[0].starts_with("file:///"), "{uri:?}");
    let dropped = path_from_file_uri(lines[0]).expect("a file URI");
    assert_eq!(dropped, path);
    // The file outlives the drag and is the phrase.
    let midi = read_smf(&std::fs::read(&dropped).unwrap()).unwrap();
    assert_eq!(midi.phrase.notes, phrase.notes);
    assert_eq!(midi.tempo_map.len(), 1);
    assert!((midi.tempo_map[0].1 - 97.0).abs() < 0.01);
    assert_no_grab_left(&display);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn escape_cancels_and_leaves_no_grab() {
    let (_xvfb, display) = start_xvfb();
    let (conn, _) = RustConnection::connect(Some(&display)).unwrap();
    let source = window(&conn, 0, 0, EventMask::NO_EVENT);
    let target = DropTarget::start(&display, Mode::Accept);
    let path = temp_dir("escape").join("phrase.mid");
    save_smf(&test_phrase(), &WriteOptions::default(), &path).unwrap();

    let drag = begin_drag(&display, source, path.clone());
    target.wait_until_dragged_over();
    xdotool(&display, &["key", "Escape"]);
    let outcome = join(drag);
    // The button is still down: the grab must be gone anyway.
    assert_no_grab_left(&display);
    xdotool(&display, &["mouseup", "1"]);
    let report = target.finish();
    assert_eq!(outcome, DragOutcome::Cancelled, "{report:?}");
    assert!(
        report.positions > 0 && report.left && !report.dropped,
        "{report:?}"
    );
    assert!(report.uri.is_none());
    assert!(path.exists(), "the file is not removed by the drag");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn refusing_target_ends_refused() {
    let (_xvfb, display) = start_xvfb();
    let (conn, _) = RustConnection::connect(Some(&display)).unwrap();
    let source = window(&conn, 0, 0, EventMask::NO_EVENT);
    let target = DropTarget::start(&display, Mode::Refuse);
    let path = temp_dir("refuse").join("phrase.mid");
    save_smf(&test_phrase(), &WriteOptions::default(), &path).unwrap();

    let drag = begin_drag(&display, source, path.clone());
    target.wait_until_dragged_over();
    xdotool(&display, &["mouseup", "1"]);
    let outcome = join(drag);
    let report = target.finish();
    assert_eq!(outcome, DragOutcome::Refused, "{report:?}");
    assert!(
        report.positions > 0 && report.left && !report.dropped,
        "{report:?}"
    );
    assert_no_grab_left(&display);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn release_over_nothing_is_refused() {
    let (_xvfb, display) = start_xvfb();
    let (conn, _) = RustConnection::connect(Some(&display)).unwrap();
    let source = window(&conn, 0, 0, EventMask::NO_EVENT);
    let path = temp_dir("nothing").join("phrase.mid");
    save_smf(&test_phrase(), &WriteOptions::default(), &path).unwrap();
    let drag = begin_drag(&display, source, path.clone());
    wait_until_drag_runs(&conn);
    xdotool(&display, &["mouseup", "1"]);
    assert_eq!(join(drag), DragOutcome::Refused);
    assert_no_grab_left(&display);
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// The usual case inside a plugin: the toolkit that saw the button press holds the pointer
/// (an implicit grab on its window), so the drag cannot grab it and polls instead.
#[test]
fn drop_works_while_another_client_holds_the_pointer() {
    let (_xvfb, display) = start_xvfb();
    let (conn, _) = RustConnection::connect(Some(&display)).unwrap();
    let source = window(
        &conn,
        0,
        0,
        EventMask::BUTTON_PRESS | EventMask::BUTTON_RELEASE | EventMask::POINTER_MOTION,
    );
    let target = DropTarget::start(&display, Mode::Accept);
    let path = temp_dir("implicit").join("phrase.mid");
    let phrase = test_phrase();
    save_smf(&phrase, &WriteOptions::default(), &path).unwrap();

    let drag = begin_drag(&display, source, path.clone());
    target.wait_until_dragged_over();
    xdotool(&display, &["mouseup", "1"]);
    let outcome = join(drag);
    let target_window = target.window;
    let report = target.finish();
    assert_eq!(
        outcome,
        DragOutcome::Dropped {
            target: target_window
        },
        "{report:?}"
    );
    let dropped = path_from_file_uri(report.uri.unwrap().trim()).unwrap();
    assert_eq!(
        read_smf(&std::fs::read(dropped).unwrap())
            .unwrap()
            .phrase
            .notes,
        phrase.notes
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

#[test]
fn target_that_never_finishes_times_out_cleanly() {
    let (_xvfb, display) = start_xvfb();
    let (conn, _) = RustConnection::connect(Some(&display)).unwrap();
    let source = window(&conn, 0, 0, EventMask::NO_EVENT);
    let target = DropTarget::start(&display, Mode::NeverFinish);
    let path = temp_dir("never").join("phrase.mid");
    save_smf(&test_phrase(), &WriteOptions::default(), &path).unwrap();

    xdotool(&display, &["mousemove", "100", "100"]);
    xdotool(&display, &["mousedown", "1"]);
    let opts = DragOptions {
        finish_timeout: Duration::from_secs(1),
        ..options(&display)
    };
    let drag_path = path.clone();
    let drag = thread::spawn(move || start_file_drag_with(source, &drag_path, &opts));
    thread::sleep(Duration::from_millis(300));
    for (x, y) in [("450", "180"), ("560", "200"), ("580", "210")] {
        xdotool(&display, &["mousemove", x, y]);
        thread::sleep(Duration::from_millis(150));
    }
    target.wait_until_dragged_over();
    xdotool(&display, &["mouseup", "1"]);
    assert_eq!(join(drag), DragOutcome::TimedOut);
    let report = target.finish();
    assert!(report.dropped && report.uri.is_none(), "{report:?}");
    assert_no_grab_left(&display);
    assert_eq!(
        conn.get_selection_owner(atom(&conn, "XdndSelection"))
            .unwrap()
            .reply()
            .unwrap()
            .owner,
        NONE,
        "the selection is given up"
    );
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}
