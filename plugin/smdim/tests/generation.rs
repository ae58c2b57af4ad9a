//! The generation thread with the embedded model: generation from the parameters, history and
//! undo/redo feeding the audio side's inbox, errors that leave the playing phrase alone, the
//! compute device setting, and removal that never waits for a model load.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smdim::generation::{embedded_loader, GenerationThread, Loader};
use smdim::params::SmdimParams;
use smdim::shared::{fallback_notes, Phase, Request, Shared, StateField, Status};
use smdim_engine::handoff::Inbox;
use smdim_engine::TimeSignature;
use smdim_inference::{
    Generated, GenerationSettings, InferenceError, ModelCard, Provider, ProviderChoice, Style,
};

/// Generous liveness bound, not a timing assertion.
const LIVENESS: Duration = Duration::from_secs(60);

fn start_with(loader: Loader) -> (Arc<Shared>, Inbox<Arc<Generated>>, GenerationThread) {
    let (shared, side, requests) = Shared::new();
    let params = Arc::new(SmdimParams::new(StateField(shared.clone())));
    let thread = GenerationThread::spawn(shared.clone(), params, requests, loader).unwrap();
    (shared, side.inbox, thread)
}

fn start() -> (Arc<Shared>, Inbox<Arc<Generated>>, GenerationThread) {
    start_with(embedded_loader())
}

/// Any: the one style every model writes (the embedded model may be one without styles); what
/// happens with the others is `a_style_the_model_lacks_is_shown_and_the_phrase_stays`.
fn small(seed: u64) -> GenerationSettings {
    GenerationSettings {
        bars: 1,
        density: 0.25,
        steps: Some(8),
        seed,
        time_signature: TimeSignature::FOUR_FOUR,
        style: Style::Any,
        ..Default::default()
    }
}

/// A generation that lasts (hundreds of denoiser calls): 8 dense bars, many steps, so Cancel,
/// a reload or a removal lands while it runs.
fn long(seed: u64) -> GenerationSettings {
    GenerationSettings {
        bars: 8,
        density: 3.0,
        steps: Some(1000),
        ..small(seed)
    }
}

/// The embedded model's card, read from the source tree.
fn embedded_card() -> ModelCard {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(format!("{}.card.json", smdim::model::EMBEDDED_MODEL));
    ModelCard::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn wait_idle(shared: &Shared) {
    let deadline = Instant::now() + LIVENESS;
    // A request counts as soon as it is made, before the generation thread takes it.
    while !shared.is_idle() {
        assert!(Instant::now() < deadline, "generation did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn generates_keeps_history_and_errors_leave_the_phrase_playing() {
    let (shared, inbox, thread) = start();
    let status = shared.status();
    assert!(
        status.loads == 0 && status.provider.is_none(),
        "nothing loaded before the first request"
    );

    shared.request(Request::Settings(small(1)));
    wait_idle(&shared);
    let first = shared
        .current()
        .unwrap_or_else(|| panic!("no phrase: {:?}", shared.error()));
    assert_eq!(first.settings.seed, 1);
    assert!(!first.phrase.notes.is_empty());
    let status = shared.status();
    assert!(status.provider.is_some());
    assert!(status.last_error.is_none(), "{:?}", status.last_error);
    let taken = inbox.take().expect("the audio side gets it");
    assert!(Arc::ptr_eq(&taken, &first));

    shared.request(Request::Settings(small(2)));
    wait_idle(&shared);
    let second = shared.current().unwrap();
    assert_eq!(second.settings.seed, 2);
    assert!(shared.can_undo() && !shared.can_redo());

    // Variation: the current settings with another seed.
    shared.request(Request::Variation);
    wait_idle(&shared);
    let third = shared.current().unwrap();
    assert_ne!(third.settings.seed, 2);
    assert_eq!(third.settings.bars, second.settings.bars);
    assert_eq!(shared.state().history.len(), 3);

    // Undo and redo hand the chosen phrase to the audio side.
    assert!(shared.step(-1));
    assert!(Arc::ptr_eq(&shared.current().unwrap(), &second));
    assert!(Arc::ptr_eq(&inbox.take().unwrap(), &second));
    assert!(shared.step(1));
    assert!(Arc::ptr_eq(&inbox.take().unwrap(), &third));
    assert!(!shared.step(1));

    // Four variations in one batched run: four more history entries with the current settings
    // and four different seeds, in order; the last one is what plays.
    shared.request(Request::Variations(4));
    wait_idle(&shared);
    assert!(shared.error().is_none(), "{:?}", shared.error());
    let history = shared.state().history;
    assert_eq!(history.len(), 7);
    let four: Vec<_> = history[3..].iter().map(|g| g.settings.clone()).collect();
    let mut seeds: Vec<u64> = four.iter().map(|s| s.seed).collect();
    assert!(four
        .iter()
        .all(|s| s.bars == third.settings.bars && s.density == third.settings.density));
    seeds.sort();
    seeds.dedup();
    assert_eq!(seeds.len(), 4, "four different seeds");
    let last = shared.current().unwrap();
    assert!(Arc::ptr_eq(&last, history.last().unwrap()));
    assert!(
        Arc::ptr_eq(&inbox.take().unwrap(), &last),
        "the last one plays"
    );
    // Each is the single generation of its seed.
    let one = smdim_inference::generate(
        &mut smdim_inference::Denoiser::load(
            &smdim::model::source_for(ProviderChoice::Cpu),
            &smdim::generation::load_options(ProviderChoice::Cpu),
        )
        .unwrap(),
        &last.settings,
        &std::sync::atomic::AtomicBool::new(false),
        |_, _| {},
    )
    .unwrap();
    assert_eq!(one.tokens, last.tokens);
    // Undo steps back through them to the phrase before.
    for _ in 0..4 {
        assert!(shared.step(-1));
    }
    assert!(Arc::ptr_eq(&shared.current().unwrap(), &third));
    assert!(Arc::ptr_eq(&inbox.take().unwrap(), &third));

    // A request the model cannot serve (7/8 has no token in the vocabulary) fails with a
    // message; the phrase stays.
    shared.request(Request::Settings(GenerationSettings {
        time_signature: TimeSignature::new(7, 8).unwrap(),
        ..small(3)
    }));
    wait_idle(&shared);
    let error = shared.error().expect("the failure is reported");
    assert!(!error.is_empty());
    assert!(Arc::ptr_eq(&shared.current().unwrap(), &third), "{error}");
    assert!(inbox.take().is_none(), "nothing new for the audio side");

    // Cancel during a generation: no new phrase, and the generation thread keeps working.
    shared.request(Request::Settings(long(4)));
    std::thread::sleep(Duration::from_millis(20));
    shared.request(Request::Cancel);
    wait_idle(&shared);
    shared.request(Request::Settings(small(5)));
    wait_idle(&shared);
    assert_eq!(shared.current().unwrap().settings.seed, 5);
    assert!(shared.error().is_none());

    drop(thread);
}

#[test]
fn a_style_the_model_lacks_is_shown_and_the_phrase_stays() {
    let card = embedded_card();
    let (shared, _inbox, thread) = start();
    shared.request(Request::Settings(small(30)));
    wait_idle(&shared);
    let mut playing = shared
        .current()
        .unwrap_or_else(|| panic!("no phrase: {:?}", shared.error()));
    for style in [Style::Melody, Style::Chorale] {
        shared.request(Request::Settings(GenerationSettings { style, ..small(31) }));
        wait_idle(&shared);
        if card.has_style(style) {
            assert!(shared.error().is_none(), "{:?}", shared.error());
            playing = shared.current().unwrap();
            assert_eq!(playing.settings.style, style);
        } else {
            // What the editor shows in its error line.
            let error = shared.error().expect("the failure is reported");
            assert!(
                error.starts_with("this model has no styles: choose Any"),
                "{error}"
            );
            assert!(Arc::ptr_eq(&shared.current().unwrap(), &playing));
        }
    }
    drop(thread);
}

#[test]
fn instances_loading_at_the_same_moment_all_generate() {
    // Several plugin instances in one process load the model at once (a project opening).
    let instances: Vec<_> = (0..4).map(|_| start()).collect();
    for (i, (shared, _, _)) in instances.iter().enumerate() {
        shared.request(Request::Settings(small(10 + i as u64)));
    }
    for (shared, _, _) in &instances {
        wait_idle(shared);
    }
    for (i, (shared, _inbox, thread)) in instances.into_iter().enumerate() {
        assert!(
            shared.error().is_none(),
            "instance {i}: {:?}",
            shared.error()
        );
        assert_eq!(shared.current().unwrap().settings.seed, 10 + i as u64);
        drop(thread);
    }
}

/// Waits until the generator has taken up `device` and finished loading with it.
fn wait_for_device(shared: &Shared, device: ProviderChoice) -> Status {
    let deadline = Instant::now() + LIVENESS;
    loop {
        let status = shared.status();
        if status.choice == Some(device) && status.phase == Phase::Idle {
            return status;
        }
        assert!(Instant::now() < deadline, "no reload to {device:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The provider in use is one of `choice`'s chain, every provider before it in the chain was
/// passed over with a reason, and the editor's notes say so. Returns the provider in use.
fn check_provider(status: &Status, choice: ProviderChoice) -> Provider {
    let provider = status.provider.expect("a provider in use");
    let chain = choice.chain();
    let position = chain
        .iter()
        .position(|&p| p == provider)
        .unwrap_or_else(|| panic!("{provider} is not in the chain of {choice:?}"));
    let skipped: Vec<Provider> = status.fallbacks.iter().map(|(p, _)| *p).collect();
    assert_eq!(skipped, chain[..position], "{:?}", status.fallbacks);
    let notes = fallback_notes(status);
    assert_eq!(notes.len(), skipped.len());
    for ((skipped, why), note) in status.fallbacks.iter().zip(&notes) {
        assert!(
            !why.to_string().trim().is_empty(),
            "{skipped}: empty reason"
        );
        assert!(
            note.starts_with(&format!("{skipped} unavailable: ")),
            "{note}"
        );
        assert!(
            note.ends_with(&format!("→ running on {provider}")),
            "{note}"
        );
    }
    provider
}

#[test]
fn compute_device_setting_reloads_and_reports_the_provider() {
    let (shared, _inbox, thread) = start();
    assert_eq!(shared.device(), ProviderChoice::Cpu, "the default");

    // Before the first generation the setting loads nothing; the generator starts with it.
    shared.set_device(ProviderChoice::Cuda);
    assert_eq!(shared.status().loads, 0, "nothing loads before a request");
    shared.request(Request::Settings(small(21)));
    wait_idle(&shared);
    let status = shared.status();
    assert_eq!(status.last_error, None);
    assert_eq!(status.choice, Some(ProviderChoice::Cuda));
    assert_eq!(status.loads, 1);
    let provider = check_provider(&status, ProviderChoice::Cuda);
    assert_eq!(shared.current().unwrap().provider, provider);
    if provider == Provider::Cpu {
        // No usable CUDA here (this machine: no GPU; which reason depends on what this process
        // loaded first): the CPU runs it, and the editor's note says why, naming CUDA.
        let notes = fallback_notes(&status);
        assert!(notes[0].starts_with("CUDA unavailable: "), "{}", notes[0]);
    }
    assert!(shared.error().is_none(), "a fallback is not an error");

    // Changing it reloads at once (no generation needed) and the status follows.
    shared.set_device(ProviderChoice::Cpu);
    let status = wait_for_device(&shared, ProviderChoice::Cpu);
    assert_eq!(status.last_error, None);
    assert_eq!(check_provider(&status, ProviderChoice::Cpu), Provider::Cpu);
    assert_eq!(status.loads, 2);
    assert!(fallback_notes(&status).is_empty());

    // A project carrying another device reloads as well, its phrases unchanged.
    let mut saved = shared.state();
    saved.device = ProviderChoice::Auto;
    shared.load_state(saved.clone());
    assert_eq!(shared.state(), saved);
    let status = wait_for_device(&shared, ProviderChoice::Auto);
    assert_eq!(status.last_error, None);
    check_provider(&status, ProviderChoice::Auto);
    assert_eq!(status.loads, 3);

    // Generation goes on with the reloaded model, without loading again.
    shared.request(Request::Settings(small(22)));
    wait_idle(&shared);
    assert_eq!(shared.current().unwrap().settings.seed, 22);
    assert!(shared.error().is_none(), "{:?}", shared.error());
    assert_eq!(shared.status().loads, 3);

    drop(thread);
}

#[test]
fn a_running_generation_finishes_before_the_reload() {
    let (shared, _inbox, thread) = start();
    shared.request(Request::Settings(long(9)));
    let deadline = Instant::now() + LIVENESS;
    while shared.phase() != Phase::Generating || shared.progress() == 0.0 {
        assert!(
            Instant::now() < deadline && shared.current().is_none(),
            "generation not seen running: {:?} {:?}",
            shared.phase(),
            shared.error()
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    shared.set_device(ProviderChoice::Cuda);
    let status = wait_for_device(&shared, ProviderChoice::Cuda);
    // Not cancelled: the phrase arrived, made on the CPU session it started on.
    let phrase = shared.current().expect("the running generation finished");
    assert_eq!(phrase.settings.seed, 9);
    assert_eq!(phrase.provider, Provider::Cpu);
    assert_eq!(status.last_error, None);
    // Then the reload applied.
    assert_eq!(status.loads, 2);
    check_provider(&status, ProviderChoice::Cuda);
    drop(thread);
}

#[test]
fn cancel_stops_the_running_generation_and_not_the_next() {
    let (shared, inbox, thread) = start();
    shared.request(Request::Settings(long(41)));
    let deadline = Instant::now() + LIVENESS;
    while shared.progress() == 0.0 {
        assert!(Instant::now() < deadline, "generation never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    shared.request(Request::Cancel);
    wait_idle(&shared);
    assert_eq!(shared.error().as_deref(), Some("generation cancelled"));
    assert!(shared.current().is_none() && inbox.take().is_none());
    // Cancel then Generate at once: the new request is not cancelled.
    shared.request(Request::Cancel);
    shared.request(Request::Settings(small(42)));
    wait_idle(&shared);
    assert_eq!(shared.error(), None);
    assert_eq!(shared.current().unwrap().settings.seed, 42);
    assert_eq!(inbox.take().unwrap().settings.seed, 42);
    drop(thread);
}

#[test]
fn removal_never_waits_for_a_gpu_model_load() {
    // A load that blocks until the test lets it go (a TensorRT engine build takes minutes).
    let (release, released) = crossbeam_channel::bounded::<()>(1);
    let (entered, loading) = crossbeam_channel::bounded::<()>(1);
    let (finished, loader_done) = crossbeam_channel::bounded::<()>(1);
    let loader: Loader = Box::new(move |_options| {
        let _ = entered.send(());
        let _ = released.recv();
        let _ = finished.send(());
        Err(InferenceError::Session("released by the test".into()))
    });
    let (shared, _inbox, thread) = start_with(loader);
    // A GPU load (a CPU load, a fraction of a second, is waited for).
    shared.set_device(ProviderChoice::Cuda);
    shared.request(Request::Preload);
    loading.recv_timeout(LIVENESS).expect("the load started");
    assert_eq!(shared.phase(), Phase::Loading);

    // Removing the plugin (dropping its generation thread) on "the host's main thread" returns
    // while the load is still blocked.
    let (dropped, returned) = crossbeam_channel::bounded::<()>(1);
    let remover = std::thread::spawn(move || {
        drop(thread);
        let _ = dropped.send(());
    });
    returned
        .recv_timeout(LIVENESS)
        .expect("removal waited for the load");
    remover.join().unwrap();
    assert!(loader_done.try_recv().is_err(), "the load is still running");

    // Released, the load ends and the thread exits on its own, letting go of the shared state.
    let weak = Arc::downgrade(&shared);
    drop(shared);
    release.send(()).unwrap();
    loader_done.recv_timeout(LIVENESS).unwrap();
    let deadline = Instant::now() + LIVENESS;
    while weak.upgrade().is_some() {
        assert!(
            Instant::now() < deadline,
            "the detached thread never exited"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn removal_while_idle_or_generating_joins_the_thread() {
    let (shared, _inbox, thread) = start();
    shared.request(Request::Settings(long(43)));
    let deadline = Instant::now() + LIVENESS;
    while shared.progress() == 0.0 {
        assert!(Instant::now() < deadline, "generation never started");
        std::thread::sleep(Duration::from_millis(1));
    }
    // Generating: the drop stops it within a step and joins; the thread's hold on the shared
    // state is gone when it returns.
    drop(thread);
    assert_eq!(
        Arc::strong_count(&shared),
        1,
        "the thread let go of the shared state"
    );
    assert!(shared.current().is_none(), "stopped, not finished");
}

/// Feeds the audio side notes like a host would: (quarter, key, velocity; 0 = off).
struct Played {
    incoming: Vec<nice_plug::prelude::NoteEvent<()>>,
}

impl smdim::audio::NoteIo<()> for Played {
    fn next_incoming(&mut self) -> Option<nice_plug::prelude::NoteEvent<()>> {
        if self.incoming.is_empty() {
            None
        } else {
            Some(self.incoming.remove(0))
        }
    }
    fn send(&mut self, _event: nice_plug::prelude::NoteEvent<()>) -> bool {
        true
    }
}

#[test]
fn played_notes_are_captured_and_edited_note_for_note() {
    use nice_plug::midi::{Channel, Key, VoiceID};
    use nice_plug::prelude::NoteEvent;
    use smdim::audio::{Audio, BlockParams};
    use smdim_engine::sampler::edit::Edit;
    use smdim_engine::scheduler::{PlaybackMode, Transport};

    let (shared, side, requests) = Shared::new();
    let params = Arc::new(SmdimParams::new(StateField(shared.clone())));
    let thread =
        GenerationThread::spawn(shared.clone(), params, requests, embedded_loader()).unwrap();
    let mut audio = Audio::new(side);
    let block_params = BlockParams {
        mode: PlaybackMode::Loop,
        channel: 0,
        pass_through: true,
        generate: false,
    };
    // Four bars of quarter notes (a C major scale up and down), 120 bpm at 48 kHz, 480-sample
    // blocks: 24,000 samples a quarter.
    let pitches = [
        60u8, 62, 64, 65, 67, 69, 71, 72, 71, 69, 67, 65, 64, 62, 60, 62,
    ];
    let mut events: Vec<(u64, u8, f32)> = Vec::new();
    for (i, &p) in pitches.iter().enumerate() {
        let on = i as u64 * 24_000;
        events.push((on, p, 0.8));
        events.push((on + 12_000, p, 0.0));
    }
    let block = 480u64;
    for b in 0..(16 * 24_000 / block + 50) {
        let start = b * block;
        let incoming = events
            .iter()
            .filter(|(at, _, _)| (start..start + block).contains(at))
            .map(|&(at, key, velocity)| {
                let timing = (at - start) as u32;
                if velocity > 0.0 {
                    NoteEvent::NoteOn {
                        timing,
                        voice_id: VoiceID::Wildcard,
                        channel: Channel::Number(0),
                        key: Key::Number(key),
                        velocity,
                    }
                } else {
                    NoteEvent::NoteOff {
                        timing,
                        voice_id: VoiceID::Wildcard,
                        channel: Channel::Number(0),
                        key: Key::Number(key),
                        velocity: 0.0,
                    }
                }
            })
            .collect();
        let t = Transport::playing_at(48_000.0, 120.0, start as f64 / 24_000.0);
        audio.process(
            &shared,
            &t,
            block as u32,
            block_params,
            &mut Played { incoming },
        );
    }
    let (captured, dropped) = shared.captured();
    assert_eq!((captured.len(), dropped), (16, 0));
    shared.use_capture(4).unwrap();
    let source = shared.source().expect("the capture is the source");
    assert_eq!(source.bars, 4);
    let played: Vec<(u32, u32, u8, u8)> = pitches
        .iter()
        .enumerate()
        .map(|(i, &p)| (i as u32 * 960, 480, p, 102))
        .collect();
    let notes =
        |phrase: &smdim_engine::Phrase, bars: std::ops::Range<u32>| -> Vec<(u32, u32, u8, u8)> {
            phrase
                .notes
                .iter()
                .filter(|n| bars.contains(&(n.start / 3840)))
                .map(|n| (n.start, n.length, n.pitch, n.velocity))
                .collect()
        };
    assert_eq!(notes(&source, 0..4), played);

    // Continue: bars 1-2 kept note for note (the Bars parameter's 4 bars in all).
    shared.request(Request::Edit {
        edit: Edit::Continue { keep_bars: 2 },
        source_key: true,
    });
    wait_idle(&shared);
    assert_eq!(shared.error(), None);
    let continued = shared.current().expect("an edit");
    assert_eq!(continued.phrase.bars, 4);
    assert_eq!(notes(&continued.phrase, 0..2), played[..8]);
    let record = continued
        .edit
        .as_ref()
        .expect("the edit is recorded with its source");
    assert_eq!(record.edit, Edit::Continue { keep_bars: 2 });
    assert_eq!(record.source, *source);
    assert_eq!(
        continued.settings.key,
        smdim_engine::Key::parse("C-major"),
        "the new notes keep the kept bars' key"
    );

    // Infill bars 2-3: bars 1 and 4 kept.
    shared.request(Request::Edit {
        edit: Edit::Infill { from: 2, to: 3 },
        source_key: false,
    });
    wait_idle(&shared);
    let infilled = shared.current().unwrap();
    assert_eq!(
        infilled.settings.key, None,
        "asked without the source's key"
    );
    assert_eq!(notes(&infilled.phrase, 0..1), played[..4]);
    assert_eq!(notes(&infilled.phrase, 3..4), played[12..]);

    // Vary 0 %: the source back.
    shared.request(Request::Edit {
        edit: Edit::Vary {
            strength: 0.0,
            keep_rhythm: false,
        },
        source_key: true,
    });
    wait_idle(&shared);
    assert_eq!(notes(&shared.current().unwrap().phrase, 0..4), played);

    // Saved and reopened: the source and the edits come back identically.
    let saved = serde_json::to_string(&shared.state()).unwrap();
    let back = smdim::state::SavedState::from_json(&saved).unwrap();
    assert_eq!(back, shared.state());
    assert_eq!(back.source.as_deref(), Some(&*source));
    assert_eq!(back.history.len(), 3);
    drop(thread);
}

#[test]
fn an_edit_without_a_source_says_what_to_do() {
    let (shared, _inbox, thread) = start();
    shared.request(Request::Edit {
        edit: smdim_engine::sampler::edit::Edit::Continue { keep_bars: 1 },
        source_key: true,
    });
    wait_idle(&shared);
    let error = shared.error().expect("an error");
    assert!(error.starts_with("no source to edit"), "{error}");
    assert!(shared.current().is_none());
    drop(thread);
}
