//! Drag a file out of a window: an XDND (version 5) drag *source* for X11, written with x11rb.
//!
//! [`start_file_drag`] blocks until the drag ends. It runs on its own X connection (the display
//! from `DISPLAY`, or [`DragOptions::display`]) and its own unmapped source window, so it works
//! while another toolkit (baseview) owns the window the drag started from: XDND replies are sent
//! to the source window named in the messages, and selection requests go to the selection owner,
//! both of which are this connection.
//!
//! The pointer position and button state are polled with `QueryPointer`, which works whether or
//! not the pointer grab succeeds (the toolkit that saw the button press usually holds an implicit
//! grab until the button is released). The pointer and keyboard are grabbed when possible (cursor
//! feedback, Escape); when the keyboard cannot be grabbed, Escape is read with `QueryKeymap`.
//! Every exit path ungrabs the pointer and the keyboard and gives up `XdndSelection`.

use std::fmt;
use std::path::Path;
use std::time::Duration;

#[cfg(all(unix, not(target_os = "macos")))]
mod x11;

/// The XDND protocol version this source speaks.
pub const XDND_VERSION: u32 = 5;

/// How a drag ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DragOutcome {
    /// The target accepted the drop and confirmed it with XdndFinished.
    Dropped {
        /// The X11 window (XDND-aware top-level) that took the drop.
        target: u32,
    },
    /// Released over no target, or over one that refused the data.
    Refused,
    /// Escape was pressed.
    Cancelled,
    /// The drag ran past [`DragOptions::timeout`], or the target never finished the drop.
    TimedOut,
}

/// Why a drag could not run.
#[derive(Debug)]
pub enum DragError {
    /// No X display (`DISPLAY` unset or unreachable).
    Connect(String),
    /// The X connection failed during the drag.
    Connection(String),
    /// The path is not absolute or not an existing file.
    Path(String),
    /// This platform has no drag source yet.
    Unsupported,
    /// The Windows or macOS drag (through the `drag` crate) failed to start.
    Platform(String),
}

impl fmt::Display for DragError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DragError::Connect(e) => write!(f, "cannot open the X display: {e}"),
            DragError::Connection(e) => write!(f, "X connection error: {e}"),
            DragError::Path(e) => write!(f, "cannot drag this file: {e}"),
            DragError::Unsupported => write!(
                f,
                "dragging files out is not supported on this platform yet (use Export .mid or Copy path)"
            ),
            DragError::Platform(e) => write!(f, "the drag could not start: {e}"),
        }
    }
}

impl std::error::Error for DragError {}

/// Tuning of [`start_file_drag_with`].
#[derive(Debug, Clone)]
pub struct DragOptions {
    /// X display name; `None` reads `DISPLAY`.
    pub display: Option<String>,
    /// The whole drag, press to finish.
    pub timeout: Duration,
    /// How long to wait for XdndFinished after XdndDrop (and for a late XdndStatus on release).
    pub finish_timeout: Duration,
    /// How often the pointer is polled.
    pub poll_interval: Duration,
}

impl Default for DragOptions {
    fn default() -> Self {
        DragOptions {
            display: None,
            timeout: Duration::from_secs(120),
            finish_timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(8),
        }
    }
}

/// Drags the file at `path` from `source_window` (an X11 window id) until the button is released,
/// Escape is pressed or the drag times out. Blocking: call it off the GUI thread, while the
/// mouse button that started the drag is still held.
pub fn start_file_drag(source_window: u32, path: &Path) -> Result<DragOutcome, DragError> {
    start_file_drag_with(source_window, path, &DragOptions::default())
}

/// [`start_file_drag`] with explicit options. On Windows and macOS this returns
/// [`DragError::Unsupported`]: those use [`start_native_file_drag`] from the GUI thread.
pub fn start_file_drag_with(
    source_window: u32,
    path: &Path,
    options: &DragOptions,
) -> Result<DragOutcome, DragError> {
    if !path.is_absolute() || !path.is_file() {
        return Err(DragError::Path(format!(
            "{} is not an absolute path to a file",
            path.display()
        )));
    }
    #[cfg(all(unix, not(target_os = "macos")))]
    return x11::drag(source_window, path, options);
    #[cfg(not(all(unix, not(target_os = "macos"))))]
    {
        let _ = (source_window, options);
        Err(DragError::Unsupported)
    }
}

/// Windows (OLE `DoDragDrop` with CF_HDROP) and macOS (`NSDraggingSession` with a file URL),
/// through the `drag` crate exactly as its documentation shows. Call it on the editor's GUI
/// thread, from the mouse-down that starts the drag: both systems run the drag loop on the
/// window's own thread. `on_end` gets `true` when the file was dropped. Compiled for Windows and
/// macOS in CI (tests/cross/run.sh), never run: Wine offers no drop target to test against.
#[cfg(any(windows, target_os = "macos"))]
pub fn start_native_file_drag<W: raw_window_handle::HasWindowHandle>(
    window: &W,
    path: &Path,
    on_end: impl Fn(bool) + Send + 'static,
) -> Result<(), DragError> {
    if !path.is_absolute() || !path.is_file() {
        return Err(DragError::Path(format!(
            "{} is not an absolute path to a file",
            path.display()
        )));
    }
    let item = drag::DragItem::Files(vec![path.to_path_buf()]);
    let preview = drag::Image::Raw(include_bytes!("../assets/drag-preview.png").to_vec());
    drag::start_drag(
        window,
        item,
        preview,
        move |result, _cursor_position| on_end(matches!(result, drag::DragResult::Dropped)),
        drag::Options::default(),
    )
    .map_err(|e| DragError::Platform(e.to_string()))
}

/// The `file://` URI of an absolute path, percent-encoding every byte outside RFC 3986's
/// unreserved set and `/`.
#[cfg(unix)]
pub fn file_uri(path: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut uri = String::from("file://");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/".contains(&b) {
            uri.push(b as char);
        } else {
            uri.push_str(&format!("%{b:02X}"));
        }
    }
    uri
}

/// Decodes a `file://` URI (as in a `text/uri-list` line) back into a path.
#[cfg(unix)]
pub fn path_from_file_uri(uri: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let rest = uri.trim().strip_prefix("file://")?;
    // An optional host part ("localhost") precedes the path.
    let rest = &rest[rest.find('/')?..];
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    Some(std::ffi::OsString::from_vec(out).into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let p = Path::new("/tmp/a b/C maj 8 bars #3 %.mid");
        let uri = file_uri(p);
        assert_eq!(uri, "file:///tmp/a%20b/C%20maj%208%20bars%20%233%20%25.mid");
        assert_eq!(path_from_file_uri(&uri).unwrap(), p);
        assert_eq!(
            path_from_file_uri("file://localhost/x/y%C3%A9").unwrap(),
            Path::new("/x/yé")
        );
    }
}
