//! The generation thread: a dedicated worker fed by a channel (not the host's or the
//! framework's shared background thread, which one long inference would block for every plugin
//! instance). It loads the model lazily, generates, and publishes phrases through the
//! lock-free handoff that the audio thread reads.
//!
//! Changing the execution provider is a [`Generator::reload`]: the worker drops its session and
//! loads the model again with the new [`SessionOptions`]. A generation already running finishes
//! first (its phrase is what the user asked for; Cancel stops it sooner); a reload queued behind
//! it applies before any queued generation, and of several queued reloads only the newest loads
//! (each load can take long: TensorRT builds an engine).

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atomic_float::AtomicF32;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use smdim_engine::handoff::PhraseHandoff;

use crate::error::InferenceError;
use crate::generate::{generate, Generated, GenerationSettings};
use crate::model::ModelSource;
use crate::session::{Denoiser, Provider, ProviderChoice, SessionOptions};

enum Job {
    Preload,
    Generate(GenerationSettings),
    Reload(SessionOptions),
    Shutdown,
}

/// The queue drained into what the worker does next.
#[derive(Default)]
struct Batch {
    /// Newest options to load with, if a reload was queued.
    reload: Option<SessionOptions>,
    /// Newest generation; older ones are superseded.
    generate: Option<GenerationSettings>,
    shutdown: bool,
    /// Jobs taken from the queue (for [`Generator::wait_idle`]).
    jobs: u64,
}

impl Batch {
    fn add(&mut self, job: Job) {
        self.jobs += 1;
        match job {
            // Nothing of its own: every batch loads the model if none is loaded.
            Job::Preload => {}
            Job::Generate(settings) => self.generate = Some(settings),
            Job::Reload(options) => self.reload = Some(options),
            Job::Shutdown => self.shutdown = true,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    #[default]
    Idle,
    Loading,
    Generating,
}

/// What the editor shows: phase, provider, last error and timing.
#[derive(Debug, Clone, Default)]
pub struct Status {
    pub phase: Phase,
    /// The choice the worker loads with (set as soon as a reload is taken up, before it loads).
    pub choice: Option<ProviderChoice>,
    /// The provider running the model; `None` until it is loaded (and while reloading).
    pub provider: Option<Provider>,
    /// Providers passed over, with why.
    pub fallbacks: Vec<(Provider, String)>,
    pub last_error: Option<String>,
    pub last_elapsed: Option<Duration>,
    /// Model loads attempted so far (a reload shows up here; tests and diagnostics).
    pub loads: u64,
}

/// Receives the worker's log lines.
type Logger = Box<dyn Fn(&str) + Send + Sync>;

/// State shared between the worker, the GUI and the audio thread.
#[derive(Default)]
pub struct Shared {
    /// 0..1 through the current generation.
    pub progress: AtomicF32,
    cancel: AtomicBool,
    status: Mutex<Status>,
    /// Phrases for the audio thread.
    pub handoff: PhraseHandoff<Arc<Generated>>,
    latest: Mutex<Option<Arc<Generated>>>,
    /// Finished generations, so pollers notice a new result.
    pub completed: AtomicU64,
    /// Jobs sent to the worker and jobs it has finished: equal when it has nothing left to do
    /// (the phase alone reads Idle for a moment after the worker took a job up).
    sent: AtomicU64,
    done: AtomicU64,
    /// Where provider fallbacks are logged (the plugin routes them to its log); stderr without.
    logger: OnceLock<Logger>,
}

impl Shared {
    pub fn status(&self) -> Status {
        self.status.lock().clone()
    }

    /// The worker has finished every job sent to it (and published what they made).
    pub fn is_idle(&self) -> bool {
        self.done.load(Ordering::SeqCst) >= self.sent.load(Ordering::SeqCst)
            && self.status.lock().phase == Phase::Idle
    }

    /// Routes the worker's log lines (provider fallbacks); set once, before the first job.
    pub fn set_logger(&self, logger: impl Fn(&str) + Send + Sync + 'static) {
        let _ = self.logger.set(Box::new(logger));
    }

    fn log(&self, message: &str) {
        match self.logger.get() {
            Some(logger) => logger(message),
            None => eprintln!("SMDIM: {message}"),
        }
    }

    /// The newest phrase generated (for the GUI; the audio thread uses the handoff).
    pub fn latest(&self) -> Option<Arc<Generated>> {
        self.latest.lock().clone()
    }
}

/// Owns the worker thread; dropping it stops the thread.
pub struct Generator {
    jobs: Sender<Job>,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Generator {
    pub fn spawn(model: ModelSource, options: SessionOptions) -> std::io::Result<Generator> {
        let (jobs, receiver) = crossbeam_channel::unbounded();
        let shared = Arc::new(Shared::default());
        shared.status.lock().choice = Some(options.provider);
        let worker_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("smdim-generator".into())
            .spawn(move || run(receiver, worker_shared, model, options))?;
        Ok(Generator {
            jobs,
            shared,
            thread: Some(thread),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Loads ONNX Runtime and the model now (e.g. when the editor opens).
    pub fn preload(&self) {
        let _ = self.send(Job::Preload);
    }

    fn send(&self, job: Job) -> Result<(), InferenceError> {
        self.shared.sent.fetch_add(1, Ordering::SeqCst);
        self.jobs.send(job).map_err(|_| {
            self.shared.sent.fetch_sub(1, Ordering::SeqCst);
            InferenceError::WorkerGone
        })
    }

    /// Reloads the model with `options` (another execution provider): right away when idle,
    /// after the running generation otherwise; only the newest queued reload loads.
    pub fn reload(&self, options: SessionOptions) -> Result<(), InferenceError> {
        self.send(Job::Reload(options))
    }

    /// Queues a generation; a newer request supersedes queued older ones.
    pub fn generate(&self, settings: GenerationSettings) -> Result<(), InferenceError> {
        self.shared.cancel.store(false, Ordering::SeqCst);
        self.send(Job::Generate(settings))
    }

    /// Stops the running generation within one diffusion step.
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::SeqCst);
    }

    /// Blocks until the worker is idle with no queued jobs, or `timeout` passes. For the CLI
    /// and tests; the plugin polls [`Shared::status`] instead.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.shared.is_idle() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.cancel();
        let _ = self.jobs.send(Job::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn set_phase(shared: &Shared, phase: Phase) {
    shared.status.lock().phase = phase;
}

fn run(jobs: Receiver<Job>, shared: Arc<Shared>, model: ModelSource, options: SessionOptions) {
    let mut options = options;
    let mut denoiser: Option<Denoiser> = None;
    while let Ok(job) = jobs.recv() {
        let mut batch = Batch::default();
        batch.add(job);
        while let Ok(next) = jobs.try_recv() {
            batch.add(next);
        }
        if batch.shutdown {
            return;
        }
        if let Some(new_options) = batch.reload.take() {
            // Free the old session (GPU memory) before building the new one.
            denoiser = None;
            options = new_options;
            // One lock: whoever sees the new choice also sees that it is not loaded yet.
            let mut status = shared.status.lock();
            status.choice = Some(options.provider);
            status.provider = None;
            status.fallbacks.clear();
            status.phase = Phase::Loading;
        }
        // Every batch loads if nothing is loaded (a reload loads at once, without waiting for
        // a generation, so the editor shows the provider in use), then generates if asked.
        let settings = batch.generate.take();
        // A panic inside ONNX Runtime or our code must not take the thread (or the host) down.
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), InferenceError> {
                if denoiser.is_none() {
                    set_phase(&shared, Phase::Loading);
                    shared.status.lock().loads += 1;
                    let loaded = Denoiser::load(&model, &options)?;
                    for (provider, reason) in &loaded.fallbacks {
                        shared.log(&format!(
                            "{provider} passed over, running on {}: {reason}",
                            loaded.provider
                        ));
                    }
                    let mut status = shared.status.lock();
                    status.provider = Some(loaded.provider);
                    status.fallbacks = loaded.fallbacks.clone();
                    drop(status);
                    denoiser = Some(loaded);
                }
                let Some(settings) = settings else {
                    return Ok(());
                };
                let denoiser = denoiser.as_mut().expect("loaded above");
                set_phase(&shared, Phase::Generating);
                shared.progress.store(0.0, Ordering::Relaxed);
                let generated = generate(denoiser, &settings, &shared.cancel, |done, total| {
                    shared
                        .progress
                        .store(done as f32 / total.max(1) as f32, Ordering::Relaxed);
                })?;
                let generated = Arc::new(generated);
                shared.status.lock().last_elapsed = Some(generated.elapsed);
                *shared.latest.lock() = Some(generated.clone());
                // An unconsumed older phrase comes back here and is dropped on this thread.
                drop(shared.handoff.publish(generated));
                shared.completed.fetch_add(1, Ordering::SeqCst);
                Ok(())
            }));
        let error = match outcome {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(e.to_string()),
            Err(_) => Some("internal error in the generator (please report it)".to_string()),
        };
        shared.handoff.collect_retired();
        let mut status = shared.status.lock();
        status.last_error = error;
        status.phase = Phase::Idle;
        drop(status);
        shared.done.fetch_add(batch.jobs, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// Generous liveness bound, not a timing assertion.
    const LIVENESS: Duration = Duration::from_secs(60);

    fn tiny() -> ModelSource {
        ModelSource::from_onnx_path(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.onnx"),
        )
    }

    fn options(provider: ProviderChoice) -> SessionOptions {
        SessionOptions {
            provider,
            threads: 1,
            ..Default::default()
        }
    }

    fn small(seed: u64, steps: u32) -> GenerationSettings {
        GenerationSettings {
            bars: 2,
            density: 0.5,
            seed,
            steps: Some(steps),
            ..Default::default()
        }
    }

    /// The provider in use comes from `choice`'s chain, each one before it passed over with a
    /// reason. Returns it (on a machine without a GPU: the CPU, after the GPU providers).
    fn check_provider(status: &Status, choice: ProviderChoice) -> Provider {
        let provider = status.provider.expect("a provider in use");
        let chain = choice.chain();
        let position = chain
            .iter()
            .position(|&p| p == provider)
            .expect("in the chain");
        let skipped: Vec<Provider> = status.fallbacks.iter().map(|(p, _)| *p).collect();
        assert_eq!(skipped, chain[..position], "{:?}", status.fallbacks);
        assert!(status
            .fallbacks
            .iter()
            .all(|(_, why)| !why.trim().is_empty()));
        provider
    }

    #[test]
    fn newest_queued_reload_and_generation_win() {
        let mut batch = Batch::default();
        batch.add(Job::Reload(options(ProviderChoice::Auto)));
        batch.add(Job::Generate(small(1, 4)));
        batch.add(Job::Reload(options(ProviderChoice::Cuda)));
        batch.add(Job::Generate(small(2, 4)));
        batch.add(Job::Preload);
        assert_eq!(batch.reload.map(|o| o.provider), Some(ProviderChoice::Cuda));
        assert_eq!(batch.generate.map(|s| s.seed), Some(2));
        assert!(!batch.shutdown);
        assert_eq!(batch.jobs, 5);
    }

    #[test]
    fn reload_switches_the_provider_and_reports_the_fallback() {
        let generator = Generator::spawn(tiny(), options(ProviderChoice::Cpu)).unwrap();
        let shared = generator.shared().clone();
        let status = shared.status();
        assert_eq!(status.choice, Some(ProviderChoice::Cpu));
        assert_eq!((status.provider, status.loads), (None, 0), "loads lazily");

        generator.generate(small(5, 12)).unwrap();
        assert!(generator.wait_idle(LIVENESS));
        let status = shared.status();
        assert_eq!(status.last_error, None);
        assert_eq!(status.provider, Some(Provider::Cpu));
        assert!(status.fallbacks.is_empty());
        assert_eq!(status.loads, 1);
        let on_cpu = shared.handoff.take().expect("a phrase");

        // A reload on its own loads at once, so the provider in use is known before the next
        // generation (without a GPU: the CPU, with the reason CUDA was passed over).
        generator.reload(options(ProviderChoice::Cuda)).unwrap();
        assert!(generator.wait_idle(LIVENESS));
        let status = shared.status();
        assert_eq!(status.last_error, None);
        assert_eq!(status.loads, 2);
        assert_eq!(status.choice, Some(ProviderChoice::Cuda));
        let provider = check_provider(&status, ProviderChoice::Cuda);

        // The reloaded session generates without loading again.
        generator.generate(small(5, 12)).unwrap();
        assert!(generator.wait_idle(LIVENESS));
        let again = shared.handoff.take().expect("a phrase");
        assert_eq!(again.provider, provider);
        if provider == Provider::Cpu {
            assert_eq!(again.tokens, on_cpu.tokens, "same seed, same CPU result");
        }
        assert_eq!(shared.status().loads, 2);

        // Back to the CPU: no fallback left over.
        generator.reload(options(ProviderChoice::Cpu)).unwrap();
        assert!(generator.wait_idle(LIVENESS));
        let status = shared.status();
        assert_eq!(status.choice, Some(ProviderChoice::Cpu));
        assert_eq!(check_provider(&status, ProviderChoice::Cpu), Provider::Cpu);
        assert_eq!(status.loads, 3);
    }

    #[test]
    fn a_running_generation_finishes_before_the_reload() {
        let generator = Generator::spawn(tiny(), options(ProviderChoice::Cpu)).unwrap();
        let shared = generator.shared().clone();
        generator.generate(small(9, 1000)).unwrap();
        let deadline = Instant::now() + LIVENESS;
        while shared.progress.load(Ordering::Relaxed) == 0.0 {
            assert!(Instant::now() < deadline, "generation never started");
            std::thread::sleep(Duration::from_millis(1));
        }
        generator.reload(options(ProviderChoice::Cuda)).unwrap();
        assert!(generator.wait_idle(LIVENESS));
        // Not cancelled: the phrase arrived, made on the CPU session it started on.
        let phrase = shared
            .handoff
            .take()
            .expect("the running generation finished");
        assert_eq!(phrase.settings.seed, 9);
        let status = shared.status();
        assert_eq!(status.last_error, None);
        // Then the reload applied.
        assert_eq!(status.choice, Some(ProviderChoice::Cuda));
        assert_eq!(status.loads, 2);
        check_provider(&status, ProviderChoice::Cuda);
    }
}
