//! A missing ONNX Runtime library is an error the editor shows, never a crash (own process: the
//! library search is per process).

use std::sync::Arc;
use std::time::{Duration, Instant};

use smdim::generation::{embedded_loader, GenerationThread};
use smdim::params::SmdimParams;
use smdim::shared::{Request, Shared, StateField};

#[test]
fn missing_runtime_is_reported() {
    std::env::set_var("SMDIM_ORT_LIBRARY", "/nonexistent/libonnxruntime.so");
    let (shared, _inbox, requests) = Shared::new();
    let params = Arc::new(SmdimParams::new(StateField(shared.clone())));
    let thread =
        GenerationThread::spawn(shared.clone(), params, requests, embedded_loader()).unwrap();
    shared.request(Request::Generate);
    let deadline = Instant::now() + Duration::from_secs(30);
    let error = loop {
        if let Some(e) = shared.error() {
            if shared.is_idle() {
                break e;
            }
        }
        assert!(Instant::now() < deadline, "no error reported");
        std::thread::sleep(Duration::from_millis(5));
    };
    assert!(error.contains("/nonexistent/libonnxruntime.so"), "{error}");
    assert!(shared.current().is_none());
    drop(thread);
}
