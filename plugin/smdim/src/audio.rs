//! The audio thread: host transport → engine scheduler → note events, merged in time order
//! with the incoming notes (pass-through). No allocation, no locks, no panics on host data.

use std::borrow::Borrow;
use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use nice_plug::midi::{Channel, Key, VoiceID};
use nice_plug::prelude::{NoteEvent, Transport as HostTransport};
use smdim_engine::capture::Recorder;
use smdim_engine::handoff::Inbox;
use smdim_engine::phrase::Phrase;
use smdim_engine::scheduler::{
    EventBuffer, NoteEventKind, PlaybackMode, Scheduler, SwitchMode, Transport,
};
use smdim_inference::Generated;

use crate::shared::{AudioSide, Shared};

thread_local! {
    /// Set on every thread that has run [`Audio::process`]; const, so reading it never allocates.
    static AUDIO_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is (or has been) one the host processes audio on. Hosts may process on
/// several threads; any of them counts.
pub fn on_audio_thread() -> bool {
    AUDIO_THREAD.try_with(Cell::get).unwrap_or(false)
}

/// A phrase as the scheduler holds it: the generation result, shared with the history.
pub struct Playing(pub Arc<Generated>);

impl Borrow<Phrase> for Playing {
    fn borrow(&self) -> &Phrase {
        &self.0.phrase
    }
}

/// The block's transport in the engine's terms. Missing values become values the scheduler
/// treats as garbage (it then plays nothing and releases what sounds).
pub fn engine_transport(host: &HostTransport) -> Transport {
    let pos = host.pos_beats().unwrap_or(f64::NAN);
    Transport {
        playing: host.playing,
        sample_rate: host.sample_rate as f64,
        tempo: host.tempo.unwrap_or(f64::NAN),
        pos_beats: pos,
        bar_start_beats: host.bar_start_pos_beats,
        bar_number: host.bar_number.map(i64::from),
        time_sig_numerator: host.time_sig_numerator.unwrap_or(4),
        time_sig_denominator: host.time_sig_denominator.unwrap_or(4),
        loop_range: host.loop_range_beats(),
    }
}

/// Playback options read from the parameters at the start of each block.
#[derive(Debug, Clone, Copy)]
pub struct BlockParams {
    pub mode: PlaybackMode,
    /// 0-based.
    pub channel: u8,
    pub pass_through: bool,
    pub generate: bool,
}

/// Where notes come from and go to: the host's process context, or a test's vectors.
pub trait NoteIo<S> {
    /// The next incoming event, in time order.
    fn next_incoming(&mut self) -> Option<NoteEvent<S>>;
    /// Whether the event was accepted (a full host queue drops it).
    fn send(&mut self, event: NoteEvent<S>) -> bool;
}

impl<S, Io: NoteIo<S>> NoteIo<S> for &mut Io {
    fn next_incoming(&mut self) -> Option<NoteEvent<S>> {
        (**self).next_incoming()
    }

    fn send(&mut self, event: NoteEvent<S>) -> bool {
        (**self).send(event)
    }
}

pub struct Audio {
    inbox: Inbox<Arc<Generated>>,
    /// Notes arriving at the input while the transport plays, for editing.
    recorder: Recorder,
    scheduler: Scheduler<Playing>,
    events: EventBuffer,
    /// A retired phrase the inbox's retire queue had no room for; retried every block. While it
    /// is held, no other phrase is retired (the scheduler and the inbox keep theirs), so it is
    /// never overwritten and nothing is freed here.
    backlog: Option<Playing>,
    /// The Generate parameter as last seen; `None` until the first block after activation or a
    /// state load, whose value never counts as an edge (a project saved with Generate on must
    /// not generate again when it is reopened).
    generate_was_on: Option<bool>,
    /// Channel the sounding notes were sent on.
    channel: u8,
}

impl Audio {
    pub fn new(side: AudioSide) -> Audio {
        Audio {
            inbox: side.inbox,
            recorder: side.recorder,
            scheduler: Scheduler::new(),
            events: EventBuffer::default(),
            backlog: None,
            generate_was_on: None,
            channel: 0,
        }
    }

    /// After activation: the next block's Generate value is a starting point, not an edge.
    pub fn reset(&mut self) {
        self.generate_was_on = None;
    }

    /// Hands `phrase` back for freeing elsewhere; callers check that the backlog is empty.
    fn retire(&mut self, phrase: Playing) {
        debug_assert!(self.backlog.is_none());
        if let Err(phrase) = self.inbox.retire(phrase.0) {
            // Only reachable when the queue is full.
            self.backlog = Some(Playing(phrase));
        }
    }

    /// Note-offs for everything sounding, at sample 0 (deactivation, channel change).
    pub fn release_all<S>(&mut self, io: &mut impl NoteIo<S>) {
        self.scheduler.release_all(&mut self.events);
        let channel = self.channel;
        for event in self.events.as_slice() {
            io.send(to_note_event(event, channel));
        }
        self.events.clear();
    }

    /// One block. `incoming` yields the host's note events in time order; `send` outputs one.
    pub fn process<S>(
        &mut self,
        shared: &Shared,
        transport: &Transport,
        block_len: u32,
        params: BlockParams,
        io: &mut impl NoteIo<S>,
    ) {
        let _ = AUDIO_THREAD.try_with(|flag| flag.set(true));
        if shared.take_state_loaded() {
            self.generate_was_on = None;
        }
        if params.generate && self.generate_was_on == Some(false) {
            shared.request_generate_from_audio();
        }
        self.generate_was_on = Some(params.generate);

        if let Some(phrase) = self.backlog.take() {
            self.retire(phrase);
        }
        // A new phrase can displace a queued one: only take it when that one has somewhere to go.
        if self.backlog.is_none() {
            if let Some(generated) = self.inbox.take() {
                if let Some(displaced) = self
                    .scheduler
                    .offer(Playing(generated), SwitchMode::NextBar)
                {
                    self.retire(displaced);
                }
            }
        }
        if params.channel != self.channel {
            self.release_all(io);
            self.channel = params.channel;
        }
        self.scheduler.set_mode(params.mode);
        self.scheduler
            .process(transport, block_len, &mut self.events);
        if self.backlog.is_none() {
            if let Some(old) = self.scheduler.take_retired() {
                self.retire(old);
            }
        }

        // Merge generated and incoming events by time; at equal times incoming notes go first.
        self.recorder.begin_block(transport, block_len);
        let mut next_in = io.next_incoming();
        for event in self.events.as_slice() {
            loop {
                match next_in.take() {
                    Some(e) if e.timing() <= event.sample => {
                        incoming(&mut self.recorder, e, params.pass_through, io);
                        next_in = io.next_incoming();
                    }
                    other => {
                        next_in = other;
                        break;
                    }
                }
            }
            io.send(to_note_event(event, self.channel));
        }
        while let Some(e) = next_in {
            incoming(&mut self.recorder, e, params.pass_through, io);
            next_in = io.next_incoming();
        }
        self.recorder.end_block();
        self.events.clear();

        self.update_view(shared, transport);
    }

    fn update_view(&self, shared: &Shared, transport: &Transport) {
        let view = &shared.transport;
        view.blocks.fetch_add(1, Ordering::Relaxed);
        view.playing.store(transport.playing, Ordering::Relaxed);
        if transport.tempo.is_finite() {
            view.tempo.store(transport.tempo, Ordering::Relaxed);
        }
        view.numerator.store(
            transport.time_sig_numerator.clamp(0, 255) as u32,
            Ordering::Relaxed,
        );
        view.denominator.store(
            transport.time_sig_denominator.clamp(0, 255) as u32,
            Ordering::Relaxed,
        );
        let playhead = self.scheduler.playhead().unwrap_or(-1.0);
        view.playhead.store(playhead, Ordering::Relaxed);
    }

    /// Notes sounding now (tests).
    pub fn sounding(&self) -> usize {
        self.scheduler.sounding()
    }
}

/// Pass-through forwards notes and MIDI messages but never per-note expressions: nice-plug would
/// send them on as CLAP note expressions, and Bitwig 6.1's engine crashes on those from a plugin
/// (docs/plugin.md, "Host quirks"). Poly modulation and mono automation target this plugin's own
/// parameters and mean nothing downstream.
fn forwarded<S>(event: &NoteEvent<S>) -> bool {
    !matches!(
        event,
        NoteEvent::PolyPressure { .. }
            | NoteEvent::PolyVolume { .. }
            | NoteEvent::PolyPan { .. }
            | NoteEvent::PolyTuning { .. }
            | NoteEvent::PolyVibrato { .. }
            | NoteEvent::PolyExpression { .. }
            | NoteEvent::PolyBrightness { .. }
            | NoteEvent::PolyModulation { .. }
            | NoteEvent::MonoAutomation { .. }
    )
}

/// An event of the note input: captured, and passed through when asked.
fn incoming<S>(
    recorder: &mut Recorder,
    e: NoteEvent<S>,
    pass_through: bool,
    io: &mut impl NoteIo<S>,
) {
    record(recorder, &e);
    if pass_through && forwarded(&e) {
        io.send(e);
    }
}

/// Note-ons and note-offs of the input go to the capture (channels and keys as sent).
fn record<S>(recorder: &mut Recorder, event: &NoteEvent<S>) {
    let channel_of = |channel: &Channel| match channel {
        Channel::Number(c) => *c,
        _ => 0,
    };
    match event {
        NoteEvent::NoteOn {
            timing,
            channel,
            key: Key::Number(key),
            velocity,
            ..
        } => {
            let v = (velocity.clamp(0.0, 1.0) * 127.0).round().max(1.0) as u8;
            recorder.note(*timing, channel_of(channel), *key, v);
        }
        NoteEvent::NoteOff {
            timing,
            channel,
            key: Key::Number(key),
            ..
        } => recorder.note(*timing, channel_of(channel), *key, 0),
        _ => {}
    }
}

fn to_note_event<S>(event: &smdim_engine::NoteEvent, channel: u8) -> NoteEvent<S> {
    let key = Key::Number(event.pitch.min(127));
    let channel = Channel::Number(channel);
    match event.kind {
        NoteEventKind::On => NoteEvent::NoteOn {
            timing: event.sample,
            voice_id: VoiceID::Wildcard,
            channel,
            key,
            velocity: event.velocity.min(127) as f32 / 127.0,
        },
        NoteEventKind::Off => NoteEvent::NoteOff {
            timing: event.sample,
            voice_id: VoiceID::Wildcard,
            channel,
            key,
            velocity: 0.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smdim_engine::phrase::{Note, TimeSignature};
    use smdim_inference::{GenerationSettings, Provider};
    use std::time::Duration;

    fn generated() -> Arc<Generated> {
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 1);
        for (i, pitch) in [60u8, 64, 67, 72].iter().enumerate() {
            phrase.notes.push(Note {
                start: i as u32 * 960,
                length: 480,
                pitch: *pitch,
                velocity: 100,
            });
        }
        Arc::new(Generated {
            phrase,
            tokens: vec![],
            settings: GenerationSettings::default(),
            steps: 1,
            provider: Provider::Cpu,
            elapsed: Duration::ZERO,
            denoiser_calls: 1,
            order: Default::default(),
            tonal_focus: 0.0,
            edit: None,
        })
    }

    #[derive(Default)]
    struct TestIo {
        /// Reversed: popped from the back.
        incoming: Vec<NoteEvent<()>>,
        out: Vec<NoteEvent<()>>,
    }

    impl NoteIo<()> for TestIo {
        fn next_incoming(&mut self) -> Option<NoteEvent<()>> {
            self.incoming.pop()
        }
        fn send(&mut self, event: NoteEvent<()>) -> bool {
            self.out.push(event);
            true
        }
    }

    fn params() -> BlockParams {
        BlockParams {
            mode: PlaybackMode::Loop,
            channel: 2,
            pass_through: true,
            generate: false,
        }
    }

    #[test]
    fn pass_through_never_forwards_note_expressions() {
        let (shared, side, _requests) = Shared::new();
        let mut audio = Audio::new(side);
        let transport = Transport::playing_at(48_000.0, 120.0, 0.0);
        let expression = |timing| NoteEvent::<()>::PolyTuning {
            timing,
            voice_id: VoiceID::Wildcard,
            channel: Channel::Number(0),
            key: Key::Number(60),
            tuning: 0.5,
        };
        let mut io = TestIo {
            // Popped from the end: latest first.
            incoming: vec![
                NoteEvent::PolyPressure {
                    timing: 40,
                    voice_id: VoiceID::Wildcard,
                    channel: Channel::Number(0),
                    key: Key::Number(60),
                    pressure: 0.7,
                },
                expression(30),
                NoteEvent::MidiCC {
                    timing: 20,
                    channel: 0,
                    cc: 64,
                    value: 1.0,
                },
                NoteEvent::NoteOn {
                    timing: 10,
                    voice_id: VoiceID::Wildcard,
                    channel: Channel::Number(0),
                    key: Key::Number(60),
                    velocity: 0.5,
                },
            ],
            out: Vec::new(),
        };
        audio.process(&shared, &transport, 512, params(), &mut io);
        let timings: Vec<u32> = io.out.iter().map(|e| e.timing()).collect();
        assert_eq!(
            timings,
            vec![10, 20],
            "the note and the sustain pedal, no expressions"
        );
    }

    #[test]
    fn plays_merges_pass_through_and_releases() {
        let (shared, side, requests) = Shared::new();
        shared.adopt(generated());
        let mut audio = Audio::new(side);
        // 120 bpm at 48 kHz: 24,000 samples per quarter; one block of a whole bar.
        let transport = Transport::playing_at(48_000.0, 120.0, 0.0);
        let mut io = TestIo {
            incoming: vec![
                NoteEvent::<()>::NoteOn {
                    timing: 30_000,
                    voice_id: VoiceID::Wildcard,
                    channel: Channel::Number(0),
                    key: Key::Number(40),
                    velocity: 0.5,
                },
                NoteEvent::<()>::NoteOn {
                    timing: 0,
                    voice_id: VoiceID::Wildcard,
                    channel: Channel::Number(0),
                    key: Key::Number(41),
                    velocity: 0.5,
                },
            ],
            out: Vec::new(),
        };
        audio.process(&shared, &transport, 96_000, params(), &mut io);
        let out = io.out;
        let timings: Vec<u32> = out.iter().map(|e| e.timing()).collect();
        let mut sorted = timings.clone();
        sorted.sort();
        assert_eq!(timings, sorted, "events go out in time order");
        let ons: Vec<(u32, u8)> = out
            .iter()
            .filter_map(|e| match e {
                NoteEvent::NoteOn {
                    timing,
                    key: Key::Number(k),
                    channel: Channel::Number(2),
                    ..
                } => Some((*timing, *k)),
                _ => None,
            })
            .collect();
        assert_eq!(ons, vec![(0, 60), (24_000, 64), (48_000, 67), (72_000, 72)]);
        assert_eq!(out.len(), 8 + 2, "4 ons, 4 offs, 2 passed through");
        assert_eq!(audio.sounding(), 0);
        assert!(!shared.generate_requested(), "no generation requested");

        // The trigger's rising edge asks the generation thread, once.
        let mut p = params();
        p.generate = true;
        let t2 = Transport::playing_at(48_000.0, 120.0, 4.0);
        audio.process(&shared, &t2, 64, p, &mut TestIo::default());
        let t3 = Transport::playing_at(48_000.0, 120.0, 4.0 + 64.0 / 24_000.0);
        audio.process(&shared, &t3, 64, p, &mut TestIo::default());
        assert!(shared.generate_requested());
        assert!(
            requests.try_recv().is_err(),
            "the audio thread uses no channel"
        );
        assert!(shared.transport.playhead.load(Ordering::Relaxed) >= 0.0);
    }

    #[test]
    fn the_preview_voice_plays_the_phrase_and_pass_through() {
        use crate::preview::Voiced;
        use smdim_engine::preview::Preview;
        let rms = |x: &[f32]| (x.iter().map(|s| s * s).sum::<f32>() / x.len() as f32).sqrt();
        let (shared, side, _requests) = Shared::new();
        let mut audio = Audio::new(side);
        let mut preview = Preview::new(48_000.0);
        let (mut left, mut right) = (vec![0.0f32; 4800], vec![0.0f32; 4800]);
        // No phrase: only a note played into the input, at sample 1,000.
        let mut io = TestIo {
            incoming: vec![NoteEvent::NoteOn {
                timing: 1_000,
                voice_id: VoiceID::Wildcard,
                channel: Channel::Number(0),
                key: Key::Number(57),
                velocity: 0.7,
            }],
            out: Vec::new(),
        };
        let transport = Transport::playing_at(48_000.0, 120.0, 0.0);
        let mut voiced = Voiced::new(&mut io, &mut preview, &mut left, &mut right);
        audio.process(&shared, &transport, 4800, params(), &mut voiced);
        voiced.finish();
        assert_eq!(io.out.len(), 1, "passed through");
        assert!(left[..=1_000].iter().all(|&s| s == 0.0));
        assert!(rms(&left[1_100..]) > 1e-3 && rms(&right[1_100..]) > 1e-3);

        // The phrase's notes sound too (pass-through off, so only the phrase).
        shared.adopt(generated());
        let mut p = params();
        p.pass_through = false;
        let mut preview = Preview::new(48_000.0);
        let (mut left, mut right) = (vec![0.0f32; 48_000], vec![0.0f32; 48_000]);
        let mut io = TestIo::default();
        let t = Transport::playing_at(48_000.0, 120.0, 4.0);
        let mut voiced = Voiced::new(&mut io, &mut preview, &mut left, &mut right);
        audio.process(&shared, &t, 48_000, p, &mut voiced);
        voiced.finish();
        assert!(rms(&left[..24_000]) > 1e-3, "the phrase's first note");
    }

    #[test]
    fn generate_fires_on_edges_only_not_on_restored_levels() {
        let block = |audio: &mut Audio, shared: &Shared, generate: bool| {
            let mut p = params();
            p.generate = generate;
            let t = Transport::playing_at(48_000.0, 120.0, 0.0);
            audio.process(shared, &t, 64, p, &mut TestIo::default());
        };
        // A level of "on" in the first block after activation is not an edge.
        let (shared, side, _r) = Shared::new();
        let mut audio = Audio::new(side);
        audio.reset();
        block(&mut audio, &shared, true);
        block(&mut audio, &shared, true);
        assert!(!shared.generate_requested());
        block(&mut audio, &shared, false);
        block(&mut audio, &shared, true);
        assert!(shared.generate_requested(), "off → on fires");

        // A state load (project reopened with Generate saved on) is not an edge either.
        let (shared, side, _r) = Shared::new();
        let mut audio = Audio::new(side);
        block(&mut audio, &shared, false);
        shared.load_state(crate::state::SavedState::new());
        block(&mut audio, &shared, true);
        assert!(!shared.generate_requested());
    }

    #[test]
    fn channel_change_releases_on_the_old_channel() {
        let (shared, side, _requests) = Shared::new();
        shared.adopt(generated());
        let mut audio = Audio::new(side);
        let transport = Transport::playing_at(48_000.0, 120.0, 0.0);
        audio.process(&shared, &transport, 100, params(), &mut TestIo::default());
        assert_eq!(audio.sounding(), 1);
        let mut io = TestIo::default();
        let mut p = params();
        p.channel = 5;
        let t2 = Transport::playing_at(48_000.0, 120.0, 100.0 / 24_000.0);
        audio.process(&shared, &t2, 100, p, &mut io);
        assert!(matches!(
            io.out[0],
            NoteEvent::NoteOff {
                channel: Channel::Number(2),
                key: Key::Number(60),
                ..
            }
        ));
        assert_eq!(audio.sounding(), 0);
    }

    #[test]
    fn quantised_host_positions_still_give_exact_samples() {
        let (shared, side, _requests) = Shared::new();
        shared.adopt(generated());
        let mut audio = Audio::new(side);
        let mut io = TestIo::default();
        // 120 bpm, 48 kHz, 1001-sample blocks; the host rounds positions to 1/1920 beat
        // (12.5 samples here), so most block starts are off by a few samples.
        let mut sample = 0u64;
        let mut ons = Vec::new();
        for _ in 0..200 {
            let exact = sample as f64 / 24_000.0;
            let rounded = (exact * 1920.0).round() / 1920.0;
            let t = Transport::playing_at(48_000.0, 120.0, rounded);
            audio.process(&shared, &t, 1001, params(), &mut io);
            for e in io.out.drain(..) {
                if let NoteEvent::NoteOn { timing, .. } = e {
                    ons.push(sample + timing as u64);
                }
            }
            sample += 1001;
        }
        // One note per beat: every 24,000 samples, exactly.
        assert_eq!(ons.len(), 9);
        for (i, at) in ons.iter().enumerate() {
            assert_eq!(*at, i as u64 * 24_000);
        }
    }

    /// Discards what the audio side sends (pushing to a Vec would allocate).
    struct Silent;

    impl NoteIo<()> for Silent {
        fn next_incoming(&mut self) -> Option<NoteEvent<()>> {
            None
        }
        fn send(&mut self, _event: NoteEvent<()>) -> bool {
            true
        }
    }

    #[test]
    fn a_full_retire_queue_never_frees_a_phrase_on_the_audio_thread() {
        use crate::alloc_audit::{thread_heap_ops, ProcessScope};
        let (publisher, inbox) = smdim_engine::handoff::channel();
        let (shared, _unused, _requests) = Shared::new();
        let recorder = smdim_engine::capture::channel().0;
        let mut audio = Audio::new(AudioSide { inbox, recorder });
        // Held by the test, so collecting them frees nothing.
        let filler = generated();
        let mut pos = 0.0;
        for block in 0..16 {
            // A new phrase each block (this end drops whatever it displaces)...
            drop(publisher.publish(generated()));
            // ...while the retire queue is full, nobody collecting it.
            while audio.inbox.retire(filler.clone()).is_ok() {}
            let t = Transport::playing_at(48_000.0, 120.0, pos);
            let before = thread_heap_ops();
            {
                let _scope = ProcessScope::enter();
                audio.process(&shared, &t, 48_000, params(), &mut Silent);
            }
            assert_eq!(thread_heap_ops(), before, "block {block} freed memory");
            pos += 2.0;
        }
    }

    #[test]
    fn a_state_loaded_on_the_audio_thread_waits_for_nothing_and_frees_nothing() {
        let (shared, side, _requests) = Shared::new();
        shared.adopt(generated());
        let old = Arc::downgrade(&shared.current().unwrap());
        let mut audio = Audio::new(side);
        let t = Transport::playing_at(48_000.0, 120.0, 0.0);
        audio.process(&shared, &t, 64, params(), &mut TestIo::default());
        assert!(on_audio_thread());

        // A GUI-initiated restore that nice-plug applies on this audio thread.
        let mut replacement = crate::state::SavedState::new();
        replacement.push(generated());
        let new_phrase = replacement.current().cloned().unwrap();
        // Held by the history and by the scheduler playing it.
        assert_eq!(old.strong_count(), 2);
        let loaded = replacement.clone();
        let before = crate::alloc_audit::thread_heap_ops();
        {
            let _scope = crate::alloc_audit::ProcessScope::enter();
            shared.load_state(loaded);
        }
        assert_eq!(
            crate::alloc_audit::thread_heap_ops(),
            before,
            "nothing freed (or allocated) on the audio thread"
        );
        assert_eq!(old.strong_count(), 2, "the old history waits to be freed");
        // Applied at once: the audio side already has the new phrase.
        assert!(Arc::ptr_eq(&audio.inbox.take().unwrap(), &new_phrase));

        // Another thread (the generation thread) frees the old one.
        let other = shared.clone();
        std::thread::spawn(move || other.apply_deferred_state())
            .join()
            .unwrap();
        assert_eq!(old.strong_count(), 1, "freed off the audio thread");
        assert_eq!(shared.state(), replacement);
        assert!(Arc::ptr_eq(&shared.current().unwrap(), &new_phrase));
        assert!(shared.take_state_loaded());
    }

    #[test]
    fn the_editor_playhead_stops_after_a_once_phrase() {
        let (shared, side, _requests) = Shared::new();
        shared.adopt(generated());
        let mut audio = Audio::new(side);
        let mut p = params();
        p.mode = PlaybackMode::Once;
        // 120 bpm at 48 kHz: a one-bar phrase from the first bar line (quarter 4) to quarter 8.
        let mut seen = Vec::new();
        for block in 0..40u32 {
            let pos = 1.0 + block as f64 * 0.5;
            let t = Transport::playing_at(48_000.0, 120.0, pos);
            audio.process(&shared, &t, 12_000, p, &mut TestIo::default());
            seen.push((pos + 0.5, shared.transport.playhead.load(Ordering::Relaxed)));
        }
        for (end, playhead) in seen {
            if end > 4.0 && end < 8.0 {
                assert!((playhead - (end - 4.0)).abs() < 1e-6, "{playhead} at {end}");
            } else if end > 8.0 {
                assert_eq!(playhead, -1.0, "after the phrase, at {end}: no wrap");
            }
        }
    }

    #[test]
    fn garbage_transport_is_silent() {
        let (shared, side, _requests) = Shared::new();
        shared.adopt(generated());
        let mut audio = Audio::new(side);
        for (tempo, pos, sr) in [
            (f64::NAN, 0.0, 48_000.0),
            (0.0, 0.0, 48_000.0),
            (120.0, 1e12, 48_000.0),
            (1e9, 0.0, 48_000.0),
            (120.0, f64::INFINITY, 48_000.0),
            (120.0, 0.0, 0.0),
        ] {
            let mut t = Transport::playing_at(sr, tempo, pos);
            t.bar_start_beats = Some(f64::NAN);
            t.bar_number = Some(i64::MIN);
            t.time_sig_numerator = -3;
            t.time_sig_denominator = 0;
            let mut io = TestIo::default();
            audio.process(&shared, &t, 512, params(), &mut io);
            assert!(io.out.is_empty(), "tempo {tempo} pos {pos} sr {sr}");
        }
    }
}
