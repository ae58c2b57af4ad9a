//! The XDND source itself (X11 only).

use std::path::Path;
use std::time::{Duration, Instant};

use x11rb::connection::Connection;
use x11rb::protocol::xproto::{
    Atom, AtomEnum, ClientMessageEvent, ConnectionExt, CreateWindowAux, EventMask, GrabMode,
    GrabStatus, PropMode, SelectionNotifyEvent, SelectionRequestEvent, Window, WindowClass,
    SELECTION_NOTIFY_EVENT,
};
use x11rb::protocol::Event;
use x11rb::rust_connection::RustConnection;
use x11rb::{CURRENT_TIME, NONE};

use crate::{file_uri, DragError, DragOptions, DragOutcome, XDND_VERSION};

fn conn_err<E: std::fmt::Display>(e: E) -> DragError {
    DragError::Connection(e.to_string())
}

struct Atoms {
    aware: Atom,
    proxy: Atom,
    enter: Atom,
    position: Atom,
    status: Atom,
    leave: Atom,
    drop: Atom,
    finished: Atom,
    selection: Atom,
    action_copy: Atom,
    uri_list: Atom,
    text_plain: Atom,
    utf8_text: Atom,
    utf8_string: Atom,
    targets: Atom,
}

impl Atoms {
    fn new(conn: &RustConnection) -> Result<Atoms, DragError> {
        let names = [
            "XdndAware",
            "XdndProxy",
            "XdndEnter",
            "XdndPosition",
            "XdndStatus",
            "XdndLeave",
            "XdndDrop",
            "XdndFinished",
            "XdndSelection",
            "XdndActionCopy",
            "text/uri-list",
            "text/plain",
            "text/plain;charset=utf-8",
            "UTF8_STRING",
            "TARGETS",
        ];
        let cookies = names
            .iter()
            .map(|n| conn.intern_atom(false, n.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(conn_err)?;
        let mut a = Vec::with_capacity(names.len());
        for c in cookies {
            a.push(c.reply().map_err(conn_err)?.atom);
        }
        Ok(Atoms {
            aware: a[0],
            proxy: a[1],
            enter: a[2],
            position: a[3],
            status: a[4],
            leave: a[5],
            drop: a[6],
            finished: a[7],
            selection: a[8],
            action_copy: a[9],
            uri_list: a[10],
            text_plain: a[11],
            utf8_text: a[12],
            utf8_string: a[13],
            targets: a[14],
        })
    }
}

/// The XDND-aware window currently under the pointer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Target {
    /// The window the pointer is over (named in the messages).
    window: Window,
    /// Where the messages go (differs with XdndProxy).
    deliver_to: Window,
    version: u32,
}

struct Session<'a> {
    conn: &'a RustConnection,
    atoms: Atoms,
    root: Window,
    me: Window,
    /// The window the drag started from: never its own target.
    source: Window,
    uri: String,
    /// A server timestamp from the start of the drag: selection ownership and XdndDrop.
    time: u32,
}

const BUTTON_MASKS: u16 = 0x100 | 0x200 | 0x400; // Button1..3
const ESCAPE_KEYSYM: u32 = 0xff1b;

/// A current server timestamp: a zero-length property append on `window` (which selects
/// PropertyChange) and the time of its PropertyNotify; `CURRENT_TIME` if none comes within 1 s.
fn server_time(conn: &RustConnection, window: Window) -> Result<u32, DragError> {
    conn.change_property(
        PropMode::APPEND,
        window,
        AtomEnum::WM_NAME,
        AtomEnum::STRING,
        8,
        0,
        &[],
    )
    .map_err(conn_err)?;
    conn.flush().map_err(conn_err)?;
    let until = Instant::now() + Duration::from_secs(1);
    while Instant::now() < until {
        match conn.poll_for_event().map_err(conn_err)? {
            Some(Event::PropertyNotify(ev)) if ev.window == window => return Ok(ev.time),
            Some(_) => {}
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    Ok(CURRENT_TIME)
}

/// [`crate::start_file_drag_with`] on X11.
pub(crate) fn drag(
    source_window: u32,
    path: &Path,
    options: &DragOptions,
) -> Result<DragOutcome, DragError> {
    let (conn, screen_num) = RustConnection::connect(options.display.as_deref())
        .map_err(|e| DragError::Connect(e.to_string()))?;
    let root = conn.setup().roots[screen_num].root;
    let atoms = Atoms::new(&conn)?;
    let me = conn.generate_id().map_err(conn_err)?;
    conn.create_window(
        0,
        me,
        root,
        -10,
        -10,
        1,
        1,
        0,
        WindowClass::INPUT_ONLY,
        0,
        &CreateWindowAux::new().event_mask(EventMask::PROPERTY_CHANGE),
    )
    .map_err(conn_err)?;
    let time = server_time(&conn, me)?;
    let session = Session {
        conn: &conn,
        atoms,
        root,
        me,
        source: source_window,
        uri: file_uri(path),
        time,
    };
    let grab_window = if source_window != 0 {
        source_window
    } else {
        root
    };
    let result = session.run(grab_window, options);
    // Every exit path: release the grabs and the selection, and drop the helper window.
    let _ = conn.ungrab_pointer(CURRENT_TIME);
    let _ = conn.ungrab_keyboard(CURRENT_TIME);
    let _ = conn.set_selection_owner(NONE, session.atoms.selection, CURRENT_TIME);
    let _ = conn.destroy_window(me);
    let _ = conn.get_input_focus().map(|c| c.reply());
    result
}

impl Session<'_> {
    fn run(&self, grab_window: Window, options: &DragOptions) -> Result<DragOutcome, DragError> {
        let conn = self.conn;
        let deadline = Instant::now() + options.timeout;
        conn.set_selection_owner(self.me, self.atoms.selection, self.time)
            .map_err(conn_err)?;

        // Grabs are best effort: the toolkit that got the button press may hold the pointer.
        let pointer_grabbed = self.grab_pointer(grab_window)?;
        let keyboard_grabbed = conn
            .grab_keyboard(
                false,
                grab_window,
                CURRENT_TIME,
                GrabMode::ASYNC,
                GrabMode::ASYNC,
            )
            .map_err(conn_err)?
            .reply()
            .map(|r| r.status == GrabStatus::SUCCESS)
            .unwrap_or(false);
        let escape_keycodes = self.escape_keycodes()?;
        let _ = pointer_grabbed;

        let mut target: Option<Target> = None;
        let mut accepted = false;
        let mut awaiting_status = false;
        let mut position_dirty = false;
        let mut last_pos = (i16::MIN, i16::MIN);
        // The drag needs a held button; a drag started without one ends at the first release
        // after a press.
        let mut seen_button = false;

        loop {
            if Instant::now() >= deadline {
                self.leave(target)?;
                return Ok(DragOutcome::TimedOut);
            }
            // Events: XDND replies, selection requests, Escape from the keyboard grab.
            while let Some(event) = conn.poll_for_event().map_err(conn_err)? {
                match event {
                    Event::ClientMessage(ev) if ev.type_ == self.atoms.status => {
                        let d = ev.data.as_data32();
                        if target.is_some_and(|t| t.window == d[0]) {
                            accepted = d[1] & 1 == 1;
                            awaiting_status = false;
                        }
                    }
                    Event::SelectionRequest(req) => self.answer(&req)?,
                    Event::KeyPress(k) if escape_keycodes.contains(&k.detail) => {
                        self.leave(target)?;
                        return Ok(DragOutcome::Cancelled);
                    }
                    _ => {}
                }
            }
            if !keyboard_grabbed {
                let keys = conn
                    .query_keymap()
                    .map_err(conn_err)?
                    .reply()
                    .map_err(conn_err)?;
                if escape_keycodes
                    .iter()
                    .any(|&k| keys.keys[k as usize / 8] & (1 << (k % 8)) != 0)
                {
                    self.leave(target)?;
                    return Ok(DragOutcome::Cancelled);
                }
            }

            let pointer = conn
                .query_pointer(self.root)
                .map_err(conn_err)?
                .reply()
                .map_err(conn_err)?;
            let held = u16::from(pointer.mask) & BUTTON_MASKS != 0;
            seen_button |= held;
            let pos = (pointer.root_x, pointer.root_y);

            if pos != last_pos || (seen_button && !held) {
                let now = self.find_target(pointer.child)?;
                if now.map(|t| t.window) != target.map(|t| t.window) {
                    self.leave(target)?;
                    target = now;
                    accepted = false;
                    awaiting_status = false;
                    if let Some(t) = target {
                        self.enter(t)?;
                    }
                    position_dirty = true;
                }
                if pos != last_pos {
                    position_dirty = true;
                    last_pos = pos;
                }
            }
            // One XdndPosition in flight at a time; the latest position follows the status.
            if let Some(t) = target {
                if position_dirty && !awaiting_status {
                    self.send(
                        t,
                        self.atoms.position,
                        [
                            self.me,
                            0,
                            ((pos.0 as u16 as u32) << 16) | pos.1 as u16 as u32,
                            self.time,
                            self.atoms.action_copy,
                        ],
                    )?;
                    awaiting_status = true;
                    position_dirty = false;
                }
            }

            if seen_button && !held {
                return self.release(target, accepted, awaiting_status, options, deadline);
            }
            std::thread::sleep(options.poll_interval);
        }
    }

    fn grab_pointer(&self, grab_window: Window) -> Result<bool, DragError> {
        let mask = EventMask::BUTTON_RELEASE | EventMask::POINTER_MOTION | EventMask::BUTTON_PRESS;
        for window in [grab_window, self.root] {
            let reply = self
                .conn
                .grab_pointer(
                    false,
                    window,
                    mask,
                    GrabMode::ASYNC,
                    GrabMode::ASYNC,
                    NONE,
                    NONE,
                    CURRENT_TIME,
                )
                .map_err(conn_err)?
                .reply();
            match reply {
                Ok(r) if r.status == GrabStatus::SUCCESS => return Ok(true),
                // AlreadyGrabbed (a toolkit's implicit grab): poll without a grab.
                Ok(_) => return Ok(false),
                // A foreign window id that is gone: try the root window.
                Err(_) => continue,
            }
        }
        Ok(false)
    }

    fn escape_keycodes(&self) -> Result<Vec<u8>, DragError> {
        let setup = self.conn.setup();
        let (min, max) = (setup.min_keycode, setup.max_keycode);
        let map = self
            .conn
            .get_keyboard_mapping(min, max - min + 1)
            .map_err(conn_err)?
            .reply()
            .map_err(conn_err)?;
        let per = map.keysyms_per_keycode.max(1) as usize;
        Ok(map
            .keysyms
            .chunks(per)
            .enumerate()
            .filter(|(_, syms)| syms.contains(&ESCAPE_KEYSYM))
            .map(|(i, _)| min + i as u8)
            .collect())
    }

    /// Walks down from the root's child under the pointer to the first XdndAware window.
    fn find_target(&self, mut window: Window) -> Result<Option<Target>, DragError> {
        let mut depth = 0;
        while window != NONE && depth < 32 {
            depth += 1;
            if window == self.me || (window == self.source && window != NONE) {
                return Ok(None);
            }
            // XdndProxy: messages go to the proxy, which must itself carry XdndAware.
            let proxy = self.window_property(window, self.atoms.proxy, AtomEnum::WINDOW.into())?;
            let check = proxy.filter(|&p| p != NONE).unwrap_or(window);
            if let Some(version) =
                self.window_property(check, self.atoms.aware, AtomEnum::ATOM.into())?
            {
                if version >= 3 {
                    return Ok(Some(Target {
                        window,
                        deliver_to: check,
                        version: version.min(XDND_VERSION),
                    }));
                }
                return Ok(None);
            }
            window = match self.conn.query_pointer(window).map_err(conn_err)?.reply() {
                Ok(r) => r.child,
                Err(_) => NONE,
            };
        }
        Ok(None)
    }

    fn window_property(
        &self,
        window: Window,
        prop: Atom,
        ty: Atom,
    ) -> Result<Option<u32>, DragError> {
        let reply = match self
            .conn
            .get_property(false, window, prop, ty, 0, 1)
            .map_err(conn_err)?
            .reply()
        {
            Ok(r) => r,
            Err(_) => return Ok(None), // the window vanished
        };
        Ok(reply.value32().and_then(|mut v| v.next()))
    }

    fn send(&self, target: Target, ty: Atom, data: [u32; 5]) -> Result<(), DragError> {
        let ev = ClientMessageEvent::new(32, target.window, ty, data);
        self.conn
            .send_event(false, target.deliver_to, EventMask::NO_EVENT, ev)
            .map_err(conn_err)?;
        self.conn.flush().map_err(conn_err)
    }

    fn enter(&self, t: Target) -> Result<(), DragError> {
        self.send(
            t,
            self.atoms.enter,
            [
                self.me,
                t.version << 24,
                self.atoms.uri_list,
                self.atoms.text_plain,
                NONE,
            ],
        )
    }

    fn leave(&self, t: Option<Target>) -> Result<(), DragError> {
        match t {
            Some(t) => self.send(t, self.atoms.leave, [self.me, 0, 0, 0, 0]),
            None => Ok(()),
        }
    }

    fn release(
        &self,
        target: Option<Target>,
        mut accepted: bool,
        mut awaiting_status: bool,
        options: &DragOptions,
        deadline: Instant,
    ) -> Result<DragOutcome, DragError> {
        let Some(t) = target else {
            return Ok(DragOutcome::Refused);
        };
        let finish_by = (Instant::now() + options.finish_timeout).min(deadline);
        // A status still in flight decides whether this is a drop.
        while awaiting_status {
            match self.next_event(finish_by)? {
                Some(Event::ClientMessage(ev)) if ev.type_ == self.atoms.status => {
                    if ev.data.as_data32()[0] == t.window {
                        accepted = ev.data.as_data32()[1] & 1 == 1;
                        awaiting_status = false;
                    }
                }
                Some(Event::SelectionRequest(req)) => self.answer(&req)?,
                Some(_) => {}
                None => {
                    self.leave(Some(t))?;
                    return Ok(DragOutcome::TimedOut);
                }
            }
        }
        if !accepted {
            self.leave(Some(t))?;
            return Ok(DragOutcome::Refused);
        }
        self.send(t, self.atoms.drop, [self.me, 0, self.time, 0, 0])?;
        // The pointer is free while the target fetches the data.
        let _ = self.conn.ungrab_pointer(CURRENT_TIME);
        let _ = self.conn.ungrab_keyboard(CURRENT_TIME);
        let _ = self.conn.flush();
        loop {
            match self.next_event(finish_by)? {
                Some(Event::ClientMessage(ev)) if ev.type_ == self.atoms.finished => {
                    let d = ev.data.as_data32();
                    if d[0] != t.window {
                        continue;
                    }
                    // Version 5 says whether the drop was performed; older targets do not.
                    let ok = t.version < 5 || d[1] & 1 == 1;
                    return Ok(if ok {
                        DragOutcome::Dropped { target: t.window }
                    } else {
                        DragOutcome::Refused
                    });
                }
                Some(Event::SelectionRequest(req)) => self.answer(&req)?,
                Some(_) => {}
                None => return Ok(DragOutcome::TimedOut),
            }
        }
    }

    fn next_event(&self, until: Instant) -> Result<Option<Event>, DragError> {
        loop {
            if let Some(ev) = self.conn.poll_for_event().map_err(conn_err)? {
                return Ok(Some(ev));
            }
            if Instant::now() >= until {
                return Ok(None);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Answers a `SelectionRequest` for `XdndSelection` with the file URI.
    fn answer(&self, req: &SelectionRequestEvent) -> Result<(), DragError> {
        let a = &self.atoms;
        let property = if req.property == NONE {
            req.target
        } else {
            req.property
        };
        let mut reply_property = property;
        if req.selection != a.selection {
            reply_property = NONE;
        } else if req.target == a.uri_list {
            let data = format!("{}\r\n", self.uri);
            self.conn
                .change_property(
                    PropMode::REPLACE,
                    req.requestor,
                    property,
                    req.target,
                    8,
                    data.len() as u32,
                    data.as_bytes(),
                )
                .map_err(conn_err)?;
        } else if [a.text_plain, a.utf8_text, a.utf8_string].contains(&req.target) {
            self.conn
                .change_property(
                    PropMode::REPLACE,
                    req.requestor,
                    property,
                    req.target,
                    8,
                    self.uri.len() as u32,
                    self.uri.as_bytes(),
                )
                .map_err(conn_err)?;
        } else if req.target == a.targets {
            let list = [
                a.targets,
                a.uri_list,
                a.text_plain,
                a.utf8_text,
                a.utf8_string,
            ];
            let bytes: Vec<u8> = list.iter().flat_map(|x| x.to_ne_bytes()).collect();
            self.conn
                .change_property(
                    PropMode::REPLACE,
                    req.requestor,
                    property,
                    AtomEnum::ATOM,
                    32,
                    list.len() as u32,
                    &bytes,
                )
                .map_err(conn_err)?;
        } else {
            reply_property = NONE;
        }
        let notify = SelectionNotifyEvent {
            response_type: SELECTION_NOTIFY_EVENT,
            sequence: 0,
            time: req.time,
            requestor: req.requestor,
            selection: req.selection,
            target: req.target,
            property: reply_property,
        };
        self.conn
            .send_event(false, req.requestor, EventMask::NO_EVENT, notify)
            .map_err(conn_err)?;
        self.conn.flush().map_err(conn_err)
    }
}
