//! A minimal CLAP host on clack-host that loads the built `SMDIM.clap`, drives it with a
//! scripted transport and collects its note output sample-exactly.
//!
//! The plugin under test is `$SMDIM_CLAP`, else `target/bundled/SMDIM.clap` (build it with
//! `cargo xtask bundle smdim --release`).

pub mod reference;

use std::collections::HashMap;
use std::ffi::CString;
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use clack_extensions::audio_ports::{AudioPortInfoBuffer, PluginAudioPorts};
use clack_extensions::note_ports::{NotePortInfoBuffer, PluginNotePorts};
use clack_extensions::params::{ParamInfoBuffer, PluginParams};
use clack_extensions::state::PluginState;
use clack_host::events::event_types::{
    NoteOffEvent, NoteOnEvent, ParamValueEvent, TransportEvent, TransportFlags,
};
use clack_host::events::Pckn;
use clack_host::prelude::*;
use clack_host::utils::ClapId;

pub use clack_host;

pub struct TestHostShared {
    pub callback_requested: AtomicBool,
}

impl SharedHandler<'_> for TestHostShared {
    fn request_restart(&self) {}
    fn request_process(&self) {}
    fn request_callback(&self) {
        self.callback_requested.store(true, Ordering::SeqCst);
    }
}

// A host with a GUI provides clap.gui (nice-plug 0.4.2 requires it to open an editor).
impl clack_extensions::gui::HostGuiImpl for TestHostShared {
    fn resize_hints_changed(&self) {}
    fn request_resize(&self, _new_size: clack_extensions::gui::GuiSize) -> Result<(), HostError> {
        Ok(())
    }
    fn request_show(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn request_hide(&self) -> Result<(), HostError> {
        Ok(())
    }
    fn closed(&self, _was_destroyed: bool) {}
}

pub struct TestHost;

impl HostHandlers for TestHost {
    type Shared<'a> = TestHostShared;
    type MainThread<'a> = ();
    type AudioProcessor<'a> = ();

    fn declare_extensions(builder: &mut HostExtensions<Self>, _shared: &Self::Shared<'_>) {
        builder.register::<clack_extensions::gui::HostGui>();
    }
}

/// Path of the plugin under test.
pub fn plugin_path() -> PathBuf {
    if let Some(path) = std::env::var_os("SMDIM_CLAP") {
        return PathBuf::from(path);
    }
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/bundled/SMDIM.clap")
}

pub const PLUGIN_ID: &str = "org.smdim.smdim";

/// The entry is loaded once per test process (as hosts do).
pub fn entry() -> &'static PluginEntry {
    static ENTRY: OnceLock<PluginEntry> = OnceLock::new();
    ENTRY.get_or_init(|| {
        let path = plugin_path();
        assert!(
            path.is_file(),
            "{} missing: run `cargo xtask bundle smdim --release` first",
            path.display()
        );
        // SAFETY: loading a CLAP library runs its initialisers; it is the plugin under test.
        unsafe { PluginEntry::load(&path) }.expect("the CLAP entry loads")
    })
}

/// Heap operations the plugin made inside `process` (its exported audit counter).
pub fn process_heap_ops() -> u64 {
    static COUNTER: OnceLock<libloading::Symbol<'static, extern "C" fn() -> u64>> = OnceLock::new();
    static LIBRARY: OnceLock<libloading::Library> = OnceLock::new();
    let _ = entry();
    let library = LIBRARY.get_or_init(|| {
        // SAFETY: the same library the entry loaded; dlopen returns the same handle.
        unsafe { libloading::Library::new(plugin_path()) }.expect("plugin library")
    });
    let counter = COUNTER.get_or_init(|| {
        // SAFETY: the symbol is `extern "C" fn() -> u64` in the plugin (alloc_audit.rs).
        unsafe { library.get(b"smdim_process_heap_ops\0") }.expect("audit symbol exported")
    });
    counter()
}

/// One note event the plugin sent, at an absolute sample position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OutNote {
    pub sample: u64,
    pub on: bool,
    pub key: u8,
    pub channel: u8,
    pub velocity: f64,
}

pub struct Plugin {
    pub instance: PluginInstance<TestHost>,
    params: HashMap<String, (ClapId, f64, f64)>,
    pub instantiate_time: std::time::Duration,
}

impl Plugin {
    pub fn new() -> Plugin {
        let host = HostInfo::new("smdim-host-tests", "SMDIM", "https://example.org", "0.1")
            .expect("host info");
        let id = CString::new(PLUGIN_ID).expect("id");
        let started = Instant::now();
        let mut instance = PluginInstance::<TestHost>::new(
            |_| TestHostShared {
                callback_requested: AtomicBool::new(false),
            },
            |_| (),
            entry(),
            &id,
            &host,
        )
        .expect("instantiate");
        let instantiate_time = started.elapsed();
        let mut params = HashMap::new();
        let handle = instance.plugin_handle();
        let ext = handle
            .get_extension::<PluginParams>()
            .expect("params extension");
        let mut buffer = ParamInfoBuffer::new();
        for i in 0..ext.count(&handle) {
            if let Some(info) = ext.get_info(&handle, i, &mut buffer) {
                let name = String::from_utf8_lossy(info.name).into_owned();
                params.insert(name, (info.id, info.min_value, info.max_value));
            }
        }
        Plugin {
            instance,
            params,
            instantiate_time,
        }
    }

    pub fn param_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.params.keys().cloned().collect();
        names.sort();
        names
    }

    /// (id, min, max) of the parameter with this display name.
    pub fn param(&self, name: &str) -> (ClapId, f64, f64) {
        *self
            .params
            .get(name)
            .unwrap_or_else(|| panic!("no parameter {name:?}: {:?}", self.param_names()))
    }

    /// A parameter change event (CLAP plain value, as the plugin's param info describes).
    pub fn param_event(&self, name: &str, time: u32, value: f64) -> ParamValueEvent {
        let (id, _, _) = self.param(name);
        ParamValueEvent::new(time, id, Pckn::match_all(), value)
    }

    pub fn param_value(&mut self, name: &str) -> f64 {
        let (id, _, _) = self.param(name);
        let handle = self.instance.plugin_handle();
        let ext = handle.get_extension::<PluginParams>().expect("params");
        ext.get_value(&handle, id).expect("value")
    }

    /// The plugin's state as nice-plug writes it to the CLAP stream: a little-endian u64
    /// length, then the JSON. Returns the JSON.
    pub fn save_state(&mut self) -> Vec<u8> {
        let handle = self.instance.plugin_handle();
        let ext = handle
            .get_extension::<PluginState>()
            .expect("state extension");
        let mut bytes = Vec::new();
        ext.save(&handle, &mut bytes).expect("state saves");
        assert!(bytes.len() >= 8, "state has a length prefix");
        let len = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) as usize;
        assert_eq!(len, bytes.len() - 8, "length prefix matches");
        bytes.split_off(8)
    }

    /// Loads state JSON (as returned by [`Plugin::save_state`]).
    pub fn load_state(&mut self, json: &[u8]) {
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json);
        let handle = self.instance.plugin_handle();
        let ext = handle
            .get_extension::<PluginState>()
            .expect("state extension");
        ext.load(&handle, &mut Cursor::new(bytes))
            .expect("state loads");
    }

    /// Runs main-thread callbacks the plugin asked for.
    pub fn pump(&mut self) {
        let requested = self
            .instance
            .access_shared_handler(|s| s.callback_requested.swap(false, Ordering::SeqCst));
        if requested {
            self.instance.call_on_main_thread_callback();
        }
    }

    /// (count, channel count of the first) audio ports.
    pub fn audio_ports(&mut self, input: bool) -> (u32, Option<u32>) {
        let handle = self.instance.plugin_handle();
        let Some(ext) = handle.get_extension::<PluginAudioPorts>() else {
            return (0, None);
        };
        let count = ext.count(&handle, input);
        let mut buffer = AudioPortInfoBuffer::default();
        let channels = ext
            .get(&handle, 0, input, &mut buffer)
            .map(|info| info.channel_count);
        (count, channels)
    }

    /// Note ports: (count, supports CLAP note dialect on the first).
    pub fn note_ports(&mut self, input: bool) -> (u32, bool) {
        let handle = self.instance.plugin_handle();
        let Some(ext) = handle.get_extension::<PluginNotePorts>() else {
            return (0, false);
        };
        let count = ext.count(&handle, input);
        let mut buffer = NotePortInfoBuffer::default();
        let clap = ext.get(&handle, 0, input, &mut buffer).is_some_and(|info| {
            info.supported_dialects
                .supports(clack_extensions::note_ports::NoteDialect::Clap)
        });
        (count, clap)
    }

    pub fn activate(&mut self, sample_rate: f64, max_block: u32) -> Processor {
        let stopped = self
            .instance
            .activate(
                |_, _| (),
                PluginAudioConfiguration {
                    sample_rate,
                    min_frames_count: 1,
                    max_frames_count: max_block,
                },
            )
            .expect("activate");
        let started = stopped.start_processing().expect("start processing");
        Processor {
            processor: Some(started),
            outputs: vec![vec![1.0f32; max_block as usize]; 2],
            input_ports: AudioPorts::with_capacity(0, 0),
            output_ports: AudioPorts::with_capacity(2, 1),
            out_events: EventBuffer::with_capacity(4096),
            sample: 0,
            sample_rate,
            max_block,
            notes: Vec::new(),
            nonzero_audio: false,
            recorded: None,
        }
    }

    pub fn deactivate(&mut self, mut processor: Processor) {
        if let Some(started) = processor.processor.take() {
            let stopped = started.stop_processing();
            self.instance.deactivate(stopped);
        }
    }
}

impl Default for Plugin {
    fn default() -> Self {
        Plugin::new()
    }
}

/// The host transport at one instant, as sent to the plugin.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HostTransport {
    pub playing: bool,
    pub tempo: f64,
    pub beats: f64,
    pub numerator: u16,
    pub denominator: u16,
    pub loop_range: Option<(f64, f64)>,
    /// Sent as the bar fields (start of the bar, bar number); computed from `beats` when `None`.
    pub bar: Option<(f64, i32)>,
}

impl HostTransport {
    pub fn playing(tempo: f64, beats: f64) -> HostTransport {
        HostTransport {
            playing: true,
            tempo,
            beats,
            numerator: 4,
            denominator: 4,
            loop_range: None,
            bar: None,
        }
    }

    pub fn event(&self, time: u32) -> TransportEvent {
        let bar_len = self.numerator as f64 * 4.0 / self.denominator.max(1) as f64;
        let (bar_start, bar_number) = self.bar.unwrap_or_else(|| {
            let n = if bar_len.is_finite() && bar_len > 0.0 && self.beats.is_finite() {
                (self.beats / bar_len).floor()
            } else {
                0.0
            };
            (
                n * bar_len,
                n.clamp(i32::MIN as f64, i32::MAX as f64) as i32,
            )
        });
        let mut flags = TransportFlags::HAS_TEMPO
            | TransportFlags::HAS_BEATS_TIMELINE
            | TransportFlags::HAS_SECONDS_TIMELINE
            | TransportFlags::HAS_TIME_SIGNATURE;
        if self.playing {
            flags |= TransportFlags::IS_PLAYING;
        }
        let (loop_start, loop_end) = self.loop_range.unwrap_or((0.0, 0.0));
        if self.loop_range.is_some() {
            flags |= TransportFlags::IS_LOOP_ACTIVE;
        }
        let seconds = self.beats * 60.0 / self.tempo;
        TransportEvent {
            header: clack_host::events::EventHeader::new_core(
                time,
                clack_host::events::EventFlags::empty(),
            ),
            flags,
            song_pos_beats: self.beats.into(),
            song_pos_seconds: if seconds.is_finite() {
                seconds.into()
            } else {
                0.0.into()
            },
            tempo: self.tempo,
            tempo_inc: 0.0,
            loop_start_beats: loop_start.into(),
            loop_end_beats: loop_end.into(),
            loop_start_seconds: (loop_start * 60.0 / self.tempo).into(),
            loop_end_seconds: (loop_end * 60.0 / self.tempo).into(),
            bar_start: bar_start.into(),
            bar_number,
            time_signature_numerator: self.numerator,
            time_signature_denominator: self.denominator,
        }
    }
}

pub struct Processor {
    processor: Option<StartedPluginAudioProcessor<TestHost>>,
    outputs: Vec<Vec<f32>>,
    input_ports: AudioPorts,
    output_ports: AudioPorts,
    out_events: EventBuffer,
    /// Absolute sample of the next block's start.
    pub sample: u64,
    pub sample_rate: f64,
    pub max_block: u32,
    /// Everything the plugin output so far.
    pub notes: Vec<OutNote>,
    /// Any non-zero output sample seen (the audio output must stay silent).
    pub nonzero_audio: bool,
    /// The audio output (left, right) of every block since [`Processor::record_audio`].
    pub recorded: Option<[Vec<f32>; 2]>,
}

impl Processor {
    /// One block of `frames` samples with `transport` at its start and `events` (sorted by
    /// time; transport events inside are mid-block transport changes). Returns the notes of
    /// this block.
    pub fn process(
        &mut self,
        frames: u32,
        transport: Option<&TransportEvent>,
        events: &EventBuffer,
    ) -> Vec<OutNote> {
        assert!(frames >= 1 && frames <= self.max_block);
        let processor = self.processor.as_mut().expect("started");
        for channel in &mut self.outputs {
            channel[..frames as usize].fill(1.0);
        }
        self.out_events.clear();
        let input_audio = self.input_ports.with_input_buffers(std::iter::empty::<
            AudioPortBuffer<Vec<InputChannel<f32>>, Vec<InputChannel<f64>>>,
        >());
        let mut output_audio = self.output_ports.with_output_buffers([AudioPortBuffer {
            latency: 0,
            channels: AudioPortBufferType::f32_output_only(
                self.outputs.iter_mut().map(|c| &mut c[..frames as usize]),
            ),
        }]);
        let input_events = InputEvents::from_buffer(events);
        let mut output_events = OutputEvents::from_buffer(&mut self.out_events);
        processor
            .process(
                &input_audio,
                &mut output_audio,
                &input_events,
                &mut output_events,
                Some(self.sample),
                transport,
            )
            .expect("process");
        let mut block = Vec::new();
        for event in self.out_events.iter() {
            if let Some(on) = event.as_event::<NoteOnEvent>() {
                block.push(OutNote {
                    sample: self.sample + on.header().time() as u64,
                    on: true,
                    key: on.key().into_specific().unwrap_or(255) as u8,
                    channel: on.channel().into_specific().unwrap_or(255) as u8,
                    velocity: on.velocity(),
                });
            } else if let Some(off) = event.as_event::<NoteOffEvent>() {
                block.push(OutNote {
                    sample: self.sample + off.header().time() as u64,
                    on: false,
                    key: off.key().into_specific().unwrap_or(255) as u8,
                    channel: off.channel().into_specific().unwrap_or(255) as u8,
                    velocity: off.velocity(),
                });
            }
        }
        for channel in &self.outputs {
            if channel[..frames as usize].iter().any(|&s| s != 0.0) {
                self.nonzero_audio = true;
            }
        }
        if let Some(recorded) = self.recorded.as_mut() {
            for (out, channel) in recorded.iter_mut().zip(&self.outputs) {
                out.extend_from_slice(&channel[..frames as usize]);
            }
        }
        for pair in block.windows(2) {
            assert!(
                pair[0].sample <= pair[1].sample,
                "events out of order: {pair:?}"
            );
        }
        self.sample += frames as u64;
        self.notes.extend_from_slice(&block);
        block
    }

    /// Keeps the audio output from now on, in `recorded` (sample `n` of it is absolute sample
    /// `start + n`; returns `start`).
    pub fn record_audio(&mut self) -> u64 {
        self.recorded = Some([Vec::new(), Vec::new()]);
        self.sample
    }

    /// Notes sounding after everything output so far (on without a later off), per key.
    pub fn sounding(&self) -> Vec<u8> {
        let mut on = [0i32; 256];
        for n in &self.notes {
            on[n.key as usize] += if n.on { 1 } else { -1 };
            on[n.key as usize] = on[n.key as usize].max(0);
        }
        (0..=255u8).filter(|&k| on[k as usize] > 0).collect()
    }
}

enum InputEvent {
    Param(ParamValueEvent),
    Transport(TransportEvent),
    NoteOn(NoteOnEvent),
    NoteOff(NoteOffEvent),
}

impl InputEvent {
    fn time(&self) -> u32 {
        match self {
            InputEvent::Param(e) => e.header().time(),
            InputEvent::Transport(e) => e.header.time(),
            InputEvent::NoteOn(e) => e.header().time(),
            InputEvent::NoteOff(e) => e.header().time(),
        }
    }
}

/// A note played into the plugin's note input: (sample in the block, key, velocity 0..1; 0 is a
/// note-off), on channel 1.
pub type PlayedNote = (u32, u8, f64);

/// A scripted host timeline: drives a [`Processor`] block by block and records the spans the
/// reference needs.
pub struct Sim {
    pub sample_rate: f64,
    pub transport: HostTransport,
    /// Send a transport event at the sample of a loop wrap inside a block (as hosts do).
    pub mid_block_transport: bool,
    pub spans: Vec<reference::Span>,
    current: Option<reference::Span>,
    sample: u64,
    /// Report positions rounded to this grid (quarter notes), as hosts do (Ardour: 1/1920).
    pub quantise: Option<f64>,
    /// Loop wraps that fell strictly inside a block, and transport events sent for them.
    pub wraps_inside_blocks: u32,
    pub mid_block_events_sent: u32,
}

impl Sim {
    pub fn new(sample_rate: f64, transport: HostTransport) -> Sim {
        Sim {
            sample_rate,
            transport,
            mid_block_transport: false,
            spans: Vec::new(),
            current: None,
            sample: 0,
            quantise: None,
            wraps_inside_blocks: 0,
            mid_block_events_sent: 0,
        }
    }

    fn spq(&self) -> f64 {
        self.sample_rate * 60.0 / self.transport.tempo
    }

    fn close(&mut self, release: bool) {
        if let Some(mut span) = self.current.take() {
            span.release_at_end = release;
            if span.len > 0 {
                self.spans.push(span);
            }
        }
    }

    fn open(&mut self) {
        self.current = Some(reference::Span {
            start: self.sample,
            len: 0,
            beat: self.transport.beats,
            tempo: self.transport.tempo,
            playing: self.transport.playing,
            release_at_end: false,
        });
    }

    pub fn set_tempo(&mut self, tempo: f64) {
        self.close(false);
        self.transport.tempo = tempo;
    }

    pub fn relocate(&mut self, beats: f64) {
        self.close(true);
        self.transport.beats = beats;
    }

    /// Moves the reported host position by a tiny amount (position rounding, as Ardour and
    /// Bitwig do): the plugin keeps its own continuous timeline, so the expected notes do not
    /// move.
    pub fn nudge(&mut self, beats: f64) {
        self.transport.beats += beats;
    }

    pub fn set_playing(&mut self, playing: bool) {
        self.close(true);
        self.transport.playing = playing;
    }

    /// One block, with `events` (parameter changes etc.) added to its input.
    pub fn block(
        &mut self,
        processor: &mut Processor,
        frames: u32,
        events: &[ParamValueEvent],
    ) -> Vec<OutNote> {
        self.block_playing(processor, frames, events, &[])
    }

    /// [`Sim::block`] with notes played into the plugin's input during the block.
    pub fn block_playing(
        &mut self,
        processor: &mut Processor,
        frames: u32,
        events: &[ParamValueEvent],
        played: &[PlayedNote],
    ) -> Vec<OutNote> {
        assert_eq!(processor.sample, self.sample, "one Sim per processor run");
        if let Some((loop_start, loop_end)) = self.transport.loop_range {
            // A wrap exactly on the block boundary: the block starts at the loop start.
            if self.transport.playing && self.transport.beats == loop_end {
                self.close(true);
                self.transport.beats = loop_start;
            }
        }
        if self.current.is_none() {
            self.open();
        }
        let spq = self.spq();
        let mut reported = self.transport;
        if let Some(grid) = self.quantise {
            reported.beats = (reported.beats / grid).round() * grid;
        }
        let start_event = reported.event(0);
        let mut buffer = EventBuffer::new();
        let end_beat = self.transport.beats + frames as f64 / spq;
        let wrap = self.transport.loop_range.filter(|&(_, end)| {
            self.transport.playing && self.transport.beats < end && end_beat > end
        });
        let mut wrap_at = None;
        if let Some((loop_start, loop_end)) = wrap {
            let w = (loop_end - self.transport.beats) * spq;
            let rounded = w.round();
            assert!(
                (w - rounded).abs() < 1e-6,
                "tests put loop wraps on whole samples ({w})"
            );
            wrap_at = Some((rounded as u64, loop_start, loop_end));
            self.wraps_inside_blocks += 1;
        }
        let mut all: Vec<InputEvent> = events.iter().copied().map(InputEvent::Param).collect();
        for &(time, key, velocity) in played {
            let pckn = Pckn::new(0u16, 0u16, key as u16, 0u32);
            all.push(if velocity > 0.0 {
                InputEvent::NoteOn(NoteOnEvent::new(time, pckn, velocity))
            } else {
                InputEvent::NoteOff(NoteOffEvent::new(time, pckn, 0.0))
            });
        }
        if let (Some((w, loop_start, _)), true) = (wrap_at, self.mid_block_transport) {
            if w > 0 && w < frames as u64 {
                let mut t = self.transport;
                t.beats = loop_start;
                let e = t.event(w as u32);
                self.mid_block_events_sent += 1;
                all.push(InputEvent::Transport(e));
            }
        }
        all.sort_by_key(InputEvent::time);
        for event in &all {
            match event {
                InputEvent::Param(e) => buffer.push(e),
                InputEvent::Transport(e) => buffer.push(e),
                InputEvent::NoteOn(e) => buffer.push(e),
                InputEvent::NoteOff(e) => buffer.push(e),
            }
        }
        let notes = processor.process(frames, Some(&start_event), &buffer);
        // Advance the host.
        match wrap_at {
            Some((w, loop_start, loop_end)) => {
                if let Some(span) = self.current.as_mut() {
                    span.len += w;
                }
                self.sample += w;
                self.close(true);
                self.transport.beats = loop_start;
                self.open();
                let rest = frames as u64 - w;
                if let Some(span) = self.current.as_mut() {
                    span.len += rest;
                }
                self.sample += rest;
                self.transport.beats = loop_start + (end_beat - loop_end);
            }
            None => {
                if let Some(span) = self.current.as_mut() {
                    span.len += frames as u64;
                }
                self.sample += frames as u64;
                if self.transport.playing {
                    self.transport.beats = end_beat;
                }
            }
        }
        notes
    }

    /// The spans so far (the open one included).
    pub fn finish(&mut self) -> Vec<reference::Span> {
        let mut spans = self.spans.clone();
        if let Some(span) = self.current {
            if span.len > 0 {
                spans.push(span);
            }
        }
        spans
    }
}

/// Events as (sample, on, key) for [`reference::compare`].
pub fn as_expected(notes: &[OutNote]) -> Vec<reference::Expected> {
    notes.iter().map(|n| (n.sample, n.on, n.key)).collect()
}

/// A plugin state (nice-plug's JSON) holding exactly `phrase` as the current phrase.
pub fn state_with_phrase(phrase: &smdim_engine::Phrase) -> Vec<u8> {
    let generated = serde_json::json!({
        "phrase": phrase,
        "tokens": [],
        "settings": {
            "bars": phrase.bars, "time_signature": phrase.time_signature, "tempo": 120.0,
            "steps": 8, "temperature": 1.0, "top_p": 0.95, "seed": 42, "density": 1.0,
            "lowest_pitch": 0, "highest_pitch": 127, "key": null, "max_notes_per_onset": 3,
            "velocity": 90, "accent": 20
        },
        "steps": 8,
        "provider": "Cpu",
        "elapsed": {"secs": 0, "nanos": 0},
        "denoiser_calls": 8
    });
    let saved = serde_json::json!({"version": 1, "history": [generated], "cursor": 0});
    let state = serde_json::json!({
        "version": "0.1.0",
        "params": {},
        "fields": {"smdim-state": saved.to_string()}
    });
    serde_json::to_vec(&state).expect("json")
}

/// SMDIM's own saved state (history, cursor, source) inside a plugin state, parsed.
pub fn saved_state(bytes: &[u8]) -> Option<serde_json::Value> {
    let state: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let field = state.get("fields")?.get("smdim-state")?.as_str()?;
    serde_json::from_str(field).ok()
}

/// The current phrase inside a saved plugin state.
pub fn phrase_in_state(bytes: &[u8]) -> Option<smdim_engine::Phrase> {
    let saved = saved_state(bytes)?;
    let cursor = saved.get("cursor")?.as_u64()? as usize;
    let phrase = saved.get("history")?.get(cursor)?.get("phrase")?.clone();
    serde_json::from_value(phrase).ok()
}
