//! A real XDND drag under a virtual X server: a source window, a small XDND drop target written
//! with x11rb (from `smdim-x11-test-support`), and synthetic pointer/keyboard input from
//! `xdotool` (XTest).
//!
//! Each test starts its own `Xvfb` (Debian packages: xvfb, xdotool).
#![cfg(all(unix, not(target_os = "macos")))]

use std::path::PathBuf;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use smdim_drag::{path_from_file_uri, start_file_drag_with, DragOptions, DragOutcome};
use smdim_engine::midi_file::{read_smf, save_smf, WriteOptions};
use smdim_engine::phrase::{Note, Phrase, TimeSignature};
use smdim_x11_test_support::{atom, start_xvfb, window, xdotool, DropTarget, Mode};
use x11rb::connection::Connection;
use x11rb::protocol::xproto::{ConnectionExt, EventMask, GrabMode, GrabStatus, Window};
use x11rb::rust_connection::RustConnection;
use x11rb::{CURRENT_TIME, NONE};

/// Where the drop target's window stands: right of the source window at (0, 0), on the path
/// `begin_drag` moves the pointer along.
const TARGET_AT: (i16, i16) = (500, 100);

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
    let target = DropTarget::start(&display, TARGET_AT, Mode::Accept);

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
    let target = DropTarget::start(&display, TARGET_AT, Mode::Accept);
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
    let target = DropTarget::start(&display, TARGET_AT, Mode::Refuse);
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
    let target = DropTarget::start(&display, TARGET_AT, Mode::Accept);
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
    let target = DropTarget::start(&display, TARGET_AT, Mode::NeverFinish);
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
