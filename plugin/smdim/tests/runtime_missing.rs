//! A missing ONNX Runtime library is an error the editor shows, never a crash (own process: the
//! library search is per process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use smdim::params::SmdimParams;
use smdim::session::{spawn_controller, Request, Session, SessionField};

#[test]
fn missing_runtime_is_reported() {
    std::env::set_var("SMDIM_ORT_LIBRARY", "/nonexistent/libonnxruntime.so");
    let (session, requests) = Session::new();
    let params = Arc::new(SmdimParams::new(SessionField(session.clone())));
    let handle = spawn_controller(session.clone(), params, requests).unwrap();
    session.request(Request::Generate);
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        if let Some(e) = session.error() {
            if !session.busy.load(std::sync::atomic::Ordering::SeqCst) {
                break e;
            }
        }
        assert!(Instant::now() < deadline, "no error reported");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(error.contains("/nonexistent/libonnxruntime.so"), "{error}");
    assert!(session.current().is_none());
    session.shutdown();
    handle.join().unwrap();
}
