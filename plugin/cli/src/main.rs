//! `smdim`: the command-line face of the engine.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use smdim_engine::codec::{decode, parse_token_text, Encoder};
use smdim_engine::midi_file::{load_smf, save_smf, WriteOptions};
use smdim_engine::sampler::Order;
use smdim_engine::Vocabulary;
use smdim_inference::Style;

mod bench;

/// `--order`: random or confidence.
fn parse_order(text: &str) -> std::result::Result<Order, String> {
    Order::parse(text).ok_or_else(|| "unknown order; choose random or confidence".to_string())
}

/// `--style`: an error that lists the choices, from the one list of styles.
fn parse_style(text: &str) -> std::result::Result<Style, String> {
    Style::parse(text).ok_or_else(|| format!("unknown style; choose {}", Style::choices()))
}

#[derive(Parser)]
#[command(
    name = "smdim",
    version,
    about = "SMDIM: diffusion-generated MIDI phrases"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode REMI tokens into a MIDI file. Input: token names (`Bar_None ...`) or ids, or a
    /// JSON object with a `tokens` array (the golden vectors); `-` reads stdin.
    TokensToMidi {
        input: PathBuf,
        #[arg(long, short)]
        out: PathBuf,
        /// Tempo written to the file (default: the tokens' tempo, else 120).
        #[arg(long)]
        tempo: Option<f64>,
    },
    /// Print what a MIDI file contains, as SMDIM reads it.
    MidiInfo { file: PathBuf },
    /// Encode a MIDI file as REMI v1 tokens (one per line).
    MidiToTokens { file: PathBuf },
    /// Generate a phrase with the diffusion model and write it as a MIDI file.
    Generate(GenerateArgs),
    /// Print a latency table: native scan kernel vs ONNX Scan fallback (vs PyTorch with --torch).
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model to time (tests/bench_inference.sh exports one that takes 2,048 tokens).
    #[arg(long)]
    model: PathBuf,
    /// PyTorch timings of the same weights (torch.json from tests/bench/torch_reference.py).
    #[arg(long)]
    torch: Option<PathBuf>,
    #[arg(long, default_value = "256,512,1024,2048", value_delimiter = ',')]
    lengths: Vec<usize>,
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Diffusion steps for whole-sampling runs (default: the model card's).
    #[arg(long)]
    steps: Option<u32>,
    /// Style for every run: any, melody or chorale (Melody and Chorale need a style-conditioned
    /// model).
    #[arg(long, default_value = "melody", value_parser = parse_style)]
    style: Style,
}

#[derive(clap::Args)]
struct GenerateArgs {
    #[arg(long, default_value_t = 8)]
    bars: u32,
    /// Quarter notes per minute (written to the file and given to the model).
    #[arg(long, default_value_t = 120.0)]
    tempo: f32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// MIDI file to write; with --count N, `NAME-<seed>.mid` beside it for each phrase.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Phrases to generate, with seeds seed, seed+1, ... (the model loads once).
    #[arg(long, default_value_t = 1)]
    count: u32,
    /// Also write every phrase's tokens as JSON lines `{"seed": s, "tokens": [...]}`.
    #[arg(long, value_name = "FILE")]
    tokens_out: Option<PathBuf>,
    /// Diffusion steps (default: the model card's).
    #[arg(long)]
    steps: Option<u32>,
    /// Unmasking order, random or confidence (default: the model card's).
    #[arg(long, value_parser = parse_order)]
    order: Option<Order>,
    /// Gumbel noise on confidences, confidence order only (default: the model card's).
    #[arg(long)]
    noise: Option<f64>,
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    #[arg(long, default_value_t = 0.95)]
    top_p: f64,
    /// Lowest-highest MIDI pitch, e.g. 48-84.
    #[arg(long, default_value = "48-84")]
    pitch_range: String,
    /// Key and scale, e.g. D-minor, F#-dorian, Bb-major-pentatonic.
    #[arg(long)]
    key: Option<String>,
    /// Time signature, e.g. 4/4, 3/4, 6/8.
    #[arg(long, default_value = "4/4")]
    meter: String,
    /// Average notes per quarter note over the phrase (default: typical of the style, e.g.
    /// 1.85 for a melody, 4.5 for a chorale).
    #[arg(long)]
    density: Option<f64>,
    #[arg(long, default_value_t = 4)]
    max_notes_per_onset: u32,
    /// any, melody (a folk-tune line) or chorale (four voices). Melody and chorale need a
    /// style-conditioned model (its card lists `styles`).
    #[arg(long, default_value = "melody", value_parser = parse_style)]
    style: Style,
    /// cpu, cuda, tensorrt or auto (falls back towards the CPU).
    #[arg(long, default_value = "cpu")]
    provider: String,
    /// TensorRT engine cache folder (default: the per-user cache, e.g. ~/.cache/smdim/tensorrt).
    /// The first run with TensorRT builds an engine there, which takes minutes.
    #[arg(long, value_name = "DIR")]
    tensorrt_cache: Option<PathBuf>,
    /// ONNX model (default: the shipped models/smdim-default.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Inference threads (default: half the cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Run the model's built-in Scan fallback instead of the native scan kernel.
    #[arg(long)]
    no_native_scan: bool,
}

fn parse_meter(text: &str) -> Result<smdim_engine::TimeSignature> {
    let (n, d) = text.split_once('/').context("meter looks like 4/4")?;
    smdim_engine::TimeSignature::new(n.trim().parse()?, d.trim().parse()?)
        .with_context(|| format!("{text} is not a time signature"))
}

fn generate(args: GenerateArgs) -> Result<()> {
    use smdim_inference::{
        Denoiser, GenerationSettings, ModelSource, ProviderChoice, SessionOptions,
    };

    let (low, high) = args
        .pitch_range
        .split_once('-')
        .and_then(|(a, b)| Some((a.trim().parse::<u8>().ok()?, b.trim().parse::<u8>().ok()?)))
        .filter(|(a, b)| a <= b && *b < 128)
        .context("--pitch-range looks like 48-84 (MIDI pitches, low-high)")?;
    let provider = ProviderChoice::parse(&args.provider)
        .context("--provider is cpu, cuda, tensorrt or auto")?;
    let model_path = match args.model {
        Some(path) => path,
        None => smdim_inference::model::default_model_path()
            .context("no model found: pass --model, set SMDIM_MODEL, or keep models/smdim-default.onnx beside the binary")?,
    };
    let mut options = SessionOptions {
        provider,
        native_scan: !args.no_native_scan,
        ..Default::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads.max(1);
    }
    if let Some(dir) = args.tensorrt_cache {
        options.tensorrt_cache = Some(dir);
    }
    let settings = GenerationSettings {
        bars: args.bars,
        time_signature: parse_meter(&args.meter)?,
        tempo: args.tempo,
        steps: args.steps,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        density: args.density.unwrap_or(args.style.typical_density()),
        order: args.order,
        noise: args.noise,
        lowest_pitch: low,
        highest_pitch: high,
        key: args.key,
        max_notes_per_onset: args.max_notes_per_onset,
        style: args.style,
        ..Default::default()
    };
    settings.parsed_key()?;

    let load_start = std::time::Instant::now();
    let mut denoiser = Denoiser::load(&ModelSource::from_onnx_path(&model_path), &options)?;
    let load_time = load_start.elapsed();
    for (skipped, why) in &denoiser.fallbacks {
        println!("provider {skipped} passed over: {why}");
    }
    println!("provider in use: {}", denoiser.provider);
    if args.out.is_none() && args.tokens_out.is_none() {
        bail!("nothing to write: pass --out FILE.mid and/or --tokens-out FILE.jsonl");
    }
    let mut tokens_out = match &args.tokens_out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let cancel = std::sync::atomic::AtomicBool::new(false);
    let count = args.count.max(1);
    for k in 0..count {
        let seed = args.seed.wrapping_add(k as u64);
        let settings = GenerationSettings {
            seed,
            ..settings.clone()
        };
        let generated = smdim_inference::generate(&mut denoiser, &settings, &cancel, |_, _| {})?;
        if let Some(file) = tokens_out.as_mut() {
            use std::io::Write;
            let line = serde_json::json!({"seed": seed, "tokens": generated.tokens});
            writeln!(file, "{line}")?;
        }
        let out = args.out.as_ref().map(|out| {
            if count == 1 {
                out.clone()
            } else {
                let stem = out.file_stem().unwrap_or_default().to_string_lossy();
                out.with_file_name(format!("{stem}-{seed}.mid"))
            }
        });
        if let Some(out) = &out {
            let options = WriteOptions {
                tempo: args.tempo as f64,
                track_name: "SMDIM",
                ..Default::default()
            };
            save_smf(&generated.phrase, &options, out)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        let phrase = &generated.phrase;
        println!(
            "model {} ({} tokens, SelectiveScan: {}), style {}, order {}, provider {}, {} steps ({} denoiser calls), generated in {:.0} ms (load {:.0} ms)",
            model_path.display(),
            generated.tokens.len(),
            if args.no_native_scan { "ONNX Scan function" } else { "native kernel registered" },
            generated.settings.style,
            generated.order.id(),
            generated.provider,
            generated.steps,
            generated.denoiser_calls,
            generated.elapsed.as_secs_f64() * 1000.0,
            load_time.as_secs_f64() * 1000.0
        );
        println!(
            "{} notes in {} bars of {}, pitches {}-{}, seed {}{}",
            phrase.notes.len(),
            phrase.bars,
            phrase.time_signature,
            phrase.lowest_pitch().unwrap_or(0),
            phrase.highest_pitch().unwrap_or(0),
            seed,
            out.map(|o| format!(" -> {}", o.display()))
                .unwrap_or_default()
        );
    }
    if let Some(mut file) = tokens_out {
        use std::io::Write;
        file.flush()?;
    }
    Ok(())
}

fn read_input(path: &Path) -> Result<String> {
    if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin().read_to_string(&mut text)?;
        Ok(text)
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
    }
}

fn main() -> Result<()> {
    let vocab = Vocabulary::remi_v1();
    match Cli::parse().command {
        Command::TokensToMidi { input, out, tempo } => {
            let text = read_input(&input)?;
            let json_tokens = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|doc| doc.get("tokens").cloned());
            let ids = match json_tokens {
                Some(tokens) => parse_token_text(vocab, &tokens.to_string())?,
                None => parse_token_text(vocab, &text)?,
            };
            let decoded = decode(vocab, &ids);
            let phrase = &decoded.phrase;
            let tempo = tempo.or(phrase.tempo_hint.map(f64::from)).unwrap_or(120.0);
            save_smf(
                phrase,
                &WriteOptions {
                    tempo,
                    ..Default::default()
                },
                &out,
            )
            .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} tokens -> {} notes, {} bars of {} at {tempo:.1} bpm -> {}",
                ids.len(),
                phrase.notes.len(),
                phrase.bars,
                phrase.time_signature,
                out.display()
            );
            for (reason, count) in decoded.report.nonzero() {
                println!("  skipped {count} token(s): {reason:?}");
            }
        }
        Command::MidiInfo { file } => {
            let read = load_smf(&file).with_context(|| format!("reading {}", file.display()))?;
            let p = &read.phrase;
            println!("file:            {}", file.display());
            println!("format:          {}", read.format);
            println!("tracks:          {}", read.tracks);
            println!("ticks/quarter:   {}", read.ticks_per_quarter);
            println!("time signature:  {}", p.time_signature);
            for (tick, bpm) in &read.tempo_map {
                println!(
                    "tempo:           {bpm:.2} bpm at quarter {:.3}",
                    *tick as f64 / smdim_engine::PPQ as f64
                );
            }
            println!("bars:            {}", p.bars);
            println!("notes:           {}", p.notes.len());
            if let (Some(lo), Some(hi)) = (p.lowest_pitch(), p.highest_pitch()) {
                println!("pitch range:     {lo}-{hi}");
            }
            if read.unterminated_notes > 0 {
                println!(
                    "unterminated:    {} note(s) closed at their track's end",
                    read.unterminated_notes
                );
            }
            match Encoder::new(vocab).encode(p) {
                Ok((tokens, report)) => println!(
                    "REMI v1 tokens:  {} ({} moved to the grid, {} resized, {} out of pitch range)",
                    tokens.len(),
                    report.moved,
                    report.resized,
                    report.dropped_pitch
                ),
                Err(e) => println!("REMI v1 tokens:  not encodable: {e}"),
            }
        }
        Command::Generate(args) => generate(args)?,
        Command::Bench(args) => bench::run(args)?,
        Command::MidiToTokens { file } => {
            let read = load_smf(&file).with_context(|| format!("reading {}", file.display()))?;
            let (tokens, _) = Encoder::new(vocab).encode(&read.phrase)?;
            if tokens.is_empty() {
                bail!("nothing to encode");
            }
            let mut text = String::with_capacity(tokens.len() * 12);
            for id in tokens {
                text.push_str(vocab.text(id).unwrap_or("?"));
                text.push('\n');
            }
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), text.as_bytes());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_and_tensorrt_cache_flags_parse() {
        let cli = Cli::try_parse_from([
            "smdim",
            "generate",
            "--out",
            "x.mid",
            "--provider",
            "tensorrt",
            "--tensorrt-cache",
            "/tmp/engines",
        ])
        .unwrap();
        let Command::Generate(args) = cli.command else {
            panic!("not generate");
        };
        assert_eq!(args.provider, "tensorrt");
        assert_eq!(args.tensorrt_cache, Some(PathBuf::from("/tmp/engines")));
        let Command::Generate(defaults) = Cli::try_parse_from(["smdim", "generate", "-o", "y.mid"])
            .unwrap()
            .command
        else {
            panic!("not generate");
        };
        assert_eq!(defaults.provider, "cpu");
        assert_eq!(defaults.style, Style::Melody);
        assert_eq!(
            defaults.tensorrt_cache, None,
            "SessionOptions' per-user default applies"
        );
    }

    #[test]
    fn style_flag_parses_every_id_and_lists_the_choices_otherwise() {
        for style in Style::ALL {
            let cli =
                Cli::try_parse_from(["smdim", "generate", "-o", "x.mid", "--style", style.id()])
                    .unwrap();
            let Command::Generate(args) = cli.command else {
                panic!("not generate");
            };
            assert_eq!(args.style, style);
        }
        let err = Cli::try_parse_from(["smdim", "generate", "-o", "x.mid", "--style", "banana"])
            .err()
            .expect("banana is no style");
        let text = err.to_string();
        assert!(
            text.contains("banana") && text.contains("any, melody or chorale"),
            "{text}"
        );
        let Command::Bench(bench) = Cli::try_parse_from(["smdim", "bench", "--model", "m.onnx"])
            .unwrap()
            .command
        else {
            panic!("not bench");
        };
        assert_eq!(bench.style, Style::Melody);
    }
}
