//! The generation thread: a dedicated worker fed by a channel (not the host's or the
//! framework's shared background thread, which one long inference would block for every plugin
//! instance). It loads the model lazily, generates, and publishes phrases through the
//! lock-free handoff that the audio thread reads.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use atomic_float::AtomicF32;
use crossbeam_channel::{Receiver, Sender};
use parking_lot::Mutex;
use smdim_engine::handoff::PhraseHandoff;

use crate::error::InferenceError;
use crate::generate::{generate, Generated, GenerationSettings};
use crate::model::ModelSource;
use crate::session::{Denoiser, Provider, SessionOptions};

enum Job {
    Preload,
    Generate(GenerationSettings),
    Shutdown,
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
    pub provider: Option<Provider>,
    /// Providers passed over, with why.
    pub fallbacks: Vec<(Provider, String)>,
    pub last_error: Option<String>,
    pub last_elapsed: Option<Duration>,
}

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
}

impl Shared {
    pub fn status(&self) -> Status {
        self.status.lock().clone()
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
        let _ = self.jobs.send(Job::Preload);
    }

    /// Queues a generation; a newer request supersedes queued older ones.
    pub fn generate(&self, settings: GenerationSettings) -> Result<(), InferenceError> {
        self.shared.cancel.store(false, Ordering::SeqCst);
        self.jobs
            .send(Job::Generate(settings))
            .map_err(|_| InferenceError::WorkerGone)
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
            if self.jobs.is_empty() && self.shared.status.lock().phase == Phase::Idle {
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
    let mut denoiser: Option<Denoiser> = None;
    while let Ok(mut job) = jobs.recv() {
        // Only the newest queued generation matters; a shutdown wins over everything.
        while let Ok(next) = jobs.try_recv() {
            if matches!(job, Job::Shutdown) {
                break;
            }
            job = next;
        }
        let settings = match job {
            Job::Shutdown => return,
            Job::Preload => None,
            Job::Generate(settings) => Some(settings),
        };
        // A panic inside ONNX Runtime or our code must not take the thread (or the host) down.
        let outcome =
            std::panic::catch_unwind(AssertUnwindSafe(|| -> Result<(), InferenceError> {
                if denoiser.is_none() {
                    set_phase(&shared, Phase::Loading);
                    let loaded = Denoiser::load(&model, &options)?;
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
    }
}
