//! `smdim bench`: the inference latency table (figures for the README and issue notes).

use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use smdim_engine::sampler::{sample, SamplerSettings, SplitMix64};
use smdim_engine::Vocabulary;
use smdim_inference::{generate, Denoiser, GenerationSettings, LoadOptions, ModelSource, Style};

use crate::BenchArgs;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Peak resident memory of this process so far (Linux), in MiB.
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

struct Timing {
    forward: Duration,
    sampling: Duration,
}

fn time_model(denoiser: &mut Denoiser, length: usize, steps: u32, style: Style) -> Result<Timing> {
    let vocab = Vocabulary::remi_v1();
    let mut rng = SplitMix64::new(length as u64);
    let tokens: Vec<u32> = (0..length)
        .map(|_| (rng.next_u64() % vocab.len() as u64) as u32)
        .collect();
    let mut out = Vec::new();
    denoiser.logits(&tokens, style, &mut out)?;
    let mut times = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        denoiser.logits(&tokens, style, &mut out)?;
        times.push(started.elapsed());
    }
    let settings = SamplerSettings {
        steps,
        seed: 1,
        ..Default::default()
    };
    let mut logits = |t: &[u32], o: &mut Vec<f32>| denoiser.logits(t, style, o);
    let started = Instant::now();
    sample(
        vocab,
        &mut logits,
        &vec![vocab.mask_id(); length],
        &settings,
        None,
        &AtomicBool::new(false),
        |_, _| {},
    )
    .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(Timing {
        forward: median(times),
        sampling: started.elapsed(),
    })
}

pub fn run(args: BenchArgs) -> Result<()> {
    let torch: Option<serde_json::Value> = match &args.torch {
        Some(path) => Some(serde_json::from_str(
            &std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?,
        )?),
        None => None,
    };
    let source = ModelSource::from_onnx_path(&args.model);
    let load = |native_scan| {
        let options = LoadOptions {
            native_scan,
            threads: args.threads,
            ..Default::default()
        };
        Denoiser::load(&source, &options)
    };
    let mut native = load(true)?;
    let mut fallback = load(false)?;
    let mut int8 = match &args.int8 {
        Some(path) => Some(Denoiser::load(
            &ModelSource::from_onnx_path(path),
            &LoadOptions {
                threads: args.threads,
                ..Default::default()
            },
        )?),
        None => None,
    };
    let steps = args.steps.unwrap_or(native.card.sampler.default_steps);
    println!(
        "model {} ({} parameters), {} thread(s), {} steps, style {}, provider {}\n",
        args.model.display(),
        native.card.params.map_or("?".into(), |p| p.to_string()),
        args.threads,
        steps,
        args.style,
        native.provider
    );
    println!("| tokens | forward, native scan | forward, ONNX Scan | scan gain | forward, int8 twin | native tokens/s | sampling, native | sampling, ONNX Scan | sampling, int8 twin | sampling, PyTorch eager | Rust vs PyTorch | int8 twin vs PyTorch |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for &length in &args.lengths {
        if length > native.card.length.max {
            println!(
                "| {length} | (model takes at most {}) ||||||||||",
                native.card.length.max
            );
            continue;
        }
        let a = time_model(&mut native, length, steps, args.style)?;
        let b = time_model(&mut fallback, length, steps, args.style)?;
        let q = match int8.as_mut() {
            Some(d) => Some(time_model(d, length, steps, args.style)?),
            None => None,
        };
        let torch_ms = torch
            .as_ref()
            .and_then(|t| t["lengths"][length.to_string()]["phrase_ms"].as_f64());
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "-".into());
        println!(
            "| {length} | {:.1} ms | {:.1} ms | {:.1}x | {} | {:.0} | {:.0} ms | {:.0} ms | {} | {} | {} | {} |",
            ms(a.forward),
            ms(b.forward),
            ms(b.forward) / ms(a.forward),
            or_dash(q.as_ref().map(|q| format!("{:.1} ms", ms(q.forward)))),
            length as f64 / a.forward.as_secs_f64(),
            ms(a.sampling),
            ms(b.sampling),
            or_dash(q.as_ref().map(|q| format!("{:.0} ms", ms(q.sampling)))),
            or_dash(torch_ms.map(|t| format!("{t:.0} ms"))),
            or_dash(torch_ms.map(|t| format!("{:.1}x", t / ms(a.sampling)))),
            or_dash(torch_ms.zip(q.as_ref()).map(|(t, q)| format!("{:.1}x", t / ms(q.sampling)))),
        );
    }
    drop((native, fallback, int8));

    let shipped = [
        ("fp32", smdim_inference::model::default_model_path()),
        (
            "int8 twin",
            smdim_inference::model::default_model_path_for(smdim_inference::ProviderChoice::Cpu)
                .filter(|p| p.ends_with(smdim_inference::model::CPU_MODEL_FILE)),
        ),
    ];
    println!("\nshipped model: an 8-bar phrase of 4/4 at the default settings (constrained sampling, model loaded), median of 5 seeds");
    println!("| model | style | steps | tokens | time |");
    println!("|---|---|---:|---:|---:|");
    // Each shipped model loaded once, for both tables.
    let mut loaded = Vec::new();
    for (label, path) in shipped {
        let Some(path) = path else { continue };
        let options = LoadOptions {
            threads: args.threads,
            ..Default::default()
        };
        loaded.push((
            label,
            Denoiser::load(&ModelSource::from_onnx_path(&path), &options)?,
        ));
    }
    for (label, denoiser) in &mut loaded {
        for style in [Style::Melody, Style::Chorale] {
            let auto = denoiser.card.sampler.steps_for(style.id());
            let mut budgets = vec![auto, 32, 16];
            budgets.sort_unstable_by(|a, b| b.cmp(a));
            budgets.dedup();
            for steps in budgets {
                let mut times = Vec::new();
                let mut tokens = 0;
                for seed in 0..5 {
                    let settings = GenerationSettings {
                        seed,
                        style,
                        steps: Some(steps),
                        ..Default::default()
                    };
                    let generated =
                        generate(denoiser, &settings, &AtomicBool::new(false), |_, _| {})?;
                    tokens = generated.tokens.len();
                    times.push(generated.elapsed);
                }
                println!(
                    "| {label} | {style} | {steps}{} | {tokens} | {:.0} ms |",
                    if steps == auto { " (Auto)" } else { "" },
                    ms(median(times))
                );
            }
        }
    }
    println!("\nfour variations of an 8-bar phrase at the defaults, median of 3 rounds (the int8 twin runs a batch one sequence at a time: its per-call activation scale would tie the variations together)");
    println!("| model | style | one phrase | 4 one by one | 4 in one batched run | batched / one | batched / one by one |");
    println!("|---|---|---:|---:|---:|---:|---:|");
    for (label, denoiser) in &mut loaded {
        variations_table(label, denoiser)?;
    }
    if let Some(peak) = peak_rss_mib() {
        println!("\npeak RSS of this process: {peak:.0} MiB");
    }
    Ok(())
}

/// Four variations of an 8-bar phrase at the defaults: one by one against one batched run
/// (`generate_variations`), per style, median of 3 rounds, against one phrase.
fn variations_table(label: &str, denoiser: &mut Denoiser) -> Result<()> {
    let never = AtomicBool::new(false);
    for style in [Style::Melody, Style::Chorale] {
        if denoiser.check_style(style).is_err() {
            continue;
        }
        let (mut one, mut serial, mut batched) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..3u64 {
            let settings = GenerationSettings {
                style,
                ..Default::default()
            };
            let seeds: Vec<u64> = (0..4).map(|k| 100 * round + k).collect();
            let started = Instant::now();
            generate(
                denoiser,
                &GenerationSettings {
                    seed: seeds[0],
                    ..settings.clone()
                },
                &never,
                |_, _| {},
            )?;
            one.push(started.elapsed());
            let started = Instant::now();
            for &seed in &seeds {
                generate(
                    denoiser,
                    &GenerationSettings {
                        seed,
                        ..settings.clone()
                    },
                    &never,
                    |_, _| {},
                )?;
            }
            serial.push(started.elapsed());
            let started = Instant::now();
            smdim_inference::generate_variations(denoiser, &settings, &seeds, &never, |_, _| {})?;
            batched.push(started.elapsed());
        }
        let (one, serial, batched) = (ms(median(one)), ms(median(serial)), ms(median(batched)));
        println!(
            "| {label} | {style} | {one:.0} ms | {serial:.0} ms | {batched:.0} ms | {:.2}x | {:.2}x |",
            batched / one,
            batched / serial
        );
    }
    Ok(())
}
