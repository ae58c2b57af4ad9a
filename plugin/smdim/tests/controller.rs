//! The controller thread with the real generator and the embedded model: generation from the
//! parameters, history and undo/redo feeding the audio inbox, and errors that leave the playing
//! phrase alone.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smdim::params::SmdimParams;
use smdim::session::{fallback_notes, spawn_controller, Request, Session, SessionField};
use smdim_engine::TimeSignature;
use smdim_inference::{
    GenerationSettings, ModelCard, Phase, Provider, ProviderChoice, Status, Style,
};

fn start() -> (Arc<Session>, std::thread::JoinHandle<()>) {
    let (session, requests) = Session::new();
    let params = Arc::new(SmdimParams::new(SessionField(session.clone())));
    let handle = spawn_controller(session.clone(), params, requests).unwrap();
    (session, handle)
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

/// The embedded model's card, read from the source tree.
fn embedded_card() -> ModelCard {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(format!("{}.card.json", smdim::model::EMBEDDED_MODEL));
    ModelCard::parse(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn wait_idle(session: &Session) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // `busy` is set by `request` before the controller sees it.
    while session.busy.load(std::sync::atomic::Ordering::SeqCst) {
        assert!(Instant::now() < deadline, "generation did not finish");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn generates_keeps_history_and_errors_leave_the_phrase_playing() {
    let (session, handle) = start();
    assert!(
        session.status().is_none(),
        "nothing loaded before the first request"
    );

    session.request(Request::Settings(small(1)));
    wait_idle(&session);
    let first = session
        .current()
        .unwrap_or_else(|| panic!("no phrase: {:?}", session.error()));
    assert_eq!(first.settings.seed, 1);
    assert!(!first.phrase.notes.is_empty());
    let status = session.status().expect("generator started");
    assert!(status.provider.is_some());
    assert!(status.last_error.is_none(), "{:?}", status.last_error);
    let inbox = session.inbox.take().expect("the audio side gets it");
    assert!(Arc::ptr_eq(&inbox, &first));

    session.request(Request::Settings(small(2)));
    wait_idle(&session);
    let second = session.current().unwrap();
    assert_eq!(second.settings.seed, 2);
    assert!(session.can_undo() && !session.can_redo());

    // Variation: the current settings with another seed.
    session.request(Request::Variation);
    wait_idle(&session);
    let third = session.current().unwrap();
    assert_ne!(third.settings.seed, 2);
    assert_eq!(third.settings.bars, second.settings.bars);
    assert_eq!(session.state().history.len(), 3);

    // Undo and redo hand the chosen phrase to the audio side.
    assert!(session.step(-1));
    assert!(Arc::ptr_eq(&session.current().unwrap(), &second));
    assert!(Arc::ptr_eq(&session.inbox.take().unwrap(), &second));
    assert!(session.step(1));
    assert!(Arc::ptr_eq(&session.inbox.take().unwrap(), &third));
    assert!(!session.step(1));

    // A request the model cannot serve (7/8 has no token in the vocabulary) fails with a
    // message; the phrase stays.
    session.request(Request::Settings(GenerationSettings {
        time_signature: TimeSignature::new(7, 8).unwrap(),
        ..small(3)
    }));
    wait_idle(&session);
    let error = session.error().expect("the failure is reported");
    assert!(!error.is_empty());
    assert!(Arc::ptr_eq(&session.current().unwrap(), &third), "{error}");
    assert!(
        session.inbox.take().is_none(),
        "nothing new for the audio side"
    );

    // Cancel during a generation: no new phrase, and the controller keeps working.
    session.request(Request::Settings(GenerationSettings {
        steps: Some(1000),
        ..small(4)
    }));
    std::thread::sleep(Duration::from_millis(20));
    session.request(Request::Cancel);
    wait_idle(&session);
    session.request(Request::Settings(small(5)));
    wait_idle(&session);
    assert_eq!(session.current().unwrap().settings.seed, 5);
    assert!(session.error().is_none());

    session.shutdown();
    handle.join().unwrap();
}

#[test]
fn a_style_the_model_lacks_is_shown_and_the_phrase_stays() {
    let card = embedded_card();
    let (session, handle) = start();
    session.request(Request::Settings(small(30)));
    wait_idle(&session);
    let mut playing = session
        .current()
        .unwrap_or_else(|| panic!("no phrase: {:?}", session.error()));
    for style in [Style::Melody, Style::Chorale] {
        session.request(Request::Settings(GenerationSettings { style, ..small(31) }));
        wait_idle(&session);
        if card.has_style(style) {
            assert!(session.error().is_none(), "{:?}", session.error());
            playing = session.current().unwrap();
            assert_eq!(playing.settings.style, style);
        } else {
            // What the editor shows in its error line.
            let error = session.error().expect("the failure is reported");
            assert!(
                error.starts_with("this model has no styles: choose Any"),
                "{error}"
            );
            assert!(Arc::ptr_eq(&session.current().unwrap(), &playing));
        }
    }
    session.shutdown();
    handle.join().unwrap();
}

#[test]
fn instances_loading_at_the_same_moment_all_generate() {
    // Several plugin instances in one process load the model at once (a project opening).
    let instances: Vec<_> = (0..4).map(|_| start()).collect();
    for (i, (session, _)) in instances.iter().enumerate() {
        session.request(Request::Settings(small(10 + i as u64)));
    }
    for (session, _) in &instances {
        wait_idle(session);
    }
    for (i, (session, handle)) in instances.into_iter().enumerate() {
        assert!(
            session.error().is_none(),
            "instance {i}: {:?}",
            session.error()
        );
        assert_eq!(session.current().unwrap().settings.seed, 10 + i as u64);
        session.shutdown();
        handle.join().unwrap();
    }
}

/// Waits until the generator has taken up `device` and finished loading with it.
fn wait_for_device(session: &Session, device: ProviderChoice) -> Status {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = session.status() {
            if status.choice == Some(device) && status.phase == Phase::Idle {
                return status;
            }
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
        assert!(!why.trim().is_empty(), "{skipped}: empty reason");
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
    let (session, handle) = start();
    assert_eq!(session.device(), ProviderChoice::Cpu, "the default");

    // Before the first generation the setting loads nothing; the generator starts with it.
    session.set_device(ProviderChoice::Cuda);
    assert!(session.status().is_none());
    session.request(Request::Settings(small(21)));
    wait_idle(&session);
    let status = session.status().expect("generator started");
    assert_eq!(status.last_error, None);
    assert_eq!(status.choice, Some(ProviderChoice::Cuda));
    assert_eq!(status.loads, 1);
    let provider = check_provider(&status, ProviderChoice::Cuda);
    assert_eq!(session.current().unwrap().provider, provider);
    if provider == Provider::Cpu {
        // No usable CUDA here (this machine: no GPU; which reason depends on what this process
        // loaded first): the CPU runs it, and the editor's note says why, naming CUDA.
        let notes = fallback_notes(&status);
        assert!(notes[0].starts_with("CUDA unavailable: "), "{}", notes[0]);
    }
    assert!(session.error().is_none(), "a fallback is not an error");

    // Changing it reloads at once (no generation needed) and the status follows.
    session.set_device(ProviderChoice::Cpu);
    let status = wait_for_device(&session, ProviderChoice::Cpu);
    assert_eq!(status.last_error, None);
    assert_eq!(check_provider(&status, ProviderChoice::Cpu), Provider::Cpu);
    assert_eq!(status.loads, 2);
    assert!(fallback_notes(&status).is_empty());

    // A project carrying another device reloads as well, its phrases unchanged.
    let mut saved = session.state();
    saved.device = ProviderChoice::Auto;
    session.load_state(saved.clone());
    assert_eq!(session.state(), saved);
    let status = wait_for_device(&session, ProviderChoice::Auto);
    assert_eq!(status.last_error, None);
    check_provider(&status, ProviderChoice::Auto);
    assert_eq!(status.loads, 3);

    // Generation goes on with the reloaded model, without loading again.
    session.request(Request::Settings(small(22)));
    wait_idle(&session);
    assert_eq!(session.current().unwrap().settings.seed, 22);
    assert!(session.error().is_none(), "{:?}", session.error());
    assert_eq!(session.status().unwrap().loads, 3);

    session.shutdown();
    handle.join().unwrap();
}
