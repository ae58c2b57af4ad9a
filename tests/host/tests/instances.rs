//! Many instances in one host process (a project with melody, bass and chords): resident memory
//! and threads after 1, 4 and 8 instances have each generated, and the time for 8 instances to
//! generate at once. Printed as a table (`--nocapture`); the assertions are functional only (every
//! instance generates), never timings. Its own process, so the memory baseline is this test's.

use std::time::{Duration, Instant};

use smdim_host_tests::{phrase_in_state, HostTransport, Plugin, Processor, Sim};

fn status_field(name: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

struct Instance {
    plugin: Plugin,
    processor: Processor,
    sim: Sim,
}

impl Instance {
    fn new() -> Instance {
        let mut plugin = Plugin::new();
        let mut processor = plugin.activate(48_000.0, 512);
        let mut sim = Sim::new(48_000.0, HostTransport::playing(120.0, 0.0));
        let setup = [plugin.param_event("Generate", 0, 0.0)];
        sim.block(&mut processor, 512, &setup);
        Instance {
            plugin,
            processor,
            sim,
        }
    }

    fn trigger(&mut self) {
        let on = [self.plugin.param_event("Generate", 0, 1.0)];
        self.sim.block(&mut self.processor, 512, &on);
        let off = [self.plugin.param_event("Generate", 0, 0.0)];
        self.sim.block(&mut self.processor, 512, &off);
    }
}

/// Triggers Generate in `instances[from..]` at once and runs them in real time until each
/// has a phrase; returns how long that took.
fn generate_all(instances: &mut [Instance], from: usize) -> Duration {
    let before: Vec<_> = instances
        .iter_mut()
        .map(|i| phrase_in_state(&i.plugin.save_state()))
        .collect();
    let started = Instant::now();
    for instance in &mut instances[from..] {
        instance.trigger();
    }
    loop {
        let done = instances
            .iter_mut()
            .zip(&before)
            .skip(from)
            .all(|(i, b)| phrase_in_state(&i.plugin.save_state()) != *b);
        if done {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "not every instance generated"
        );
        std::thread::sleep(Duration::from_micros(10_667));
        for instance in instances.iter_mut() {
            instance.sim.block(&mut instance.processor, 512, &[]);
        }
    }
}

#[test]
fn one_four_and_eight_instances() {
    let base_rss = status_field("VmRSS:");
    let base_threads = status_field("Threads:");
    let mut instances: Vec<Instance> = Vec::new();
    let mut rows = Vec::new();
    for target in [1usize, 4, 8] {
        let from = instances.len();
        while instances.len() < target {
            instances.push(Instance::new());
        }
        let took = generate_all(&mut instances, from);
        rows.push(format!(
            "| {target} | +{} MiB | +{} | {:.0} ms for the {} new instance(s) at once |",
            status_field("VmRSS:").saturating_sub(base_rss) / 1024,
            status_field("Threads:").saturating_sub(base_threads),
            took.as_secs_f64() * 1e3,
            target - from
        ));
    }
    // All eight at once, each with its model already loaded.
    // generate_all fails unless every instance's saved state holds a new phrase.
    let all = generate_all(&mut instances, 0);
    eprintln!("\nSMDIM instances in one process (this machine):");
    eprintln!("| instances | resident memory | threads | generation |");
    eprintln!("|---:|---:|---:|---|");
    for row in &rows {
        eprintln!("{row}");
    }
    eprintln!(
        "| 8 | | | {:.0} ms for all 8 at once (models loaded) |",
        all.as_secs_f64() * 1e3
    );
    for mut instance in instances {
        let processor = instance.processor;
        instance.plugin.deactivate(processor);
    }
}
