//! SMDIM, the plugin: a CLAP + VST3 MIDI generator on nice-plug.
//!
//! - [`params`]: host-visible parameters (stable ids).
//! - [`state`]: what is saved in the host project (versioned), the save-file schema.
//! - [`shared`]: the state shared by the editor, the host, the generation thread and the audio
//!   thread; requests and the generation status.
//! - [`generation`]: the generation thread, owning the denoiser.
//! - [`audio`]: the audio thread: transport → scheduler → note events, pass-through.
//! - [`preview`]: the preview voice playing those note events on the audio output.
//! - [`editor`]: the egui editor.
//! - [`drag`]: the phrase dragged into the DAW as a .mid file.
//! - [`model`]: the embedded model (build-time switch).
//! - [`export`]: Export .mid.
//! - [`alloc_audit`]: counts heap operations inside `process` (read by the host tests).
//!
//! Instantiation starts one idle generation thread and loads nothing: ONNX Runtime and the
//! model load on that thread on the first generation or when the editor opens.

pub mod alloc_audit;
pub mod audio;
pub mod drag;
pub mod editor;
pub mod export;
pub mod generation;
pub mod model;
pub mod params;
pub mod preview;
pub mod shared;
pub mod state;

use std::num::NonZeroU32;
use std::sync::Arc;

use nice_plug::prelude::*;

use crate::audio::{engine_transport, Audio, BlockParams, NoteIo};
use crate::generation::GenerationThread;
use crate::params::SmdimParams;
use crate::preview::Voiced;
use crate::shared::{Shared, StateField};
use smdim_engine::preview::Preview;

/// CLAP plugin id; never change it (hosts store it in projects).
pub const CLAP_ID: &str = "org.smdim.smdim";
/// VST3 class id; never change it.
pub const VST3_CLASS_ID: [u8; 16] = *b"SMDIMmidiGenV001";

pub struct Smdim {
    params: Arc<SmdimParams>,
    shared: Arc<Shared>,
    audio: Audio,
    preview: Preview,
    /// Stopped when the plugin is dropped, without waiting for a model load.
    _generation: Option<GenerationThread>,
}

impl Default for Smdim {
    fn default() -> Self {
        let (shared, audio_side, requests) = Shared::new();
        let params = Arc::new(SmdimParams::new(StateField(shared.clone())));
        let generation = GenerationThread::spawn(
            shared.clone(),
            params.clone(),
            requests,
            generation::embedded_loader(),
        );
        let generation = match generation {
            Ok(thread) => Some(thread),
            Err(e) => {
                shared.set_error(Some(format!("could not start the generation thread: {e}")));
                None
            }
        };
        Smdim {
            params,
            shared,
            audio: Audio::new(audio_side),
            preview: Preview::new(48_000.0),
            _generation: generation,
        }
    }
}

/// The process context as the audio module's note source and sink.
struct ContextIo<'a, C>(&'a mut C);

impl<C: ProcessContext<Smdim>> NoteIo<()> for ContextIo<'_, C> {
    fn next_incoming(&mut self) -> Option<NoteEvent<()>> {
        self.0.next_event()
    }

    fn send(&mut self, event: NoteEvent<()>) -> bool {
        // A full host queue drops the event; nothing better is possible on the audio thread.
        self.0.try_send_event(event).is_ok()
    }
}

impl Plugin for Smdim {
    const NAME: &'static str = "SMDIM";
    const VENDOR: &'static str = "SMDIM project";
    const URL: &'static str = "https://github.com/smdim/smdim";
    const EMAIL: &'static str = "smdim@users.noreply.github.com";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");

    // Stereo: the preview voice (and some hosts reject MIDI-only plugins).
    const AUDIO_IO_LAYOUTS: &'static [AudioIOLayout] = &[AudioIOLayout {
        main_input_channels: None,
        main_output_channels: NonZeroU32::new(2),
        ..AudioIOLayout::const_default()
    }];

    const MIDI_INPUT: MidiConfig = MidiConfig::MidiCCs;
    const MIDI_OUTPUT: MidiConfig = MidiConfig::MidiCCs;
    // Must stay false: with it, nice-plug 0.4.2's CLAP wrapper adds a sub-block's offset to the
    // song position even when that position came from a mid-block transport event (hosts send
    // one at a loop wrap), so the position runs ahead and the downbeat after the wrap is lost.
    const SAMPLE_ACCURATE_AUTOMATION: bool = false;
    // Room for a burst of host events without the wrapper allocating on the audio thread (Ardour
    // restoring a session sends more than nice-plug's default 1024).
    const INPUT_EVENT_CAPACITY: usize = 4096;

    type SysExMessage = ();
    type BackgroundTask = ();
    type Editor = nice_plug_egui::EguiEditor<editor::SmdimEditor>;

    fn params(&self) -> Arc<dyn Params> {
        self.params.clone()
    }

    fn editor(&mut self, _async_executor: AsyncExecutor<Self>) -> Option<Self::Editor> {
        editor::create(self.params.clone(), self.shared.clone())
    }

    fn activate(
        &mut self,
        _audio_io_layout: &AudioIOLayout,
        buffer_config: &BufferConfig,
        _context: &mut impl ActivateContext<Self>,
    ) -> bool {
        self.preview
            .set_sample_rate(f64::from(buffer_config.sample_rate));
        true
    }

    fn reset(&mut self) {
        self.audio.reset();
        self.preview.reset();
    }

    fn filter_state(state: &mut PluginState) {
        // Generate's saved level is restored as saved (hosts and clap-validator check that a
        // state reproduces); it cannot fire: the first block after a load is never an edge.
        // Projects from before the preview voice routed SMDIM's notes to a synth: they keep
        // sounding as they did (a new instance has it on).
        state
            .params
            .entry("preview".to_owned())
            .or_insert(nice_plug::plugin::ParamValue::Bool(false));
    }

    fn process(
        &mut self,
        buffer: &mut Buffer,
        _aux: &mut AuxiliaryBuffers,
        context: &mut impl ProcessContext<Self>,
    ) -> ProcessStatus {
        let _scope = alloc_audit::ProcessScope::enter();
        let block_len = u32::try_from(buffer.samples()).unwrap_or(u32::MAX);
        let channels = buffer.as_slice();
        let transport = engine_transport(context.transport());
        let params = BlockParams {
            mode: self.params.mode.value().playback(),
            channel: self.params.midi_channel(),
            pass_through: self.params.pass_through.value(),
            generate: self.params.generate.value(),
        };
        self.preview.set_enabled(self.params.preview.value());
        self.preview.set_level(self.params.preview_level.value());
        match channels {
            // The preview renders (overwrites) the whole block, silence included.
            [left, right] => {
                let mut io = Voiced::new(ContextIo(context), &mut self.preview, left, right);
                self.audio
                    .process(&self.shared, &transport, block_len, params, &mut io);
                io.finish();
            }
            // Not a layout this plugin declares; the notes still play, the output is silent.
            _ => {
                for channel in channels.iter_mut() {
                    channel.fill(0.0);
                }
                self.audio.process(
                    &self.shared,
                    &transport,
                    block_len,
                    params,
                    &mut ContextIo(context),
                );
            }
        }
        ProcessStatus::KeepAlive
    }

    fn deactivate(&mut self) {
        // Nowhere to send note-offs here; the scheduler forgets what sounds and restarts clean.
        let mut sink = Discard;
        self.audio.release_all(&mut sink);
        self.preview.reset();
    }
}

struct Discard;

impl NoteIo<()> for Discard {
    fn next_incoming(&mut self) -> Option<NoteEvent<()>> {
        None
    }

    fn send(&mut self, _event: NoteEvent<()>) -> bool {
        true
    }
}

impl ClapPlugin for Smdim {
    const CLAP_ID: &'static str = CLAP_ID;
    const CLAP_DESCRIPTION: Option<&'static str> =
        Some("Generates MIDI phrases with a diffusion model and plays them in time with the host");
    const CLAP_MANUAL_URL: Option<&'static str> = None;
    const CLAP_SUPPORT_URL: Option<&'static str> = None;
    const CLAP_FEATURES: &'static [ClapFeature] = &[
        ClapFeature::NoteEffect,
        ClapFeature::Instrument,
        ClapFeature::Utility,
    ];
}

impl Vst3Plugin for Smdim {
    const VST3_CLASS_ID: [u8; 16] = VST3_CLASS_ID;
    const VST3_SUBCATEGORIES: &'static [Vst3SubCategory] =
        &[Vst3SubCategory::Instrument, Vst3SubCategory::Generator];
}

nice_export_clap!(Smdim);
nice_export_vst3!(Smdim);
