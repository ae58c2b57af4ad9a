//! The plugin instance's shared, non-audio state and its controller thread.
//!
//! - [`Session`]: the phrase history ([`SavedState`]), the inbox the audio thread takes phrases
//!   from, what the audio thread last saw of the host transport (for the editor and for
//!   generation settings) and the request channel to the controller.
//! - The controller thread (one per instance, started with the instance; it loads nothing) turns
//!   requests into generations on the inference [`Generator`] (spawned on first use, which loads
//!   ONNX Runtime and the model lazily on its own worker thread), adopts finished phrases into
//!   the history and hands them to the audio thread.
//!
//! The "Compute device" setting is part of the saved state. When it changes (editor or a loaded
//! project) the controller, woken, asks a started generator to reload with the new
//! [`SessionOptions`]; the worker does it after a running generation (never cancelled by it) and
//! before any queued one, newest choice wins. Nothing here blocks: the audio thread is not
//! involved, and before the first generation nothing loads (the next start uses the setting).
//!
//! Every phrase the audio thread plays goes through [`Session::publish`] under the state lock,
//! so what is saved with the project is always what plays.
//!
//! The audio thread only ever calls [`Session::request_generate_from_audio`] (an atomic flag and
//! an unpark of the controller thread: no allocation, no lock) and the lock-free inbox.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{JoinHandle, Thread};
use std::time::{Duration, Instant};

use atomic_float::AtomicF64;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use nice_plug::nice_log;
use nice_plug::params::persist::PersistentField;
use parking_lot::{Mutex, RwLock};
use smdim_engine::handoff::PhraseHandoff;
use smdim_engine::TimeSignature;
use smdim_inference::{
    Generated, GenerationSettings, Generator, ProviderChoice, SessionOptions, Shared, Status,
};

use crate::model;
use crate::params::SmdimParams;
use crate::state::SavedState;

/// What the controller is asked to do.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Generate from the current parameter values (seed: the seed parameter, or a new one when
    /// "new seed each time" is on).
    Generate,
    /// The current phrase's settings with a new seed.
    Variation,
    /// Exactly these settings (tests, tools).
    Settings(GenerationSettings),
    Cancel,
    /// Load ONNX Runtime and the model now (the editor opened).
    Preload,
    Shutdown,
}

/// The host transport as the audio thread last saw it (for the editor's playhead and the
/// meter/tempo of the next generation).
#[derive(Default)]
pub struct TransportView {
    pub playing: AtomicBool,
    pub tempo: AtomicF64,
    pub numerator: AtomicU32,
    pub denominator: AtomicU32,
    /// Position inside the current phrase, in quarter notes; negative when not playing it.
    pub playhead: AtomicF64,
    /// Blocks processed (the editor repaints while this moves).
    pub blocks: AtomicU64,
}

impl TransportView {
    pub fn time_signature(&self) -> TimeSignature {
        let n = self.numerator.load(Ordering::Relaxed);
        let d = self.denominator.load(Ordering::Relaxed);
        u8::try_from(n)
            .ok()
            .zip(u8::try_from(d).ok())
            .and_then(|(n, d)| TimeSignature::new(n, d))
            .unwrap_or_default()
    }

    pub fn tempo(&self) -> f64 {
        let tempo = self.tempo.load(Ordering::Relaxed);
        if tempo.is_finite() && (10.0..=1000.0).contains(&tempo) {
            tempo
        } else {
            120.0
        }
    }
}

pub struct Session {
    state: RwLock<SavedState>,
    /// Phrases for the audio thread (newest wins), and the ones it retired.
    pub inbox: PhraseHandoff<Arc<Generated>>,
    requests: Sender<Request>,
    pub transport: TransportView,
    /// The generator's shared state once it exists (progress, status).
    generator: Mutex<Option<Arc<Shared>>>,
    /// Errors that are not the generator's (state load, export, request queue).
    plugin_error: Mutex<Option<String>>,
    /// Bumped on every change of the history (the editor and tests watch it).
    pub changes: AtomicU64,
    /// A generation has been requested and not finished yet.
    pub busy: AtomicBool,
    /// When the last generation was requested (the editor shows how long it has been running).
    requested_at: Mutex<Option<Instant>>,
    /// Set by the audio thread (the Generate parameter's rising edge).
    generate_flag: AtomicBool,
    /// The controller thread, to wake it.
    controller: OnceLock<Thread>,
    /// A state was loaded: the audio thread takes the Generate parameter's level afresh.
    state_loaded: AtomicBool,
}

/// The `#[persist]` field: serialises the session's [`SavedState`]; loading one replaces the
/// history and sends its current phrase to the audio thread, so a project plays identically
/// after reload (nice-plug does not reinitialise the plugin after a state load).
pub struct SessionField(pub Arc<Session>);

impl<'a> PersistentField<'a, SavedState> for SessionField {
    fn set(&self, new_value: SavedState) {
        self.0.load_state(new_value);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&SavedState) -> R,
    {
        f(&self.0.state.read())
    }
}

impl Session {
    /// The session and the receiving end of its request channel (for [`spawn_controller`]).
    pub fn new() -> (Arc<Session>, Receiver<Request>) {
        // Bounded: the audio thread's try_send never allocates. Requests are rare.
        let (requests, receiver) = crossbeam_channel::bounded(32);
        let session = Arc::new(Session {
            state: RwLock::new(SavedState::new()),
            inbox: PhraseHandoff::default(),
            requests,
            transport: TransportView {
                tempo: AtomicF64::new(120.0),
                numerator: AtomicU32::new(4),
                denominator: AtomicU32::new(4),
                playhead: AtomicF64::new(-1.0),
                ..Default::default()
            },
            generator: Mutex::new(None),
            plugin_error: Mutex::new(None),
            changes: AtomicU64::new(0),
            busy: AtomicBool::new(false),
            requested_at: Mutex::new(None),
            generate_flag: AtomicBool::new(false),
            controller: OnceLock::new(),
            state_loaded: AtomicBool::new(false),
        });
        (session, receiver)
    }

    /// A copy of the saved state (history + cursor).
    pub fn state(&self) -> SavedState {
        self.state.read().clone()
    }

    pub fn current(&self) -> Option<Arc<Generated>> {
        self.state.read().current().cloned()
    }

    pub fn can_undo(&self) -> bool {
        self.state.read().can_undo()
    }

    pub fn can_redo(&self) -> bool {
        self.state.read().can_redo()
    }

    /// Audio thread: ask for a generation from the parameters. An atomic store and an unpark
    /// (atomics and at most a futex wake): no lock, no allocation.
    pub fn request_generate_from_audio(&self) {
        self.generate_flag.store(true, Ordering::SeqCst);
        self.wake();
    }

    /// A generation requested by the audio thread and not yet taken by the controller.
    pub fn generate_requested(&self) -> bool {
        self.generate_flag.load(Ordering::SeqCst)
    }

    fn wake(&self) {
        if let Some(thread) = self.controller.get() {
            thread.unpark();
        }
    }

    /// Any other thread.
    pub fn request(&self, request: Request) {
        if matches!(
            request,
            Request::Generate | Request::Variation | Request::Settings(_)
        ) {
            self.busy.store(true, Ordering::SeqCst);
        }
        match self.requests.try_send(request) {
            Ok(()) => self.wake(),
            Err(TrySendError::Full(_)) => {
                self.set_error(Some("too many requests queued; try again".into()))
            }
            Err(TrySendError::Disconnected(_)) => {
                self.set_error(Some("the generation controller has stopped".into()))
            }
        }
    }

    /// Stops the controller (blocking send: a shutdown must not be dropped).
    pub fn shutdown(&self) {
        let _ = self.requests.send(Request::Shutdown);
        self.wake();
    }

    pub fn set_error(&self, error: Option<String>) {
        if let Some(message) = &error {
            nice_log!("SMDIM: {message}");
        }
        *self.plugin_error.lock() = error;
    }

    /// The error to show: the plugin's own, else the generator's last.
    pub fn error(&self) -> Option<String> {
        if let Some(e) = self.plugin_error.lock().clone() {
            return Some(e);
        }
        self.status().and_then(|s| s.last_error)
    }

    /// The generator's status, once it has been started.
    pub fn status(&self) -> Option<Status> {
        self.generator.lock().as_ref().map(|s| s.status())
    }

    /// 0..1 through the running generation.
    pub fn progress(&self) -> f32 {
        self.generator
            .lock()
            .as_ref()
            .map_or(0.0, |s| s.progress.load(Ordering::Relaxed))
    }

    /// Makes `generated` the phrase that plays, under the state lock (callers hold it).
    fn publish_locked(&self, generated: &Arc<Generated>) {
        // Free what the audio thread gave back; an unconsumed older phrase comes back here.
        self.inbox.collect_retired();
        drop(self.inbox.publish(generated.clone()));
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// A new phrase from the generator: appended to the history, played from the next bar.
    pub fn adopt(&self, generated: Arc<Generated>) {
        let mut state = self.state.write();
        state.push(generated.clone());
        self.publish_locked(&generated);
    }

    /// Undo (`-1`) / redo (`+1`) through the history.
    pub fn step(&self, delta: isize) -> bool {
        let mut state = self.state.write();
        match state.step(delta) {
            Some(generated) => {
                self.publish_locked(&generated);
                true
            }
            None => false,
        }
    }

    /// Audio thread: whether a state was loaded since the last call.
    pub fn take_state_loaded(&self) -> bool {
        self.state_loaded.swap(false, Ordering::SeqCst)
    }

    /// A state from the host (project load, preset).
    pub fn load_state(&self, new_state: SavedState) {
        self.state_loaded.store(true, Ordering::SeqCst);
        let mut state = self.state.write();
        let device_changed = state.device != new_state.device;
        *state = new_state;
        if let Some(current) = state.current().cloned() {
            self.publish_locked(&current);
        } else {
            self.changes.fetch_add(1, Ordering::SeqCst);
        }
        drop(state);
        if device_changed {
            // An unpark only (this may run on the audio thread): the controller reloads.
            self.wake();
        }
    }

    /// The "Compute device" setting.
    pub fn device(&self) -> ProviderChoice {
        self.state.read().device
    }

    /// Changes the "Compute device" setting (saved with the project); a started generator
    /// reloads the model on its own thread.
    pub fn set_device(&self, device: ProviderChoice) {
        let mut state = self.state.write();
        if state.device == device {
            return;
        }
        state.device = device;
        drop(state);
        nice_log!("SMDIM: compute device set to {device:?}");
        self.wake();
    }

    /// Milliseconds since the last generation was requested.
    pub fn since_request_ms(&self) -> Option<f64> {
        self.requested_at
            .lock()
            .map(|t| t.elapsed().as_secs_f64() * 1000.0)
    }
}

/// The fallbacks of `status` as sentences for the editor and the log, e.g. "CUDA unavailable:
/// … → running on CPU".
pub fn fallback_notes(status: &Status) -> Vec<String> {
    let running_on = status.provider.map_or("nothing", |p| p.name());
    status
        .fallbacks
        .iter()
        .map(|(provider, why)| {
            // The engine's reasons may already start with the provider's name.
            let prefix = format!("{} provider unavailable: ", provider.name());
            let why = why.strip_prefix(&prefix).unwrap_or(why);
            format!("{provider} unavailable: {why} → running on {running_on}")
        })
        .collect()
}

/// Session options for `device`, with the per-user ONNX Runtime folder searched too.
pub fn session_options(device: ProviderChoice) -> SessionOptions {
    let mut options = SessionOptions {
        provider: device,
        ..SessionOptions::default()
    };
    if let Some(dir) = smdim_inference::runtime::user_data_dir() {
        options.library_dirs.push(dir.join("onnxruntime"));
    }
    options
}

/// A seed from the clock and a counter (splitmix64), for "new seed each time" and Variation.
pub fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut z = nanos.wrapping_add(
        COUNTER
            .fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 1_000_000
}

pub fn spawn_controller(
    session: Arc<Session>,
    params: Arc<SmdimParams>,
    requests: Receiver<Request>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name("smdim-controller".into())
        .spawn(move || controller(session, params, requests))
}

struct Running {
    generator: Generator,
    /// The compute device the generator was last told to use.
    device: ProviderChoice,
    /// A generation is in flight (until the worker has done every job sent to it).
    waiting: bool,
}

fn start_generator(session: &Session) -> Option<Running> {
    let device = session.device();
    match Generator::spawn(model::source(), session_options(device)) {
        Ok(generator) => {
            generator
                .shared()
                .set_logger(|message| nice_log!("SMDIM: {message}"));
            *session.generator.lock() = Some(generator.shared().clone());
            Some(Running {
                generator,
                device,
                waiting: false,
            })
        }
        Err(e) => {
            session.set_error(Some(format!("could not start the generator thread: {e}")));
            None
        }
    }
}

/// Tells a started generator to reload when the setting differs from what it was told last.
fn sync_device(running: &mut Option<Running>, session: &Session) {
    let Some(r) = running.as_mut() else {
        return;
    };
    let wanted = session.device();
    if r.device == wanted {
        return;
    }
    match r.generator.reload(session_options(wanted)) {
        Ok(()) => r.device = wanted,
        Err(e) => session.set_error(Some(e.to_string())),
    }
}

fn settings_for(request: &Request, session: &Session, params: &SmdimParams) -> GenerationSettings {
    let ts = session.transport.time_signature();
    let tempo = session.transport.tempo() as f32;
    match request {
        Request::Settings(settings) => settings.clone(),
        Request::Variation => match session.current() {
            Some(current) => GenerationSettings {
                seed: fresh_seed(),
                ..current.settings.clone()
            },
            None => params.settings(fresh_seed(), ts, tempo),
        },
        _ => {
            let seed = if params.new_seed.value() {
                fresh_seed()
            } else {
                params.seed.value().max(0) as u64
            };
            params.settings(seed, ts, tempo)
        }
    }
}

fn controller(session: Arc<Session>, params: Arc<SmdimParams>, requests: Receiver<Request>) {
    let _ = session.controller.set(std::thread::current());
    let mut running: Option<Running> = None;
    loop {
        // Everything queued, then sleep until woken (or poll a running generation).
        loop {
            let request = if session.generate_flag.swap(false, Ordering::SeqCst) {
                Request::Generate
            } else {
                match requests.try_recv() {
                    Ok(request) => request,
                    Err(_) => break,
                }
            };
            if request == Request::Shutdown {
                // Dropping the generator stops its worker (cancelling a running generation).
                drop(running);
                return;
            }
            // Before a generation, so that it runs on the device chosen with it.
            sync_device(&mut running, &session);
            handle(request, &mut running, &session, &params);
        }
        sync_device(&mut running, &session);
        if let Some(r) = running.as_mut().filter(|r| r.waiting) {
            poll(r, &session);
        }
        if running.as_ref().is_some_and(|r| r.waiting) {
            std::thread::park_timeout(Duration::from_millis(4));
        } else {
            std::thread::park();
        }
    }
}

fn handle(
    request: Request,
    running: &mut Option<Running>,
    session: &Session,
    params: &SmdimParams,
) {
    match request {
        Request::Shutdown => {}
        Request::Cancel => {
            if let Some(r) = running.as_ref() {
                r.generator.cancel();
            }
        }
        Request::Preload => {
            if running.is_none() {
                *running = start_generator(session);
            }
            if let Some(r) = running.as_ref() {
                r.generator.preload();
            }
        }
        request => {
            if running.is_none() {
                *running = start_generator(session);
            }
            let settings = settings_for(&request, session, params);
            let Some(r) = running.as_mut() else {
                session.busy.store(false, Ordering::SeqCst);
                return;
            };
            session.set_error(None);
            *session.requested_at.lock() = Some(Instant::now());
            session.busy.store(true, Ordering::SeqCst);
            match r.generator.generate(settings) {
                Ok(()) => {
                    r.waiting = true;
                }
                Err(e) => {
                    session.set_error(Some(e.to_string()));
                    session.busy.store(false, Ordering::SeqCst);
                }
            }
        }
    }
}

/// Adopts finished phrases; the generation is over once the worker has done every job sent to
/// it (a phrase, an error or a cancel). Exact, where "the phase has read Idle for a while"
/// misfired when the worker thread was slow to take a job up.
fn poll(r: &mut Running, session: &Session) {
    let shared = r.generator.shared();
    // Read before taking: once the worker is idle, everything it published is in the handoff.
    let idle = shared.is_idle();
    // The worker publishes into its own handoff; adopting from there (instead of letting the
    // audio thread read it) keeps history and playback in one place.
    while let Some(generated) = shared.handoff.take() {
        session.adopt(generated);
    }
    if idle {
        r.waiting = false;
        session.busy.store(false, Ordering::SeqCst);
        if let Some(error) = shared.status().last_error {
            nice_log!("SMDIM generation failed: {error}");
        }
    }
}
