//! An ONNX Runtime session of the denoiser, on the best execution provider that works.

use std::path::PathBuf;

use ort::ep::{self, ExecutionProviderDispatch};
use ort::session::Session;
use ort::value::TensorRef;
use smdim_engine::vocab::{TokenId, Vocabulary};

use crate::error::{FallbackReason, InferenceError};
use crate::model::{ModelCard, ModelSource};
use crate::runtime;
use crate::style::Style;

/// Execution providers, in the order they are tried.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
pub enum Provider {
    TensorRt,
    Cuda,
    /// The default: what a saved phrase whose provider this build does not know reads as.
    #[default]
    Cpu,
}

impl Provider {
    pub fn name(self) -> &'static str {
        match self {
            Provider::TensorRt => "TensorRT",
            Provider::Cuda => "CUDA",
            Provider::Cpu => "CPU",
        }
    }
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What the user asked for; each choice falls back along the chain to the CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum ProviderChoice {
    /// TensorRT, then CUDA, then CPU.
    Auto,
    TensorRt,
    Cuda,
    #[default]
    Cpu,
}

impl ProviderChoice {
    pub fn chain(self) -> &'static [Provider] {
        match self {
            ProviderChoice::Auto | ProviderChoice::TensorRt => {
                &[Provider::TensorRt, Provider::Cuda, Provider::Cpu]
            }
            ProviderChoice::Cuda => &[Provider::Cuda, Provider::Cpu],
            ProviderChoice::Cpu => &[Provider::Cpu],
        }
    }

    /// The stable id: the CLI's `--provider` value and the plugin state's on-disk name. Written
    /// out rather than derived, so renaming a variant never breaks a saved project.
    pub fn id(self) -> &'static str {
        match self {
            ProviderChoice::Auto => "auto",
            ProviderChoice::TensorRt => "tensorrt",
            ProviderChoice::Cuda => "cuda",
            ProviderChoice::Cpu => "cpu",
        }
    }

    pub fn parse(text: &str) -> Option<ProviderChoice> {
        match text.to_ascii_lowercase().as_str() {
            "auto" => Some(ProviderChoice::Auto),
            "tensorrt" | "trt" => Some(ProviderChoice::TensorRt),
            "cuda" | "gpu" => Some(ProviderChoice::Cuda),
            "cpu" => Some(ProviderChoice::Cpu),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub provider: ProviderChoice,
    /// Intra-op threads. Default: half the cores (at least one), leaving the rest to the DAW.
    pub threads: usize,
    /// Register our native `smdim::SelectiveScan` kernel; without it ONNX Runtime runs the
    /// model's built-in `Scan` function (slower; kept for benchmarks and as a safety net).
    pub native_scan: bool,
    /// Extra folders to look for the ONNX Runtime library in.
    pub library_dirs: Vec<PathBuf>,
    /// TensorRT engine cache folder.
    pub tensorrt_cache: Option<PathBuf>,
}

impl Default for LoadOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LoadOptions {
            provider: ProviderChoice::default(),
            threads: (cores / 2).max(1),
            native_scan: true,
            library_dirs: Vec::new(),
            tensorrt_cache: default_tensorrt_cache(),
        }
    }
}

/// Per-user cache folder for TensorRT engines (building one takes minutes):
/// `<cache>/smdim/tensorrt` (`$XDG_CACHE_HOME` or `~/.cache` on Linux).
pub fn default_tensorrt_cache() -> Option<PathBuf> {
    Some(dirs::cache_dir()?.join("smdim").join("tensorrt"))
}

/// A loaded denoiser: tokens in, logits out.
pub struct Denoiser {
    session: Session,
    pub card: ModelCard,
    /// The provider that actually runs the model.
    pub provider: Provider,
    /// Providers tried before it, with the reason each was passed over.
    pub fallbacks: Vec<(Provider, FallbackReason)>,
    vocab_size: usize,
    input: ndarray::Array2<i64>,
    /// The `style` input's value, when the graph takes one (found at load).
    style_input: Option<ndarray::Array1<i64>>,
}

fn dispatch(provider: Provider, options: &LoadOptions) -> ExecutionProviderDispatch {
    match provider {
        Provider::TensorRt => {
            let mut trt = ep::TensorRT::default();
            if let Some(cache) = &options.tensorrt_cache {
                let _ = std::fs::create_dir_all(cache);
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(cache.display());
            }
            trt.build().error_on_failure()
        }
        Provider::Cuda => ep::CUDA::default().build().error_on_failure(),
        Provider::Cpu => ep::CPU::default().build().error_on_failure(),
    }
}

/// The providers registered for a session on `provider`. TensorRT gets the CUDA provider
/// behind it: TensorRT cannot run our `smdim::SelectiveScan` custom op, and ONNX Runtime hands
/// each node it rejects to the next provider, so the scan's CUDA twin runs on the GPU instead of
/// bouncing the activations to the CPU and back.
pub fn registered_providers(provider: Provider) -> &'static [Provider] {
    match provider {
        Provider::TensorRt => &[Provider::TensorRt, Provider::Cuda],
        Provider::Cuda => &[Provider::Cuda],
        Provider::Cpu => &[Provider::Cpu],
    }
}

fn execution_providers(
    provider: Provider,
    options: &LoadOptions,
) -> Vec<ExecutionProviderDispatch> {
    registered_providers(provider)
        .iter()
        .map(|&p| dispatch(p, options))
        .collect()
}

impl Denoiser {
    pub fn load(source: &ModelSource, options: &LoadOptions) -> Result<Denoiser, InferenceError> {
        let runtime = runtime::load(
            &options.library_dirs,
            options.provider != ProviderChoice::Cpu,
        )?;
        let environment = runtime.environment;
        let vocab = Vocabulary::remi_v1();
        let (bytes, card) = source.load()?;
        card.check_vocabulary(vocab)?;
        let (mut denoiser, fallbacks) = first_working(options.provider.chain(), |provider| {
            if provider != Provider::Cpu {
                if let Some(why) = runtime.gpu.unavailable(provider == Provider::TensorRt) {
                    return Err(Attempt::Fallback(why));
                }
            }
            let session = Self::build_session(&environment, &bytes, provider, options)
                .map_err(Attempt::Fallback)?;
            let styled = takes_style(&session, &card).map_err(Attempt::Fatal)?;
            let mut denoiser = Denoiser {
                session,
                card: card.clone(),
                provider,
                fallbacks: Vec::new(),
                vocab_size: vocab.len(),
                input: ndarray::Array2::zeros((1, 0)),
                style_input: styled.then(|| ndarray::Array1::zeros(1)),
            };
            // A GPU provider can register and build yet fail on its first run (a kernel the
            // card cannot run, out of memory): a reason to fall back, not a failed load.
            denoiser
                .warm_up()
                .map_err(|e| Attempt::Fallback(FallbackReason::WarmUp(e.to_string())))?;
            Ok(denoiser)
        })?;
        denoiser.fallbacks = fallbacks;
        Ok(denoiser)
    }

    fn build_session(
        environment: &ort::environment::Environment,
        bytes: &[u8],
        provider: Provider,
        options: &LoadOptions,
    ) -> Result<Session, FallbackReason> {
        // ONNX Runtime registers a session's custom-op domain in a process-wide schema registry;
        // two sessions built at the same moment (two plugin instances loading together) race
        // there ("domain is already exist"). One session build at a time.
        static BUILD: parking_lot::Mutex<()> = parking_lot::Mutex::new(());
        let _one_at_a_time = BUILD.lock();
        fn failed(e: impl std::fmt::Display) -> FallbackReason {
            FallbackReason::Session(e.to_string())
        }
        let build = || -> Result<Session, FallbackReason> {
            let mut builder = Session::builder(environment).map_err(failed)?;
            if options.native_scan {
                let domain = smdim_scan_op::operator_domain().map_err(failed)?;
                builder = builder.with_operators(domain).map_err(failed)?;
            }
            builder = builder
                .with_intra_threads(options.threads.max(1))
                .map_err(failed)?;
            if provider != Provider::Cpu {
                builder = builder
                    .with_execution_providers(execution_providers(provider, options))
                    .map_err(|e| FallbackReason::Registration(e.to_string()))?;
            }
            builder.commit_from_memory(bytes).map_err(failed)
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(build))
            .unwrap_or_else(|_| Err(FallbackReason::Session("ONNX Runtime panicked".into())))
    }

    /// One short run so the first real generation doesn't pay for lazy initialisation.
    fn warm_up(&mut self) -> Result<(), InferenceError> {
        let length = self.card.length.multiple_of * 4;
        let tokens = vec![self.card.vocab.mask_id; length.min(self.card.length.max)];
        let mut out = Vec::new();
        self.logits(&tokens, Style::Any, &mut out)
    }

    /// Whether the model takes a `style` input (its card then lists the styles).
    pub fn is_styled(&self) -> bool {
        self.style_input.is_some()
    }

    /// `Ok` when the model can write `style`: Any always; the others only on a style-conditioned
    /// model whose card lists them.
    pub fn check_style(&self, style: Style) -> Result<(), InferenceError> {
        if style == Style::Any || self.card.has_style(style) {
            Ok(())
        } else if !self.is_styled() {
            Err(InferenceError::NoStyles { requested: style })
        } else {
            Err(InferenceError::StyleMissing {
                requested: style,
                available: self.card.styles.clone(),
            })
        }
    }

    /// Logits `[tokens.len(), vocab]` for `style` into `out` (cleared first). A model without
    /// styles runs on the tokens alone, which is only `Style::Any`.
    pub fn logits(
        &mut self,
        tokens: &[TokenId],
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        self.logits_batch(tokens, 1, style, out)
    }

    /// Logits `[batch, length, vocab]` of `batch` sequences of one length, laid end to end in
    /// `tokens`, in one run: variations of one plan cost one call per step instead of `batch`.
    pub fn logits_batch(
        &mut self,
        tokens: &[TokenId],
        batch: usize,
        style: Style,
        out: &mut Vec<f32>,
    ) -> Result<(), InferenceError> {
        self.check_style(style)?;
        if batch > 1
            && !self.card.batch_is_exact()
            && !tokens.is_empty()
            && tokens.len().is_multiple_of(batch)
        {
            // One scale per call would tie each sequence's logits to the others': run them one
            // by one, so a variation is exactly the phrase its seed makes alone.
            return crate::generate::one_by_one(tokens, batch, out, |sequence, one| {
                self.logits_batch(sequence, 1, style, one)
            });
        }
        let length = if batch == 0 || !tokens.len().is_multiple_of(batch) {
            0
        } else {
            tokens.len() / batch
        };
        if length == 0
            || !length.is_multiple_of(self.card.length.multiple_of)
            || length > self.card.length.max
        {
            return Err(InferenceError::Run(format!(
                "{} tokens in {batch} sequences: the model takes sequences of a multiple of {} up to {}",
                tokens.len(),
                self.card.length.multiple_of,
                self.card.length.max
            )));
        }
        if self.input.dim() != (batch, length) {
            self.input = ndarray::Array2::zeros((batch, length));
        }
        for (slot, &token) in self.input.iter_mut().zip(tokens) {
            *slot = token as i64;
        }
        let vocab_size = self.vocab_size;
        let input = TensorRef::from_array_view(&self.input)
            .map_err(|e| InferenceError::Run(e.to_string()))?;
        let outputs = match &mut self.style_input {
            Some(style_input) => {
                if style_input.len() != batch {
                    *style_input = ndarray::Array1::zeros(batch);
                }
                style_input.fill(style.index() as i64);
                let style = TensorRef::from_array_view(&*style_input)
                    .map_err(|e| InferenceError::Run(e.to_string()))?;
                self.session
                    .run(ort::inputs!["tokens" => input, "style" => style])
            }
            None => self.session.run(ort::inputs!["tokens" => input]),
        }
        .map_err(|e| InferenceError::Run(e.to_string()))?;
        let (shape, data) = outputs["logits"]
            .try_extract_tensor::<f32>()
            .map_err(|e| InferenceError::Run(e.to_string()))?;
        if data.len() != batch * length * vocab_size {
            return Err(InferenceError::Run(format!(
                "logits of shape {shape:?}, expected [{batch}, {length}, {vocab_size}]"
            )));
        }
        out.clear();
        out.extend_from_slice(data);
        Ok(())
    }
}

/// How trying one provider of the chain ended, when it did not give a denoiser.
enum Attempt {
    /// Pass it over for the next provider (the last one, the CPU, fails the load with it).
    Fallback(FallbackReason),
    /// A problem of the model itself: no provider would do better.
    Fatal(InferenceError),
}

/// Tries `chain` in order; returns the first provider's result with the reasons the ones before
/// it were passed over.
fn first_working<T>(
    chain: &[Provider],
    mut attempt: impl FnMut(Provider) -> Result<T, Attempt>,
) -> Result<(T, Vec<(Provider, FallbackReason)>), InferenceError> {
    let mut fallbacks = Vec::new();
    for &provider in chain {
        match attempt(provider) {
            Ok(value) => return Ok((value, fallbacks)),
            Err(Attempt::Fatal(e)) => return Err(e),
            Err(Attempt::Fallback(reason)) => fallbacks.push((provider, reason)),
        }
    }
    Err(match fallbacks.pop() {
        Some((_, reason)) => InferenceError::Session(reason.to_string()),
        None => InferenceError::Session("no execution provider could run the model".into()),
    })
}

/// Whether the session takes a `style` input; the card must say the same (listing styles
/// exactly when the graph has the input), since a card that disagrees with its graph would
/// either offer styles the model ignores or hide ones it has.
fn takes_style(session: &Session, card: &ModelCard) -> Result<bool, InferenceError> {
    let input = session
        .inputs()
        .iter()
        .find(|input| input.name() == "style");
    if let Some(ty) = input.map(|i| i.dtype().tensor_type()) {
        if ty != Some(ort::value::TensorElementType::Int64) {
            return Err(InferenceError::StyleMismatch(format!(
                "the graph's style input is {ty:?}, not an int64 tensor"
            )));
        }
    }
    let styled = input.is_some();
    match (styled, card.styles.is_empty()) {
        (true, true) => Err(InferenceError::StyleMismatch(
            "the graph takes a style input but the card lists no styles".into(),
        )),
        (false, false) => Err(InferenceError::StyleMismatch(format!(
            "the card lists styles ({}) but the graph has no style input",
            card.styles.join(", ")
        ))),
        _ => Ok(styled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensorrt_sessions_keep_the_scan_on_the_gpu() {
        assert_eq!(
            registered_providers(Provider::TensorRt),
            &[Provider::TensorRt, Provider::Cuda]
        );
        assert_eq!(registered_providers(Provider::Cuda), &[Provider::Cuda]);
        for choice in [
            ProviderChoice::Auto,
            ProviderChoice::TensorRt,
            ProviderChoice::Cuda,
        ] {
            assert_eq!(choice.chain().last(), Some(&Provider::Cpu), "{choice:?}");
        }
    }

    #[test]
    fn a_failed_warm_up_falls_back_to_the_next_provider() {
        // TensorRT is missing, CUDA builds but its first run fails: the CPU runs the model and
        // both reasons are kept, in order.
        let (provider, fallbacks) = first_working(ProviderChoice::Auto.chain(), |p| match p {
            Provider::TensorRt => Err(Attempt::Fallback(FallbackReason::NoTensorRt)),
            Provider::Cuda => Err(Attempt::Fallback(FallbackReason::WarmUp(
                "CUDA error: out of memory".into(),
            ))),
            Provider::Cpu => Ok(p),
        })
        .unwrap();
        assert_eq!(provider, Provider::Cpu);
        assert_eq!(
            fallbacks,
            vec![
                (Provider::TensorRt, FallbackReason::NoTensorRt),
                (
                    Provider::Cuda,
                    FallbackReason::WarmUp("CUDA error: out of memory".into())
                )
            ]
        );
        assert_eq!(
            fallbacks[1].1.to_string(),
            "the first run failed: CUDA error: out of memory"
        );

        // The CPU is the end of every chain: its failure fails the load with its reason.
        let failed = first_working::<()>(ProviderChoice::Cpu.chain(), |_| {
            Err(Attempt::Fallback(FallbackReason::WarmUp(
                "bad graph".into(),
            )))
        })
        .unwrap_err();
        assert!(failed.to_string().contains("bad graph"), "{failed}");

        // A problem of the model stops at once: no other provider is tried.
        let mut tried = Vec::new();
        let fatal = first_working::<()>(ProviderChoice::Auto.chain(), |p| {
            tried.push(p);
            Err(Attempt::Fatal(InferenceError::Card("no styles".into())))
        });
        assert!(fatal.is_err());
        assert_eq!(tried, [Provider::TensorRt]);
    }

    #[test]
    fn every_choice_parses_back_from_its_id() {
        for choice in [
            ProviderChoice::Auto,
            ProviderChoice::TensorRt,
            ProviderChoice::Cuda,
            ProviderChoice::Cpu,
        ] {
            assert_eq!(ProviderChoice::parse(choice.id()), Some(choice));
        }
    }
}
