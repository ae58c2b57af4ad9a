//! `cargo xtask install` into temporary plugin folders, then the installed CLAP loads the ONNX
//! Runtime copy installed beside it (checked in /proc/self/maps) and generates. Own process:
//! the plugin under test is the installed copy.

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use smdim_host_tests::{phrase_in_state, HostTransport, Plugin, Sim};

#[test]
fn installed_bundles_find_their_onnx_runtime() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let base = std::env::temp_dir().join(format!("smdim-install-{}", std::process::id()));
    let (clap_dir, vst3_dir, data_dir) = (base.join("clap"), base.join("vst3"), base.join("data"));
    let xtask = root.join("target/release/xtask");
    assert!(
        xtask.is_file(),
        "build xtask first (cargo xtask bundle smdim --release)"
    );
    let status = Command::new(&xtask)
        .arg("install")
        .arg("--clap-dir")
        .arg(&clap_dir)
        .arg("--vst3-dir")
        .arg(&vst3_dir)
        .arg("--data-dir")
        .arg(&data_dir)
        .current_dir(&root)
        .status()
        .expect("xtask runs");
    assert!(status.success());
    let lib = "libonnxruntime.so.1.31.1";
    let clap = clap_dir.join("SMDIM.clap");
    assert!(clap.is_file());
    assert!(clap_dir.join("onnxruntime").join(lib).is_file());
    let vst3_bin = vst3_dir.join("SMDIM.vst3/Contents/x86_64-linux");
    assert!(vst3_bin.join("SMDIM.so").is_file());
    assert!(vst3_bin.join("onnxruntime").join(lib).is_file());
    assert!(data_dir.join("onnxruntime").join(lib).is_file());

    std::env::set_var("SMDIM_CLAP", &clap);
    std::env::remove_var("SMDIM_ORT_LIBRARY");
    let mut plugin = Plugin::new();
    let mut processor = plugin.activate(48_000.0, 512);
    let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
    let setup = [
        plugin.param_event("Bars", 0, 0.0),
        plugin.param_event("Density", 0, 0.0),
        plugin.param_event("Diffusion steps", 0, 7.0),
    ];
    sim.block(&mut processor, 512, &setup);
    sim.block(
        &mut processor,
        512,
        &[plugin.param_event("Generate", 0, 1.0)],
    );
    let started = Instant::now();
    while phrase_in_state(&plugin.save_state()).is_none() {
        assert!(started.elapsed() < Duration::from_secs(60), "no phrase");
        sim.block(&mut processor, 512, &[]);
        std::thread::sleep(Duration::from_millis(5));
    }
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let beside = clap_dir.join("onnxruntime").join(lib);
    assert!(
        maps.contains(beside.to_str().unwrap()),
        "the installed CLAP uses the ONNX Runtime beside it"
    );
    assert!(
        !maps.contains("target/onnxruntime"),
        "not the development copy"
    );
    plugin.deactivate(processor);
    drop(plugin);
    let _ = std::fs::remove_dir_all(&base);
}
