//! The generation thread: one per instance, started with it, holding the denoiser it uses.
//!
//! The denoiser itself is shared: instances of the process that run the same model on the same
//! device use one ONNX Runtime session (`smdim_inference::pool`), taking turns per diffusion
//! step.
//!
//! Editor → request channel → this thread → phrase handoff → audio thread: one hop each way.
//! The thread sleeps (parked) until a request, a device change or a deferred state load wakes
//! it. Each wake drains everything queued into one batch: of several queued generations only the
//! newest runs. At the start of each batch it reads the "Compute device" setting and, once
//! something has been loaded, reloads when it changed (a running generation is never cancelled
//! by that: its phrase is what the user asked for). It loads the model lazily (the first
//! generation, or Preload when the editor opens), generates with Cancel read from an atomic the
//! editor sets, adopts the phrase into the history and publishes it to the audio thread itself.
//!
//! Removing the plugin never waits for a GPU model load (seconds on CUDA, minutes for a TensorRT
//! engine): [`GenerationThread`]'s drop joins the thread unless it is loading for a GPU provider;
//! such a thread is left to finish on its own, sees the shutdown and exits, freeing the model
//! there. The library is pinned and process exit waits for it, because ONNX Runtime torn down
//! under a running load crashes the process (clap-validator's fuzzer showed it for CPU loads,
//! which is why a CPU load, a fraction of a second, is waited for instead). Residual risk: a
//! host that quits during such a load may still meet ONNX Runtime's exit-time destructors
//! registered by the load itself, which run before the wait.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::Receiver;
use nice_plug::nice_log;
use smdim_engine::sampler::edit::Edit;
use smdim_engine::sampler::SplitMix64;
use smdim_inference::{
    generate, generate_edit, generate_variations, GenerationSettings, InferenceError, LoadOptions,
    ProviderChoice, SharedDenoiser,
};

use crate::model;
use crate::params::SmdimParams;
use crate::shared::{Phase, Request, Shared, MAX_VARIATIONS};

/// Gets the denoiser for the given options (the embedded model; tests substitute their own).
pub type Loader =
    Box<dyn FnMut(&LoadOptions) -> Result<Arc<SharedDenoiser>, InferenceError> + Send>;

/// The embedded model with `options`: the process's shared session when another instance
/// already loaded it, else a new one that later instances share.
pub fn embedded_loader() -> Loader {
    Box::new(|options| smdim_inference::pool::shared(&model::source_for(options.provider), options))
}

/// Load options for `device`, with the per-user ONNX Runtime folder searched too.
pub fn load_options(device: ProviderChoice) -> LoadOptions {
    let mut options = LoadOptions {
        provider: device,
        ..LoadOptions::default()
    };
    if let Some(dir) = smdim_inference::runtime::user_data_dir() {
        options.library_dirs.push(dir.join("onnxruntime"));
    }
    options
}

/// A seed from the clock and a counter, for "new seed each time" and Variation.
pub fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    SplitMix64::new(nanos ^ count.rotate_left(32)).next_u64() % 1_000_000
}

/// Flags between the thread and its handle.
#[derive(Default)]
struct Control {
    shutdown: AtomicBool,
    /// Set (SeqCst) before a load begins, after checking `shutdown`.
    loading: AtomicBool,
    /// The load is for a GPU provider (seconds for CUDA, minutes for a TensorRT engine build);
    /// a CPU load takes a fraction of a second and is waited for.
    gpu_load: AtomicBool,
    /// ATTACHED, then DETACHED (the handle was dropped without joining: the thread reports its
    /// end) or ENDED (the thread finished first), whichever comes first.
    fate: std::sync::atomic::AtomicU8,
}

const ATTACHED: u8 = 0;
const DETACHED_STATE: u8 = 1;
const ENDED: u8 = 2;

/// Owns the generation thread; dropping it stops the thread without waiting for a model load.
pub struct GenerationThread {
    control: Arc<Control>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl GenerationThread {
    pub fn spawn(
        shared: Arc<Shared>,
        params: Arc<SmdimParams>,
        requests: Receiver<Request>,
        loader: Loader,
    ) -> std::io::Result<GenerationThread> {
        let control = Arc::new(Control::default());
        let worker = Worker {
            shared: shared.clone(),
            params,
            requests,
            loader,
            control: control.clone(),
            denoiser: None,
            loaded_for: None,
            taken: 0,
        };
        let thread = std::thread::Builder::new()
            .name("smdim-generation".into())
            .spawn(move || worker.run())?;
        Ok(GenerationThread {
            control,
            shared,
            thread: Some(thread),
        })
    }
}

impl Drop for GenerationThread {
    fn drop(&mut self) {
        self.control.shutdown.store(true, Ordering::SeqCst);
        self.shared.wake();
        let Some(thread) = self.thread.take() else {
            return;
        };
        let long_load = self.control.loading.load(Ordering::SeqCst)
            && self.control.gpu_load.load(Ordering::SeqCst);
        if long_load && detach_safely() {
            // Detached: the load finishes, the thread sees `shutdown` and exits. The library
            // stays mapped (pinned), and a process exit waits for the thread (see
            // `detach_safely`), so neither unloading nor quitting pulls ONNX Runtime or this
            // code from under it.
            *DETACHED.0.lock() += 1;
            let fate = &self.control.fate;
            if fate
                .compare_exchange(ATTACHED, DETACHED_STATE, Ordering::SeqCst, Ordering::SeqCst)
                .is_ok()
            {
                nice_log!(
                    "SMDIM: removed while the model loads; the load finishes in the background"
                );
                drop(thread);
            } else {
                // It ended meanwhile.
                detached_thread_ended();
                let _ = thread.join();
            }
        } else {
            // Idle or generating: it stops within one diffusion step.
            let _ = thread.join();
        }
    }
}

/// Threads left running after removal (loading a model), and a condition signalled as each
/// one ends.
static DETACHED: (parking_lot::Mutex<usize>, parking_lot::Condvar) =
    (parking_lot::Mutex::new(0), parking_lot::Condvar::new());

/// Called by a detached thread as it ends.
fn detached_thread_ended() {
    let mut count = DETACHED.0.lock();
    *count = count.saturating_sub(1);
    DETACHED.1.notify_all();
}

/// Runs at process exit, before the C++ destructors of libraries loaded earlier (ONNX Runtime):
/// waits for detached threads so none is inside ONNX Runtime while it is torn down. The host is
/// quitting; a bounded wait (a model load) is the right trade there.
extern "C" fn wait_for_detached_threads() {
    let mut count = DETACHED.0.lock();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(600);
    while *count > 0 {
        if DETACHED.1.wait_until(&mut count, deadline).timed_out() {
            break;
        }
    }
}

/// Whether a loading thread may be left to finish: the library is pinned and the process exit
/// hook is in place (registered once, after ONNX Runtime was loaded, so it runs before ONNX
/// Runtime's own exit-time destructors).
fn detach_safely() -> bool {
    static READY: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *READY.get_or_init(|| {
        // SAFETY: registers a plain `extern "C"` function; the library is pinned first, so the
        // function stays mapped until exit.
        pin_library() && unsafe { libc::atexit(wait_for_detached_threads) } == 0
    })
}

/// Keeps this plugin's library loaded for the rest of the process (glibc's `RTLD_NODELETE` on
/// the already loaded file), so a thread left running after removal never executes unmapped
/// code when the host unloads the plugin. Returns whether it is pinned; where it cannot be
/// (other systems, or the file not found), the caller joins instead. Called once, by
/// [`detach_safely`].
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn pin_library() -> bool {
    // glibc's values (dlfcn.h).
    const RTLD_NOW: std::ffi::c_int = 0x2;
    const RTLD_NOLOAD: std::ffi::c_int = 0x4;
    const RTLD_NODELETE: std::ffi::c_int = 0x1000;
    let here = pin_library as *const () as usize;
    let Ok(maps) = std::fs::read_to_string("/proc/self/maps") else {
        return false;
    };
    // Lines: `start-end perms offset dev inode path`.
    let path = maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (start, end) = fields.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        let path = fields.nth(4)?;
        ((start..end).contains(&here) && path.starts_with('/')).then(|| path.to_string())
    });
    let Some(path) = path else {
        return false;
    };
    // Linked into the program itself (tests, a standalone build): never unloaded.
    if std::env::current_exe().is_ok_and(|exe| exe == std::path::Path::new(&path)) {
        return true;
    }
    // SAFETY: the file is this library, already loaded: RTLD_NOLOAD only adds a reference (and
    // NODELETE), running no initialisers.
    match unsafe {
        libloading::os::unix::Library::open(Some(&path), RTLD_NOW | RTLD_NOLOAD | RTLD_NODELETE)
    } {
        Ok(library) => {
            std::mem::forget(library);
            true
        }
        Err(_) => false,
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn pin_library() -> bool {
    false
}

/// The queue drained into what the thread does next.
#[derive(Default)]
struct Batch {
    /// Newest generation; older queued ones are superseded.
    generate: Option<Request>,
    preload: bool,
}

struct Worker {
    shared: Arc<Shared>,
    params: Arc<SmdimParams>,
    requests: Receiver<Request>,
    loader: Loader,
    control: Arc<Control>,
    denoiser: Option<Arc<SharedDenoiser>>,
    /// The device the denoiser was (or is being) loaded for; `None` until the first load.
    loaded_for: Option<ProviderChoice>,
    /// Requests taken so far (the count [`Shared::is_idle`] compares with).
    taken: u64,
}

impl Worker {
    fn run(mut self) {
        let _ = self.shared.generation_thread.set(std::thread::current());
        while !self.control.shutdown.load(Ordering::SeqCst) {
            self.shared.apply_deferred_state();
            let batch = self.drain();
            self.sync_device();
            if batch.generate.is_some() || batch.preload {
                self.serve(batch);
            }
            self.shared.finished.store(self.taken, Ordering::SeqCst);
            if !self.has_work() {
                std::thread::park();
            }
        }
        // Freed here, on this thread (after a detached load too).
        drop(self.denoiser.take());
        if self.control.fate.swap(ENDED, Ordering::SeqCst) == DETACHED_STATE {
            detached_thread_ended();
        }
    }

    fn has_work(&self) -> bool {
        self.control.shutdown.load(Ordering::SeqCst)
            || self.shared.audio_requests.load(Ordering::SeqCst) > 0
            || self.shared.has_deferred()
            || !self.requests.is_empty()
            || self.loaded_for.is_some_and(|d| d != self.shared.device())
    }

    fn drain(&mut self) -> Batch {
        let mut batch = Batch::default();
        let from_audio = self.shared.audio_requests.swap(0, Ordering::SeqCst);
        if from_audio > 0 {
            self.taken += from_audio;
            batch.generate = Some(Request::Generate);
        }
        while let Ok(request) = self.requests.try_recv() {
            self.taken += 1;
            match request {
                Request::Preload => batch.preload = true,
                // Never queued (see `Shared::request`).
                Request::Cancel => {}
                generate => batch.generate = Some(generate),
            }
        }
        batch
    }

    /// Reloads when the setting changed since the last load (nothing before the first load).
    fn sync_device(&mut self) {
        let wanted = self.shared.device();
        if self.loaded_for.is_some_and(|d| d != wanted) {
            // Free the old session (GPU memory) before building the new one.
            self.denoiser = None;
            self.load(wanted);
        }
    }

    /// Loads for `device`; the status tells the editor what happened.
    fn load(&mut self, device: ProviderChoice) {
        self.loaded_for = Some(device);
        {
            // One lock: whoever sees the new choice also sees that it is not loaded yet.
            let mut status = self.shared.status.lock();
            status.choice = Some(device);
            status.provider = None;
            status.fallbacks.clear();
            status.phase = Phase::Loading;
            status.loads += 1;
        }
        self.control
            .gpu_load
            .store(device != ProviderChoice::Cpu, Ordering::SeqCst);
        self.control.loading.store(true, Ordering::SeqCst);
        if self.control.shutdown.load(Ordering::SeqCst) {
            self.control.loading.store(false, Ordering::SeqCst);
            return;
        }
        let options = load_options(device);
        let loader = &mut self.loader;
        // A panic inside ONNX Runtime or our code must not take the thread (or the host) down.
        let loaded = std::panic::catch_unwind(AssertUnwindSafe(|| loader(&options)))
            .unwrap_or_else(|_| {
                Err(InferenceError::Session(
                    "internal error while loading the model (please report it)".into(),
                ))
            });
        self.control.loading.store(false, Ordering::SeqCst);
        let mut status = self.shared.status.lock();
        status.phase = Phase::Idle;
        match loaded {
            Ok(denoiser) => {
                for (provider, reason) in &denoiser.fallbacks {
                    nice_log!(
                        "SMDIM: {provider} passed over, running on {}: {reason}",
                        denoiser.provider
                    );
                }
                status.provider = Some(denoiser.provider);
                status.fallbacks = denoiser.fallbacks.clone();
                status.last_error = None;
                self.denoiser = Some(denoiser);
            }
            Err(e) => {
                nice_log!("SMDIM: the model could not be loaded: {e}");
                status.last_error = Some(e.to_string());
            }
        }
    }

    fn serve(&mut self, batch: Batch) {
        if self.denoiser.is_none() {
            self.load(self.shared.device());
        }
        let Some(request) = batch.generate else {
            return;
        };
        if self.denoiser.is_none() {
            // The load failed: its error is the answer to this request too.
            return;
        }
        let mut settings = self.settings_for(&request);
        let edit = match &request {
            Request::Edit { edit, source_key } => match self.shared.source() {
                Some(source) => {
                    if !matches!(edit, Edit::Continue { .. }) {
                        settings.bars = source.bars;
                    }
                    if *source_key && settings.key.is_none() {
                        settings.key = smdim_engine::Key::estimate(&edit.kept_notes(&source));
                    }
                    Some((source, *edit))
                }
                None => {
                    let mut status = self.shared.status.lock();
                    status.last_error = Some(
                        "no source to edit: play into SMDIM while the transport runs, then \
                         press Use capture"
                            .into(),
                    );
                    return;
                }
            },
            _ => None,
        };
        let through = self.taken;
        self.shared.set_error(None);
        {
            let mut status = self.shared.status.lock();
            status.phase = Phase::Generating;
            status.generating_since = Some(Instant::now());
        }
        self.shared.progress.store(0.0, Ordering::Relaxed);
        let shared = &self.shared;
        let control = &self.control;
        let stop = AtomicBool::new(false);
        let should_stop = || {
            control.shutdown.load(Ordering::SeqCst)
                || shared.cancelled_through.load(Ordering::SeqCst) >= through
        };
        stop.store(should_stop(), Ordering::SeqCst);
        let shared_denoiser = self.denoiser.clone().expect("checked above");
        let mut denoiser = &*shared_denoiser;
        let progress = |done: u32, total: u32| {
            shared
                .progress
                .store(done as f32 / total.max(1) as f32, Ordering::Relaxed);
            // Between steps: a state restored on the audio thread, and Cancel.
            shared.apply_deferred_state();
            if should_stop() {
                stop.store(true, Ordering::SeqCst);
            }
        };
        let variations = match &request {
            Request::Variations(n) => (*n).clamp(1, MAX_VARIATIONS),
            _ => 1,
        };
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| match &edit {
            None if variations > 1 => {
                let seeds: Vec<u64> = (0..variations).map(|_| fresh_seed()).collect();
                generate_variations(&mut denoiser, &settings, &seeds, &stop, progress)
                    .map(|all| (all, None))
            }
            None => generate(&mut denoiser, &settings, &stop, progress).map(|g| (vec![g], None)),
            Some((source, edit)) => {
                generate_edit(&mut denoiser, &settings, source, edit, &stop, progress)
                    .map(|e| (vec![e.generated], Some(e.report)))
            }
        }));
        let error = match outcome {
            Ok(Ok((all, report))) => {
                self.shared.status.lock().last_quantised = report;
                for generated in all {
                    let generated = Arc::new(generated);
                    self.shared.status.lock().last_elapsed = Some(generated.elapsed);
                    self.shared.adopt(generated);
                }
                None
            }
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("internal error in the generator (please report it)".to_string()),
        };
        if let Some(error) = &error {
            nice_log!("SMDIM generation failed: {error}");
        }
        let mut status = self.shared.status.lock();
        status.phase = Phase::Idle;
        status.generating_since = None;
        status.last_error = error;
    }

    fn settings_for(&self, request: &Request) -> GenerationSettings {
        let view = &self.shared.transport;
        let ts = view.time_signature();
        let tempo = view.tempo() as f32;
        let params = &self.params;
        match request {
            Request::Settings(settings) => settings.clone(),
            Request::Variation | Request::Variations(_) => match self.shared.current() {
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
}
