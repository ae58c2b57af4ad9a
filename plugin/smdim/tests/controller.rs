//! The controller thread with the real generator and the embedded model: generation from the
//! parameters, history and undo/redo feeding the audio inbox, and errors that leave the playing
//! phrase alone.

use std::sync::Arc;
use std::time::{Duration, Instant};

use smdim::params::SmdimParams;
use smdim::session::{spawn_controller, Request, Session, SessionField};
use smdim_engine::TimeSignature;
use smdim_inference::GenerationSettings;

fn start() -> (Arc<Session>, std::thread::JoinHandle<()>) {
    let (session, requests) = Session::new();
    let params = Arc::new(SmdimParams::new(SessionField(session.clone())));
    let handle = spawn_controller(session.clone(), params, requests).unwrap();
    (session, handle)
}

fn small(seed: u64) -> GenerationSettings {
    GenerationSettings {
        bars: 1,
        density: 0.25,
        steps: Some(8),
        seed,
        time_signature: TimeSignature::FOUR_FOUR,
        ..Default::default()
    }
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
    let first = session.current().expect("a phrase");
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
