//! One loaded model per process for each model and device: plugin instances that ask for the
//! same model on the same provider share one ONNX Runtime session (its weights, arena and
//! thread pool) instead of loading their own.
//!
//! Instances take turns per denoiser call through a fair (first come, first served) lock, so
//! two instances generating at once interleave step by step and neither waits for the other's
//! whole phrase. Nothing here runs on an audio thread. The session is freed when the last
//! instance using it lets go, on that instance's thread.

use std::sync::{Arc, Weak};

use parking_lot::{FairMutex, FairMutexGuard, Mutex};
use smdim_engine::TokenId;

use crate::denoiser::{Denoiser, LoadOptions, Provider, ProviderChoice};
use crate::error::{FallbackReason, InferenceError};
use crate::generate::Model;
use crate::model::{ModelCard, ModelSource};
use crate::style::Style;

/// A denoiser several generation threads use in turn.
pub struct SharedDenoiser {
    denoiser: FairMutex<Denoiser>,
    /// Copies of the denoiser's fixed facts, readable without taking a turn.
    pub card: ModelCard,
    pub provider: Provider,
    pub fallbacks: Vec<(Provider, FallbackReason)>,
}

impl SharedDenoiser {
    pub fn new(denoiser: Denoiser) -> SharedDenoiser {
        SharedDenoiser {
            card: denoiser.card.clone(),
            provider: denoiser.provider,
            fallbacks: denoiser.fallbacks.clone(),
            denoiser: FairMutex::new(denoiser),
        }
    }

    /// Waits for this caller's turn.
    pub fn lock(&self) -> FairMutexGuard<'_, Denoiser> {
        self.denoiser.lock()
    }
}

impl Model for &SharedDenoiser {
    fn card(&self) -> &ModelCard {
        &self.card
    }

    fn provider(&self) -> Provider {
        self.provider
    }

    fn check_style(&self, style: Style) -> Result<(), InferenceError> {
        self.lock().check_style(style)
    }

    fn logits(
        &mut self,
        tokens: &[TokenId],
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        // One turn per call: instances interleave between diffusion steps.
        self.lock().logits(tokens, style, out)
    }

    fn logits_batch(
        &mut self,
        tokens: &[TokenId],
        batch: usize,
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        self.lock().logits_batch(tokens, batch, style, out)
    }
}

/// What makes two loads the same: the model's bytes and card, and the options that shape the
/// session.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    model: String,
    provider: ProviderChoice,
    threads: usize,
    native_scan: bool,
}

type Slot = Arc<Mutex<Weak<SharedDenoiser>>>;

static POOL: Mutex<Vec<(Key, Slot)>> = Mutex::new(Vec::new());

/// The process's denoiser for `source` with `options`, loading it with `load` when no instance
/// holds one. Concurrent callers for the same key wait for one load; other keys load in
/// parallel.
pub fn shared_with(
    source: &ModelSource,
    options: &LoadOptions,
    load: impl FnOnce() -> Result<Denoiser, InferenceError>,
) -> Result<Arc<SharedDenoiser>, InferenceError> {
    let key = Key {
        model: source.fingerprint()?,
        provider: options.provider,
        threads: options.threads,
        native_scan: options.native_scan,
    };
    let slot = {
        let mut pool = POOL.lock();
        // Forget the keys nobody holds or loads any more.
        pool.retain(|(_, slot)| Arc::strong_count(slot) > 1 || slot.lock().strong_count() > 0);
        match pool.iter().find(|(k, _)| *k == key) {
            Some((_, slot)) => slot.clone(),
            None => {
                let slot: Slot = Arc::new(Mutex::new(Weak::new()));
                pool.push((key, slot.clone()));
                slot
            }
        }
    };
    let mut held = slot.lock();
    if let Some(denoiser) = held.upgrade() {
        return Ok(denoiser);
    }
    let denoiser = Arc::new(SharedDenoiser::new(load()?));
    *held = Arc::downgrade(&denoiser);
    Ok(denoiser)
}

/// [`shared_with`] loading through [`Denoiser::load`].
pub fn shared(
    source: &ModelSource,
    options: &LoadOptions,
) -> Result<Arc<SharedDenoiser>, InferenceError> {
    shared_with(source, options, || Denoiser::load(source, options))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn tiny() -> ModelSource {
        ModelSource::from_onnx_path(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/tiny.onnx"))
    }

    // Tests run in parallel in one process and share the pool: each test's thread counts are
    // its own (1 and 2, 3, 4), so no test finds another's session.

    #[test]
    fn the_same_model_and_device_load_once_until_nobody_holds_it() {
        let loads = AtomicUsize::new(0);
        let source = tiny();
        let options = LoadOptions {
            threads: 1,
            ..LoadOptions::default()
        };
        let load = || {
            loads.fetch_add(1, Ordering::SeqCst);
            Denoiser::load(&source, &options)
        };
        let Ok(a) = shared_with(&source, &options, load) else {
            // No ONNX Runtime in this environment: the runtime tests say so.
            return;
        };
        let b = shared_with(&source, &options, load).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "one session for both");
        assert_eq!(loads.load(Ordering::SeqCst), 1);

        // Another thread count is another session.
        let other = LoadOptions {
            threads: 2,
            ..options.clone()
        };
        let c = shared_with(&source, &other, || Denoiser::load(&source, &other)).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));

        // Freed with the last holder; the next caller loads again.
        let weak = Arc::downgrade(&a);
        drop((a, b));
        assert!(weak.upgrade().is_none(), "freed");
        let d = shared_with(&source, &options, load).unwrap();
        assert_eq!(loads.load(Ordering::SeqCst), 2);
        drop((c, d));
    }

    #[test]
    fn a_failed_load_is_not_kept() {
        let source = tiny();
        let options = LoadOptions {
            threads: 3,
            ..LoadOptions::default()
        };
        let failed = shared_with(&source, &options, || {
            Err(InferenceError::Session("test failure".into()))
        });
        assert!(failed.is_err());
        let loads = AtomicUsize::new(0);
        let _ = shared_with(&source, &options, || {
            loads.fetch_add(1, Ordering::SeqCst);
            Err(InferenceError::Session("again".into()))
        });
        assert_eq!(
            loads.load(Ordering::SeqCst),
            1,
            "the next caller tries again"
        );
    }

    #[test]
    fn two_threads_share_one_denoiser_and_both_generate() {
        let source = tiny();
        let options = LoadOptions {
            threads: 4,
            native_scan: true,
            ..LoadOptions::default()
        };
        let Ok(shared) = shared(&source, &options) else {
            return;
        };
        let length = shared.card.length.multiple_of;
        let mask = shared.card.vocab.mask_id;
        let results: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..2)
                .map(|_| {
                    let shared = shared.clone();
                    scope.spawn(move || {
                        let mut model = &*shared;
                        let mut out = Vec::new();
                        for _ in 0..20 {
                            model
                                .logits(&vec![mask; length], Style::Any, &mut out)
                                .unwrap();
                        }
                        out
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert_eq!(
            results[0], results[1],
            "the same logits through the shared session"
        );
        assert!(!results[0].is_empty());
    }
}
