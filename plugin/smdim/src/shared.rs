//! The plugin instance's state shared by the editor, the host's main thread, the generation
//! thread and the audio thread.
//!
//! - The saved state ([`SavedState`]: phrase history, cursor, compute device) under a lock the
//!   audio thread never takes. Every phrase the audio thread plays is published under that lock
//!   ([`Shared::adopt`], [`Shared::step`], a state load), so what is saved is what plays.
//! - The publishing end of the phrase handoff; the audio thread owns the other end.
//! - Requests to the generation thread ([`Request`], a bounded channel plus an unpark), Cancel as
//!   an atomic, and the generation [`Status`]: the one source of "idle / queued / loading /
//!   generating" and of the last error.
//! - What the audio thread last saw of the host transport ([`TransportView`]).
//!
//! The audio thread only calls [`Shared::request_generate_from_audio`] (atomics and an unpark),
//! [`Shared::take_state_loaded`] and the [`TransportView`] atomics. A state the host sets on an
//! audio thread (nice-plug applies a GUI-initiated restore there while processing) takes the
//! state lock only if it is free (else it is queued for the generation thread) and leaves the old
//! history in a queue the generation thread empties, so nothing waits or is freed there.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

use atomic_float::{AtomicF32, AtomicF64};
use crossbeam_channel::{Receiver, Sender, TrySendError};
use crossbeam_queue::ArrayQueue;
use nice_plug::nice_log;
use nice_plug::params::persist::PersistentField;
use parking_lot::{Mutex, RwLock};
use smdim_engine::capture::{self, Captured, Recorder, Takes};
use smdim_engine::codec::EncodeReport;
use smdim_engine::handoff::{self, Inbox, Publisher};
use smdim_engine::phrase::Phrase;
use smdim_engine::sampler::edit::Edit;
use smdim_engine::TimeSignature;
use smdim_inference::{FallbackReason, Generated, GenerationSettings, Provider, ProviderChoice};

use crate::audio;
use crate::state::SavedState;

/// The most variations one request samples together.
pub const MAX_VARIATIONS: u32 = 8;

/// What the editor (or a test, or the audio thread's Generate parameter) asks of the generation
/// thread.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Generate from the current parameter values (seed: the seed parameter, or a new one when
    /// "new seed each time" is on).
    Generate,
    /// The current phrase's settings with a new seed.
    Variation,
    /// That many variations (2 to [`MAX_VARIATIONS`]) sampled together, one batched denoiser
    /// call per step; all join the history in order, the last one plays.
    Variations(u32),
    /// Exactly these settings (tests, tools).
    Settings(GenerationSettings),
    /// Stop what was asked so far; an atomic, never queued.
    Cancel,
    /// Load ONNX Runtime and the model now (the editor opened).
    Preload,
    /// Edit the source phrase ([`Shared::source`]) with the parameters' settings; with
    /// `source_key` and no Key parameter set, the new notes keep the source's estimated key.
    Edit { edit: Edit, source_key: bool },
}

/// What the audio thread owns of an instance: the phrase inbox and the capture recorder.
pub struct AudioSide {
    pub inbox: Inbox<Arc<Generated>>,
    pub recorder: Recorder,
}

/// What the generation thread is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    /// Asked for, not taken up yet.
    Queued,
    Loading,
    Generating,
}

/// What the editor shows of generation: phase, provider, last error and timing.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub phase: Phase,
    /// The compute device the model is (being) loaded for; `None` before the first load.
    pub choice: Option<ProviderChoice>,
    /// The provider running the model; `None` until it is loaded (and while reloading).
    pub provider: Option<Provider>,
    /// Providers passed over, with why.
    pub fallbacks: Vec<(Provider, FallbackReason)>,
    pub last_error: Option<String>,
    pub last_elapsed: Option<Duration>,
    /// When the running generation started.
    pub generating_since: Option<Instant>,
    /// Model loads attempted so far (a reload shows up here; tests and diagnostics).
    pub loads: u64,
    /// What quantising the source to the model's grid changed in the last edit.
    pub last_quantised: Option<EncodeReport>,
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

/// States set on an audio thread while the state lock was taken, not applied yet. Two: a second
/// restore before the generation thread wakes replaces the first.
const DEFERRED_STATES: usize = 2;
/// Room for what a state load on an audio thread lets go of (the old state, a displaced phrase),
/// for two loads between wakes of the generation thread.
const GARBAGE: usize = 4;

/// Let go of on an audio thread, freed by the generation thread.
enum Garbage {
    State(#[allow(dead_code)] SavedState),
    Phrase(#[allow(dead_code)] Arc<Generated>),
}

pub struct Shared {
    state: RwLock<SavedState>,
    deferred_state: ArrayQueue<SavedState>,
    garbage: ArrayQueue<Garbage>,
    /// Used under the state's write lock only.
    publisher: Publisher<Arc<Generated>>,
    pub transport: TransportView,
    requests: Sender<Request>,
    /// Requests made (every path), and requests the generation thread has finished.
    requested: AtomicU64,
    pub(crate) finished: AtomicU64,
    /// Generate requests from the audio thread not yet taken by the generation thread.
    pub(crate) audio_requests: AtomicU64,
    /// Requests up to this count are cancelled.
    pub(crate) cancelled_through: AtomicU64,
    pub(crate) status: Mutex<Status>,
    /// 0..1 through the running generation.
    pub progress: AtomicF32,
    /// Errors that are not a generation's (state load, export, request queue).
    plugin_error: Mutex<Option<String>>,
    /// Bumped on every change of the history (the editor and tests watch it).
    pub changes: AtomicU64,
    /// The generation thread, to wake it.
    pub(crate) generation_thread: OnceLock<Thread>,
    /// A state was loaded: the audio thread takes the Generate parameter's level afresh.
    state_loaded: AtomicBool,
    /// What the audio thread captured from the note input.
    takes: Mutex<Takes>,
}

/// The `#[persist]` field: serialises the [`SavedState`]; loading one replaces the history and
/// sends its current phrase to the audio thread, so a project plays identically after reload
/// (nice-plug does not reinitialise the plugin after a state load).
pub struct StateField(pub Arc<Shared>);

impl<'a> PersistentField<'a, SavedState> for StateField {
    fn set(&self, new_value: SavedState) {
        self.0.load_state(new_value);
    }

    fn map<F, R>(&self, f: F) -> R
    where
        F: Fn(&SavedState) -> R,
    {
        self.0.apply_deferred_state();
        f(&self.0.state.read())
    }
}

impl Shared {
    /// The shared state, the audio thread's end of the phrase handoff and the generation
    /// thread's end of the request channel.
    pub fn new() -> (Arc<Shared>, AudioSide, Receiver<Request>) {
        // Bounded: try_send never allocates. Requests are rare.
        let (requests, receiver) = crossbeam_channel::bounded(32);
        let (publisher, inbox) = handoff::channel();
        let (recorder, takes) = capture::channel();
        let shared = Arc::new(Shared {
            state: RwLock::new(SavedState::new()),
            deferred_state: ArrayQueue::new(DEFERRED_STATES),
            garbage: ArrayQueue::new(GARBAGE),
            publisher,
            transport: TransportView {
                tempo: AtomicF64::new(120.0),
                numerator: AtomicU32::new(4),
                denominator: AtomicU32::new(4),
                playhead: AtomicF64::new(-1.0),
                ..Default::default()
            },
            requests,
            requested: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            audio_requests: AtomicU64::new(0),
            cancelled_through: AtomicU64::new(0),
            status: Mutex::new(Status::default()),
            progress: AtomicF32::new(0.0),
            plugin_error: Mutex::new(None),
            changes: AtomicU64::new(0),
            generation_thread: OnceLock::new(),
            state_loaded: AtomicBool::new(false),
            takes: Mutex::new(takes),
        });
        (shared, AudioSide { inbox, recorder }, receiver)
    }

    /// The phrase the edits work on.
    pub fn source(&self) -> Option<Arc<Phrase>> {
        self.apply_deferred_state();
        self.state.read().source.clone()
    }

    /// Makes `phrase` the source (a dropped or opened .mid); saved with the project.
    pub fn set_source(&self, phrase: Option<Phrase>) {
        self.state.write().source = phrase.map(Arc::new);
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// Reads a .mid (dropped onto the editor) as the source. Returns what it holds and what
    /// quantising it to the model's grid will change, for the editor to show. A file that cannot
    /// be read or encoded is an error naming why; the source stays as it was.
    pub fn open_source_file(&self, path: &std::path::Path) -> Result<String, String> {
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        let read = smdim_engine::midi_file::load_smf(path).map_err(|e| format!("{name}: {e}"))?;
        let phrase = read.phrase;
        if phrase.notes.is_empty() {
            return Err(format!("{name}: the file holds no notes"));
        }
        let vocab = smdim_engine::Vocabulary::remi_v1();
        let (_, report) = smdim_engine::Encoder::new(vocab)
            .encode(&phrase)
            .map_err(|e| format!("{name}: {e}"))?;
        let mut summary = format!(
            "{name}: {} notes, {} bars of {}",
            phrase.notes.len(),
            phrase.bars,
            phrase.time_signature
        );
        for (count, what) in [
            (report.moved, "moved to the grid"),
            (report.resized, "resized"),
            (report.dropped_pitch, "out of pitch range"),
        ] {
            if count > 0 {
                summary.push_str(&format!("; {count} {what}"));
            }
        }
        self.set_source(Some(phrase));
        Ok(summary)
    }

    /// The newest capture as it would become the source (at most `bars` bars), for the editor.
    pub fn capture_preview(&self, bars: u32) -> Option<Phrase> {
        self.takes.lock().source(bars)
    }

    /// Everything captured so far and how many notes did not fit the queue.
    pub fn captured(&self) -> (Vec<Captured>, u64) {
        let mut takes = self.takes.lock();
        let notes = takes.collect().to_vec();
        (notes, takes.dropped())
    }

    /// **Use as source**: the newest capture (at most `bars` bars) becomes the source.
    pub fn use_capture(&self, bars: u32) -> Result<(), String> {
        let phrase = self.takes.lock().source(bars).ok_or_else(|| {
            "nothing captured yet: play into SMDIM's note input while the transport runs"
                .to_string()
        })?;
        self.set_source(Some(phrase));
        Ok(())
    }

    /// Forgets the capture (the source stays).
    pub fn clear_capture(&self) {
        self.takes.lock().clear();
    }

    /// A copy of the saved state (history + cursor).
    pub fn state(&self) -> SavedState {
        self.apply_deferred_state();
        self.state.read().clone()
    }

    pub fn current(&self) -> Option<Arc<Generated>> {
        self.apply_deferred_state();
        self.state.read().current().cloned()
    }

    pub fn can_undo(&self) -> bool {
        self.state.read().can_undo()
    }

    pub fn can_redo(&self) -> bool {
        self.state.read().can_redo()
    }

    /// Audio thread: ask for a generation from the parameters. Atomics and an unpark (at most a
    /// futex wake): no lock, no allocation.
    pub fn request_generate_from_audio(&self) {
        self.requested.fetch_add(1, Ordering::SeqCst);
        self.audio_requests.fetch_add(1, Ordering::SeqCst);
        self.wake();
    }

    /// A generation requested by the audio thread and not yet taken by the generation thread.
    pub fn generate_requested(&self) -> bool {
        self.audio_requests.load(Ordering::SeqCst) > 0
    }

    pub(crate) fn wake(&self) {
        if let Some(thread) = self.generation_thread.get() {
            thread.unpark();
        }
    }

    /// Any thread but the audio thread. Cancel stops the running generation within one
    /// diffusion step, and anything asked before it.
    pub fn request(&self, request: Request) {
        if request == Request::Cancel {
            let through = self.requested.load(Ordering::SeqCst);
            self.cancelled_through.fetch_max(through, Ordering::SeqCst);
            return;
        }
        self.requested.fetch_add(1, Ordering::SeqCst);
        match self.requests.try_send(request) {
            Ok(()) => self.wake(),
            Err(e) => {
                self.requested.fetch_sub(1, Ordering::SeqCst);
                self.set_error(Some(match e {
                    TrySendError::Full(_) => "too many requests queued; try again".into(),
                    TrySendError::Disconnected(_) => "the generation thread has stopped".into(),
                }));
            }
        }
    }

    pub fn set_error(&self, error: Option<String>) {
        if let Some(message) = &error {
            nice_log!("SMDIM: {message}");
        }
        *self.plugin_error.lock() = error;
    }

    /// The error to show: the plugin's own, else the last generation's.
    pub fn error(&self) -> Option<String> {
        if let Some(e) = self.plugin_error.lock().clone() {
            return Some(e);
        }
        self.status.lock().last_error.clone()
    }

    pub fn status(&self) -> Status {
        let mut status = self.status.lock().clone();
        status.phase = self.phase_of(&status);
        status
    }

    /// Idle, queued, loading or generating: the one answer to "is it generating?".
    pub fn phase(&self) -> Phase {
        self.phase_of(&self.status.lock())
    }

    fn phase_of(&self, status: &Status) -> Phase {
        let finished = self.finished.load(Ordering::SeqCst);
        if status.phase == Phase::Idle && finished < self.requested.load(Ordering::SeqCst) {
            Phase::Queued
        } else {
            status.phase
        }
    }

    /// Every request made so far has been finished (a phrase, an error or a cancel).
    pub fn is_idle(&self) -> bool {
        self.phase() == Phase::Idle
    }

    /// 0..1 through the running generation.
    pub fn progress(&self) -> f32 {
        self.progress.load(Ordering::Relaxed)
    }

    /// Milliseconds the running generation has taken so far.
    pub fn since_request_ms(&self) -> Option<f64> {
        self.status
            .lock()
            .generating_since
            .map(|t| t.elapsed().as_secs_f64() * 1000.0)
    }

    /// Makes `generated` the phrase that plays; callers hold the state's write lock.
    fn publish_locked(&self, generated: &Arc<Generated>) {
        // An unconsumed older phrase comes back here and is dropped on this thread.
        drop(self.publisher.publish(generated.clone()));
        self.changes.fetch_add(1, Ordering::SeqCst);
    }

    /// A new phrase: appended to the history, played from the next bar.
    pub fn adopt(&self, generated: Arc<Generated>) {
        let mut state = self.state.write();
        state.push(generated.clone());
        self.publish_locked(&generated);
    }

    /// Undo (`-1`) / redo (`+1`) through the history.
    pub fn step(&self, delta: isize) -> bool {
        self.apply_deferred_state();
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

    /// A state from the host (project load, preset). Applied at once; on an audio thread without
    /// waiting for the lock (queued for the generation thread when it is taken) and without
    /// freeing anything there.
    pub fn load_state(&self, new_state: SavedState) {
        self.state_loaded.store(true, Ordering::SeqCst);
        if audio::on_audio_thread() {
            match self.state.try_write() {
                Some(state) => self.apply_locked(state, new_state, true),
                None => {
                    // A superseded queued state (a second restore within one wake) is freed here:
                    // rarer than the wrapper's own parsing of the state on this thread.
                    drop(self.deferred_state.force_push(new_state));
                }
            }
            self.wake();
        } else {
            self.apply_locked(self.state.write(), new_state, false);
        }
    }

    /// Applies a state queued by [`Shared::load_state`] and frees what an audio thread let go
    /// of. Any thread but the audio thread.
    pub fn apply_deferred_state(&self) {
        while let Some(state) = self.deferred_state.pop() {
            self.apply_locked(self.state.write(), state, false);
        }
        while self.garbage.pop().is_some() {}
    }

    /// Whether [`Shared::apply_deferred_state`] has something to do.
    pub(crate) fn has_deferred(&self) -> bool {
        !self.deferred_state.is_empty() || !self.garbage.is_empty()
    }

    fn apply_locked(
        &self,
        mut state: parking_lot::RwLockWriteGuard<'_, SavedState>,
        new_state: SavedState,
        keep_garbage: bool,
    ) {
        let device_changed = state.device != new_state.device;
        let old = std::mem::replace(&mut *state, new_state);
        let current = state.current().cloned();
        let displaced = match &current {
            Some(current) if keep_garbage => self.publisher.publish_uncollected(current.clone()),
            Some(current) => self.publisher.publish(current.clone()),
            None => None,
        };
        self.changes.fetch_add(1, Ordering::SeqCst);
        drop(state);
        if keep_garbage {
            // Both fit unless two loads came within one wake; then they are freed here.
            drop(self.garbage.force_push(Garbage::State(old)));
            if let Some(phrase) = displaced {
                drop(self.garbage.force_push(Garbage::Phrase(phrase)));
            }
        } else {
            drop((old, displaced));
        }
        if device_changed {
            // The generation thread reloads.
            self.wake();
        }
    }

    /// The "Compute device" setting.
    pub fn device(&self) -> ProviderChoice {
        self.state.read().device
    }

    /// Changes the "Compute device" setting (saved with the project); a loaded model reloads on
    /// the generation thread, after a running generation.
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
}

/// The fallbacks of `status` as sentences for the editor and the log, e.g. "CUDA unavailable:
/// … → running on CPU".
pub fn fallback_notes(status: &Status) -> Vec<String> {
    let running_on = status.provider.map_or("nothing", |p| p.name());
    status
        .fallbacks
        .iter()
        .map(|(provider, why)| format!("{provider} unavailable: {why} → running on {running_on}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use smdim_engine::midi_file::{save_smf, WriteOptions};
    use smdim_engine::phrase::Note;

    #[test]
    fn a_dropped_midi_file_becomes_the_source_and_a_bad_one_changes_nothing() {
        let dir = std::env::temp_dir().join(format!("smdim-open-source-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 2);
        for (i, pitch) in [60u8, 62, 64, 65, 67].into_iter().enumerate() {
            phrase.notes.push(Note {
                start: i as u32 * 960 + if i == 3 { 7 } else { 0 },
                length: 480,
                pitch,
                velocity: 90,
            });
        }
        let good = dir.join("idea.mid");
        save_smf(&phrase, &WriteOptions::default(), &good).unwrap();
        let (shared, _side, _requests) = Shared::new();
        let summary = shared.open_source_file(&good).unwrap();
        assert!(
            summary.starts_with("idea.mid: 5 notes, 2 bars of 4/4"),
            "{summary}"
        );
        assert!(summary.contains("1 moved to the grid"), "{summary}");
        let source = shared.source().expect("the source");
        assert_eq!(source.notes.len(), 5);
        assert_eq!(
            source.notes[3].start,
            3 * 960 + 7,
            "kept as read; quantised when edited"
        );

        let corrupt = dir.join("broken.mid");
        std::fs::write(&corrupt, b"MThd\0\0\0\x06garbage").unwrap();
        let error = shared.open_source_file(&corrupt).unwrap_err();
        assert!(error.starts_with("broken.mid: "), "{error}");
        let missing = shared
            .open_source_file(&dir.join("nothing.mid"))
            .unwrap_err();
        assert!(missing.starts_with("nothing.mid: "), "{missing}");
        let empty = dir.join("empty.mid");
        save_smf(
            &Phrase::empty(TimeSignature::FOUR_FOUR, 1),
            &WriteOptions::default(),
            &empty,
        )
        .unwrap();
        assert!(shared
            .open_source_file(&empty)
            .unwrap_err()
            .contains("no notes"));
        assert_eq!(shared.source().unwrap().notes.len(), 5, "the source stays");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
