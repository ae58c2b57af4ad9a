//! The Rust sampler against the Python reference (`smdim.diffusion.sample`), both driving the
//! same ONNX model through ONNX Runtime: same seed and settings → the same tokens.
//! Needs the model-export venv (`model-export/setup_venv.sh`, which the test suite runs first).

use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::AtomicBool;

use smdim_engine::sampler::{sample, Order, SamplerSettings};
use smdim_engine::Vocabulary;
use smdim_inference::{Denoiser, LoadOptions, ModelSource, Style};

const LENGTH: usize = 64;
const STEPS: u32 = 12;
const SEEDS: u64 = 6;

/// Runs `script` in the model-export venv and parses the JSON on its last line of output.
fn run_python<T: serde::de::DeserializeOwned>(script: &str) -> T {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join("model-export/.venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: run model-export/setup_venv.sh",
        python.display()
    );
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .current_dir(root.join("model-export"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

fn python_tokens(
    model: &std::path::Path,
    temperature: f64,
    top_p: f64,
    order: Order,
    noise: f64,
    tonal_focus: f64,
) -> Vec<Vec<u32>> {
    let script = format!(
        "import json\n\
         from smdim.diffusion import sample\n\
         from smdim.export import ort_session, ort_logits_fn\n\
         fn = ort_logits_fn(ort_session({model:?}, threads=1))\n\
         print(json.dumps([sample(fn, {LENGTH}, steps={STEPS}, seed=s, temperature={temperature}, top_p={top_p}, order={order:?}, noise={noise:?}, tonal_focus={tonal_focus:?})[0].tolist() for s in range({SEEDS})]))\n",
        model = model.display().to_string(),
        order = order.id()
    );
    run_python(&script)
}

#[test]
fn rust_sampler_equals_python_reference() {
    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.onnx");
    let vocab = Vocabulary::remi_v1();
    for native_scan in [false, true] {
        let options = LoadOptions {
            native_scan,
            threads: 1,
            ..Default::default()
        };
        let mut denoiser = Denoiser::load(&ModelSource::from_onnx_path(&model), &options).unwrap();
        for (temperature, top_p, order, noise, tonal_focus) in [
            (1.0, 1.0, Order::Random, 0.0, 0.0),
            (0.8, 0.9, Order::Random, 0.0, 0.0),
            (0.0, 1.0, Order::Random, 0.0, 0.0),
            (1.0, 1.0, Order::Random, 0.0, 1.5),
            (1.0, 1.0, Order::Confidence, 0.0, 0.0),
            (0.8, 0.9, Order::Confidence, 1.0, 0.0),
            (0.0, 1.0, Order::Confidence, 2.5, 0.0),
            (0.9, 0.95, Order::Confidence, 1.0, 1.5),
        ] {
            // Python runs the model's ONNX Scan function; the native kernel differs from it
            // by ~1e-6 in the logits. The random order draws a few dozen tokens and never
            // lands that close to a boundary; the confidence order draws a candidate for every
            // masked position at every step and sorts near-equal scores, so it is compared
            // bit for bit on the same kernel only.
            if native_scan && order == Order::Confidence {
                continue;
            }
            let expected = python_tokens(&model, temperature, top_p, order, noise, tonal_focus);
            for (seed, want) in expected.iter().enumerate() {
                let settings = SamplerSettings {
                    steps: STEPS,
                    temperature,
                    top_p,
                    seed: seed as u64,
                    order,
                    noise,
                    tonal_focus,
                };
                // Python's `ort_logits_fn` feeds style 0 (Any) unless told otherwise.
                let mut logits =
                    |t: &[u32], out: &mut Vec<f32>| denoiser.logits(t, Style::Any, out);
                let (got, _) = sample(
                    vocab,
                    &mut logits,
                    &vec![vocab.mask_id(); LENGTH],
                    &settings,
                    None,
                    &AtomicBool::new(false),
                    |_, _| {},
                )
                .unwrap();
                assert_eq!(&got, want, "seed {seed}, temperature {temperature}, top_p {top_p}, {order:?} noise {noise}, tonal focus {tonal_focus}, native scan {native_scan}");
            }
        }
    }
}

/// The editing skeletons (`sampler::edit`) equal the Python twin's (`smdim.edit.plan_edit`), and
/// sampling them (unconstrained: the Python sampler has no grammar automaton) gives the same
/// tokens in both, so the fixed tokens and the masked ones line up slot for slot.
#[test]
fn edit_skeletons_and_their_sampling_equal_the_python_twin() {
    use smdim_engine::codec::Encoder;
    use smdim_engine::phrase::{Note, Phrase, TimeSignature, PPQ};
    use smdim_engine::sampler::edit::{plan_edit, Edit};
    use smdim_inference::GenerationSettings;

    let model = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/tiny.onnx");
    let vocab = Vocabulary::remi_v1();
    let q = PPQ;
    let mut source = Phrase::empty(TimeSignature::FOUR_FOUR, 3);
    for (start, length, pitch) in [
        (0, q, 60),
        (q, q, 64),
        (4 * q, q, 62),
        (4 * q, q, 65),
        (6 * q, 2 * q, 67),
        (8 * q, q, 64),
        (10 * q, 2 * q, 60),
    ] {
        source.notes.push(Note {
            start,
            length,
            pitch,
            velocity: 100,
        });
    }
    source.normalize();
    // Any: up to four notes an onset, so the engine's first stretch length always fits its
    // grammar (the twin has no automaton to search others with).
    let settings = GenerationSettings {
        bars: 3,
        tempo: 120.0,
        style: smdim_inference::Style::Any,
        density: 0.5,
        ..Default::default()
    };
    let mut encoded = source.clone();
    encoded.tempo_hint = Some(settings.tempo);
    let (ids, _) = Encoder::new(vocab).encode(&encoded).unwrap();
    let cases: Vec<(Edit, &str, u32)> = vec![
        (Edit::Continue { keep_bars: 2 }, "(\"continue\", 2)", 3),
        (Edit::Infill { from: 2, to: 2 }, "(\"infill\", 2, 2)", 3),
        (Edit::Infill { from: 1, to: 3 }, "(\"infill\", 1, 3)", 3),
        (
            Edit::Vary {
                strength: 0.5,
                keep_rhythm: false,
            },
            "(\"vary\", 0.5, False)",
            3,
        ),
        (
            Edit::Vary {
                strength: 1.0,
                keep_rhythm: true,
            },
            "(\"vary\", 1.0, True)",
            3,
        ),
    ];
    let mut denoiser = Denoiser::load(
        &ModelSource::from_onnx_path(&model),
        &LoadOptions {
            native_scan: false,
            threads: 1,
            ..Default::default()
        },
    )
    .unwrap();
    for (seed, (edit, py_edit, bars)) in cases.iter().enumerate() {
        let request = GenerationSettings {
            bars: *bars,
            ..settings.clone()
        }
        .request();
        let plan = plan_edit(vocab, &request, &source, edit, seed as u64, 4, 64)
            .unwrap_or_else(|e| panic!("{edit:?}: {e}"));
        // Every other case with the tonal focus, which counts the kept notes' pitch classes.
        let focus = if seed % 2 == 1 { 1.5 } else { 0.0 };
        let script = format!(
            "import json\n\
             import numpy as np\n\
             from smdim.diffusion import sample\n\
             from smdim.edit import plan_edit\n\
             from smdim.export import ort_session, ort_logits_fn\n\
             skeleton = plan_edit({ids:?}, {py_edit}, {bars}, {seed}, 4, density=0.5, tokens_per_note=2.9)\n\
             fn = ort_logits_fn(ort_session({model:?}, threads=1))\n\
             out = sample(fn, len(skeleton), steps={STEPS}, seed={seed}, fixed=skeleton[None, :], tonal_focus={focus:?})\n\
             print(json.dumps([skeleton.tolist(), out[0].tolist()]))\n",
            model = model.display().to_string(),
        );
        let (skeleton, sampled): (Vec<i64>, Vec<u32>) = run_python(&script);
        let ours: Vec<i64> = plan
            .plan
            .tokens
            .iter()
            .map(|&t| if t == vocab.mask_id() { -1 } else { t as i64 })
            .collect();
        assert_eq!(ours, skeleton, "{edit:?}: skeletons");
        let sampler = SamplerSettings {
            steps: STEPS,
            temperature: 1.0,
            top_p: 1.0,
            seed: seed as u64,
            order: Order::Random,
            noise: 0.0,
            tonal_focus: focus,
        };
        let mut logits = |t: &[u32], out: &mut Vec<f32>| denoiser.logits(t, Style::Any, out);
        let (got, _) = sample(
            vocab,
            &mut logits,
            &plan.plan.tokens,
            &sampler,
            None,
            &AtomicBool::new(false),
            |_, _| {},
        )
        .unwrap();
        assert_eq!(got, sampled, "{edit:?}: sampled tokens");
    }
}
