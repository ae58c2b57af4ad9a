//! What SMDIM writes under the user's home: only the documented folders (README, "Files"),
//! never ONNX Runtime's telemetry (`~/.cache/Microsoft/DeveloperTools`). One test in its own
//! binary, because it points `HOME` and `XDG_*` of this process at an empty folder.
//!
//! Needs `cargo xtask bundle smdim --release` first (or `SMDIM_CLAP=/path/SMDIM.clap`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use smdim_host_tests::{HostTransport, Plugin, Sim};

/// Every file and folder below `dir`, relative to it.
fn tree(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            out.push(path.strip_prefix(dir).unwrap().to_path_buf());
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn a_generation_writes_only_documented_folders() {
    let home = std::env::temp_dir().join(format!("smdim-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    // Before any thread of the plugin exists (this binary holds this one test).
    std::env::set_var("HOME", &home);
    for var in [
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "XDG_CONFIG_HOME",
        "XDG_STATE_HOME",
        "SMDIM_EXPORT_DIR",
        "ORT_DISABLE_TELEMETRY",
    ] {
        std::env::remove_var(var);
    }

    let mut plugin = Plugin::new();
    let sample_rate = 48_000.0;
    let mut processor = plugin.activate(sample_rate, 512);
    let setup = [
        plugin.param_event("Bars", 0, 0.0),
        plugin.param_event("Density", 0, 0.0),
        plugin.param_event("Diffusion steps", 0, 7.0),
        plugin.param_event("Generate", 0, 0.0),
    ];
    let mut sim = Sim::new(sample_rate, HostTransport::playing(120.0, 0.0));
    sim.block(&mut processor, 512, &setup);
    let mut trigger = vec![plugin.param_event("Generate", 0, 1.0)];
    let started = Instant::now();
    let mut played = false;
    while !played && started.elapsed() < Duration::from_secs(60) {
        played = sim
            .block(&mut processor, 512, &trigger)
            .iter()
            .any(|n| n.on);
        trigger.clear();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(played, "a generated note within 60 s");
    plugin.deactivate(processor);
    drop(plugin);

    // Documented: the drag-file cache, the per-user data folder (runtime, GPU pack), exports.
    let allowed = [
        ".cache",
        ".cache/smdim",
        ".local",
        ".local/share",
        ".local/share/smdim",
    ];
    let documented = |p: &Path| {
        allowed.iter().any(|a| p == Path::new(a))
            || p.starts_with(".cache/smdim")
            || p.starts_with(".local/share/smdim")
            || p.starts_with("Music/SMDIM")
            || p == Path::new("Music")
    };
    let written = tree(&home);
    let stray: Vec<_> = written.iter().filter(|p| !documented(p)).collect();
    assert!(stray.is_empty(), "undocumented files under HOME: {stray:?}");
    assert!(
        !home.join(".cache/Microsoft").exists(),
        "ONNX Runtime telemetry folder"
    );
    std::fs::remove_dir_all(&home).unwrap();
}
