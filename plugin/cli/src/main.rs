//! `smdim`: the command-line face of the engine.

use std::io::Read;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::builder::RangedU64ValueParser;
use clap::{value_parser, Parser, Subcommand};
use smdim_engine::codec::{decode, parse_token_text, Encoder};
use smdim_engine::midi_file::{self, load_smf, save_smf, WriteOptions};
use smdim_engine::sampler::constraints::{MAX_NOTES_PER_ONSET_LIMIT, NOTES_PER_QUARTER};
use smdim_engine::sampler::Order;
use smdim_engine::theory::Key;
use smdim_engine::{TimeSignature, Token, Vocabulary};
use smdim_inference::generate as limits;
use smdim_inference::{ProviderChoice, Style};

mod bench;

/// A number in `range`, else an error naming the range (and `unit`, when there is one).
fn number_in(
    range: RangeInclusive<f64>,
    unit: &'static str,
) -> impl Fn(&str) -> std::result::Result<f64, String> + Clone + Send + Sync + 'static {
    move |text| {
        let allowed = || {
            let unit = if unit.is_empty() {
                String::new()
            } else {
                format!(" {unit}")
            };
            format!("must be from {} to {}{unit}", range.start(), range.end())
        };
        let value: f64 = text
            .trim()
            .parse()
            .map_err(|_| format!("not a number; {}", allowed()))?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(allowed())
        }
    }
}

/// Integers `range` as clap's value-parser range (`1..=64`).
fn int_range(range: RangeInclusive<u32>) -> RangeInclusive<i64> {
    *range.start() as i64..=*range.end() as i64
}

/// `--tempo`: quarter notes per minute the MIDI file can hold as asked.
fn parse_tempo(text: &str) -> std::result::Result<f64, String> {
    number_in(midi_file::TEMPO, "quarter notes per minute")(text)
}

/// `generate --tempo`: as [`parse_tempo`], held as the settings hold it.
fn parse_tempo_f32(text: &str) -> std::result::Result<f32, String> {
    parse_tempo(text)?;
    text.trim().parse().map_err(|e| format!("{e}"))
}

/// `--key`: a key, or `none` for no key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct KeyArg(Option<Key>);

fn parse_key(text: &str) -> std::result::Result<KeyArg, String> {
    if text.trim().eq_ignore_ascii_case("none") {
        return Ok(KeyArg(None));
    }
    Key::parse(text)
        .map(|key| KeyArg(Some(key)))
        .ok_or_else(|| {
            format!(
                "unknown key; try {} (a tonic C..B with # or b, then major, minor, \
             harmonic-minor, dorian, mixolydian, major-pentatonic or minor-pentatonic), or none",
                Key::EXAMPLES
            )
        })
}

/// `--pitch-range`: `low-high`, MIDI pitches 0-127, low <= high.
fn parse_pitch_range(text: &str) -> std::result::Result<(u8, u8), String> {
    const USAGE: &str =
        "looks like 48-84: lowest-highest MIDI pitch, each 0-127, lowest <= highest";
    let (low, high) = text.split_once('-').ok_or(USAGE)?;
    let pitch = |p: &str| {
        p.trim()
            .parse::<u8>()
            .ok()
            .filter(|&p| p <= 127)
            .ok_or(USAGE)
    };
    let (low, high) = (pitch(low)?, pitch(high)?);
    if low > high {
        return Err(format!("lowest {low} is above highest {high}; {USAGE}"));
    }
    Ok((low, high))
}

/// `--meter`: a time signature the model's vocabulary has.
/// `3-4` or `3`: a 1-based, inclusive bar range.
fn parse_bar_range(text: &str) -> std::result::Result<(u32, u32), String> {
    let bad = || format!("{text:?}: give bars as FROM-TO or one bar, e.g. 3-4 (1-based)");
    let (from, to) = match text.split_once('-') {
        Some((a, b)) => (a.trim(), b.trim()),
        None => (text.trim(), text.trim()),
    };
    let from: u32 = from.parse().map_err(|_| bad())?;
    let to: u32 = to.parse().map_err(|_| bad())?;
    if from == 0 || from > to {
        return Err(bad());
    }
    Ok((from, to))
}

fn parse_meter(text: &str) -> std::result::Result<TimeSignature, String> {
    let vocab = Vocabulary::remi_v1();
    let meters: Vec<TimeSignature> = vocab
        .tokens()
        .iter()
        .filter_map(|t| match t {
            Token::TimeSig(ts) => Some(*ts),
            _ => None,
        })
        .collect();
    let choices = || {
        meters
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let ts = text
        .split_once('/')
        .and_then(|(n, d)| TimeSignature::new(n.trim().parse().ok()?, d.trim().parse().ok()?))
        .ok_or_else(|| format!("not a time signature; choose {}", choices()))?;
    if !meters.contains(&ts) {
        return Err(format!("the model has no {ts} meter; choose {}", choices()));
    }
    Ok(ts)
}

/// `--provider`: validated here, kept as typed (the id the summary prints).
fn parse_provider(text: &str) -> std::result::Result<String, String> {
    ProviderChoice::parse(text)
        .map(|_| text.to_string())
        .ok_or_else(|| "unknown provider; choose cpu, cuda, tensorrt or auto".to_string())
}

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
        /// Tempo written to the file, 4-1000 (default: the tokens' tempo, else 120).
        #[arg(long, value_parser = parse_tempo)]
        tempo: Option<f64>,
    },
    /// Print what a MIDI file contains, as SMDIM reads it.
    MidiInfo { file: PathBuf },
    /// Encode a MIDI file as REMI v1 tokens (one per line).
    MidiToTokens { file: PathBuf },
    /// Generate a phrase with the diffusion model and write it as a MIDI file.
    Generate(GenerateArgs),
    /// Keep the first bars of a MIDI file note for note and let the model continue them.
    Continue(ContinueArgs),
    /// Regenerate some bars of a MIDI file, keeping every other bar note for note.
    Infill(InfillArgs),
    /// A variation of a MIDI file: a share of its notes made new, the rest kept.
    Vary(VaryArgs),
    /// Play a MIDI file with the plugin's preview voice into a WAV file (16-bit stereo).
    Render(RenderArgs),
    /// Print a latency table: native scan kernel vs ONNX Scan fallback (vs PyTorch with --torch).
    Bench(BenchArgs),
}

#[derive(clap::Args)]
struct RenderArgs {
    file: PathBuf,
    #[arg(long, short)]
    out: PathBuf,
    /// Sample rate, 8000-192000.
    #[arg(long, default_value_t = 48_000, value_parser = value_parser!(u32).range(8_000..=192_000))]
    rate: u32,
    /// Quarter notes per minute, 4-1000 (default: the file's tempo map, else 120).
    #[arg(long, value_parser = parse_tempo)]
    tempo: Option<f64>,
    /// Level in dB, -48 to 0 (the plugin's Preview level).
    #[arg(long, default_value_t = -6.0, allow_negative_numbers = true,
          value_parser = number_in(-48.0..=0.0, "dB"))]
    level: f64,
}

#[derive(clap::Args)]
struct BenchArgs {
    /// Model to time (tests/bench_inference.sh exports one that takes 2,048 tokens).
    #[arg(long)]
    model: PathBuf,
    /// PyTorch timings of the same weights (torch.json from tests/bench/torch_reference.py).
    #[arg(long)]
    torch: Option<PathBuf>,
    /// The model's int8 twin (`python -m smdim.quantize --src MODEL`), timed beside it.
    #[arg(long)]
    int8: Option<PathBuf>,
    #[arg(long, default_value = "256,512,1024,2048", value_delimiter = ',',
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    lengths: Vec<usize>,
    #[arg(long, default_value_t = 2, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    threads: usize,
    /// Diffusion steps for whole-sampling runs (default: the model card's).
    #[arg(long, value_parser = value_parser!(u32).range(int_range(limits::STEPS)))]
    steps: Option<u32>,
    /// Style for every run: any, melody or chorale (Melody and Chorale need a style-conditioned
    /// model).
    #[arg(long, default_value = "melody", value_parser = parse_style)]
    style: Style,
}

#[derive(clap::Args)]
struct GenerateArgs {
    /// Bars in the phrase, 1-64.
    #[arg(long, default_value_t = 8, value_parser = value_parser!(u32).range(int_range(limits::BARS)))]
    bars: u32,
    /// Time signature, e.g. 4/4, 3/4, 6/8.
    #[arg(long, default_value = "4/4", value_parser = parse_meter)]
    meter: TimeSignature,
    #[command(flatten)]
    common: CommonArgs,
}

/// `smdim continue IN.mid --keep-bars K --bars N`.
#[derive(clap::Args)]
struct ContinueArgs {
    /// The source: a MIDI file (its notes are quantised to the model's grid, as midi-info shows).
    input: PathBuf,
    /// Bars of the source kept note for note, from its start.
    #[arg(long, value_parser = value_parser!(u32).range(1..))]
    keep_bars: u32,
    /// Bars of the result (kept and new), 1-64.
    #[arg(long, value_parser = value_parser!(u32).range(int_range(limits::BARS)))]
    bars: u32,
    #[command(flatten)]
    common: CommonArgs,
}

/// `smdim infill IN.mid --bars A-B`.
#[derive(clap::Args)]
struct InfillArgs {
    /// The source: a MIDI file.
    input: PathBuf,
    /// The bars to regenerate, e.g. 3-4 or 2 (1-based, inclusive); every other bar is kept.
    #[arg(long, value_parser = parse_bar_range)]
    bars: (u32, u32),
    #[command(flatten)]
    common: CommonArgs,
}

/// `smdim vary IN.mid --strength S [--keep-rhythm]`.
#[derive(clap::Args)]
struct VaryArgs {
    /// The source: a MIDI file.
    input: PathBuf,
    /// Share of the source's notes made new, 0-1 (0: the source back, 1: every note new).
    #[arg(long, default_value_t = 0.3, value_parser = number_in(0.0..=1.0, ""))]
    strength: f64,
    /// Keep every onset and duration: only the chosen notes' pitches change.
    #[arg(long)]
    keep_rhythm: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// Flags every generating command shares.
#[derive(clap::Args)]
struct CommonArgs {
    /// Quarter notes per minute, 4-1000 (written to the file and given to the model; default
    /// 120, or for an edit the source file's first tempo).
    #[arg(long, value_parser = parse_tempo_f32)]
    tempo: Option<f32>,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// MIDI file to write; with --count N, `NAME-<seed>.mid` beside it for each phrase.
    #[arg(long, short)]
    out: Option<PathBuf>,
    /// Phrases to generate, with seeds seed, seed+1, ... (the model loads once).
    #[arg(long, default_value_t = 1, value_parser = value_parser!(u32).range(1..))]
    count: u32,
    /// Sample the --count phrases together: one batched denoiser call per diffusion step for all
    /// of them (the same phrases as one by one, in less time). Not for edits.
    #[arg(long)]
    batch: bool,
    /// Also write every phrase's tokens as JSON lines `{"seed": s, "tokens": [...]}`.
    #[arg(long, value_name = "FILE")]
    tokens_out: Option<PathBuf>,
    /// Diffusion steps, 1-1000 (default: the model card's for the style).
    #[arg(long, value_parser = value_parser!(u32).range(int_range(limits::STEPS)))]
    steps: Option<u32>,
    /// Unmasking order, random or confidence (default: the model card's).
    #[arg(long, value_parser = parse_order)]
    order: Option<Order>,
    /// Gumbel noise on confidences, 0-10, confidence order only (default: the model card's).
    #[arg(long, value_parser = number_in(limits::NOISE, ""))]
    noise: Option<f64>,
    /// Pull toward the key of the pitches already chosen, 0-4: one key across long phrases
    /// (0: the plain model; default: the model card's).
    #[arg(long, value_parser = number_in(limits::TONAL_FOCUS, ""))]
    tonal_focus: Option<f64>,
    /// Sampling temperature, 0-5.
    #[arg(long, default_value_t = 1.0, value_parser = number_in(limits::TEMPERATURE, ""))]
    temperature: f64,
    /// Nucleus sampling mass, 0.01-1.
    #[arg(long, default_value_t = 0.95, value_parser = number_in(limits::TOP_P, ""))]
    top_p: f64,
    /// Lowest-highest MIDI pitch, e.g. 48-84.
    #[arg(long, default_value = "48-84", value_parser = parse_pitch_range)]
    pitch_range: (u8, u8),
    /// Key and scale, e.g. D-minor, F#-dorian, Bb-major-pentatonic (default: none).
    #[arg(long, value_parser = parse_key)]
    key: Option<KeyArg>,
    /// Edits: keep the new notes in the source's key (its major or minor key, estimated from the
    /// kept notes' pitch classes and printed).
    #[arg(long, conflicts_with = "key")]
    source_key: bool,
    /// Average notes per quarter note over the phrase, 0.1-8 (default: typical of the style,
    /// e.g. 1.85 for a melody, 4.5 for a chorale).
    #[arg(long, value_parser = number_in(NOTES_PER_QUARTER, "notes per quarter note"))]
    density: Option<f64>,
    /// At most this many notes start together, 1-12.
    #[arg(long, default_value_t = 4,
          value_parser = value_parser!(u32).range(1..=MAX_NOTES_PER_ONSET_LIMIT as i64))]
    max_notes_per_onset: u32,
    /// any, melody (a folk-tune line) or chorale (four voices). Melody and chorale need a
    /// style-conditioned model (its card lists `styles`).
    #[arg(long, default_value = "melody", value_parser = parse_style)]
    style: Style,
    /// cpu, cuda, tensorrt or auto (falls back towards the CPU).
    #[arg(long, default_value = "cpu", value_parser = parse_provider)]
    provider: String,
    /// TensorRT engine cache folder (default: the per-user cache, e.g. ~/.cache/smdim/tensorrt).
    /// The first run with TensorRT builds an engine there, which takes minutes.
    #[arg(long, value_name = "DIR")]
    tensorrt_cache: Option<PathBuf>,
    /// ONNX model (default: the shipped models/smdim-default.onnx).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Inference threads, at least 1 (default: half the cores).
    #[arg(long, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    threads: Option<usize>,
    /// Run the model's built-in Scan fallback instead of the native scan kernel.
    #[arg(long)]
    no_native_scan: bool,
}

/// What a generating command is asked to do with the model.
enum Job {
    Generate,
    Edit {
        source: smdim_engine::Phrase,
        edit: smdim_engine::sampler::edit::Edit,
    },
}

fn generate(args: GenerateArgs) -> Result<()> {
    if args.common.source_key {
        bail!("--source-key needs a source: use it with continue, infill or vary");
    }
    let tempo = args.common.tempo.unwrap_or(120.0);
    run(&args.common, args.bars, args.meter, tempo, Job::Generate)
}

/// Reads an edit's source and prints what quantising it to the model's grid changes.
fn read_source(path: &Path) -> Result<(smdim_engine::Phrase, Option<f64>)> {
    let read = load_smf(path).with_context(|| format!("reading {}", path.display()))?;
    let phrase = read.phrase;
    let tempo = read.tempo_map.first().map(|&(_, bpm)| bpm);
    let (_, report) = Encoder::new(Vocabulary::remi_v1())
        .encode(&phrase)
        .with_context(|| format!("{} cannot be read into the model's tokens", path.display()))?;
    println!(
        "source {}: {} notes in {} bars of {} ({} moved to the grid, {} resized, {} out of the model's pitch range)",
        path.display(),
        phrase.notes.len(),
        phrase.bars,
        phrase.time_signature,
        report.moved,
        report.resized,
        report.dropped_pitch
    );
    Ok((phrase, tempo))
}

fn edit(
    input: &Path,
    common: &CommonArgs,
    bars: Option<u32>,
    edit: smdim_engine::sampler::edit::Edit,
) -> Result<()> {
    let (source, file_tempo) = read_source(input)?;
    let tempo = match common.tempo {
        Some(tempo) => tempo,
        None => file_tempo
            .filter(|t| midi_file::TEMPO.contains(t))
            .unwrap_or(120.0) as f32,
    };
    let (bars, meter) = (bars.unwrap_or(source.bars), source.time_signature);
    run(common, bars, meter, tempo, Job::Edit { source, edit })
}

fn run(args: &CommonArgs, bars: u32, meter: TimeSignature, tempo: f32, job: Job) -> Result<()> {
    use smdim_inference::{Denoiser, GenerationSettings, LoadOptions, ModelSource};

    let (low, high) = args.pitch_range;
    let provider = ProviderChoice::parse(&args.provider)
        .context("--provider is cpu, cuda, tensorrt or auto")?;
    let model_path = match &args.model {
        Some(path) => path.clone(),
        None => smdim_inference::model::default_model_path_for(provider)
            .context("no model found: pass --model, set SMDIM_MODEL, or keep models/smdim-default.onnx beside the binary")?,
    };
    let mut options = LoadOptions {
        provider,
        native_scan: !args.no_native_scan,
        ..Default::default()
    };
    if let Some(threads) = args.threads {
        options.threads = threads;
    }
    if let Some(dir) = &args.tensorrt_cache {
        options.tensorrt_cache = Some(dir.clone());
    }
    let key = match &job {
        Job::Edit { source, edit } if args.source_key => {
            let kept = edit.kept_notes(source);
            let key = smdim_engine::Key::estimate(&kept).context(
                "--source-key: the kept notes name no key (no notes, or every pitch class alike)",
            )?;
            println!("source key: {key}");
            Some(key)
        }
        _ => args.key.and_then(|k| k.0),
    };
    let settings = GenerationSettings {
        bars,
        time_signature: meter,
        tempo,
        steps: args.steps,
        temperature: args.temperature,
        top_p: args.top_p,
        seed: args.seed,
        density: args.density.unwrap_or(args.style.typical_density()),
        order: args.order,
        noise: args.noise,
        tonal_focus: args.tonal_focus,
        lowest_pitch: low,
        highest_pitch: high,
        key,
        max_notes_per_onset: args.max_notes_per_onset,
        style: args.style,
        ..Default::default()
    };
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
    let count = args.count;
    let out = args.out.clone();
    let seeds: Vec<u64> = (0..count)
        .map(|k| args.seed.wrapping_add(k as u64))
        .collect();
    let mut batched = match (&job, args.batch) {
        (_, false) => None,
        (Job::Generate, true) => Some(
            smdim_inference::generate_variations(
                &mut denoiser,
                &settings,
                &seeds,
                &cancel,
                |_, _| {},
            )?
            .into_iter(),
        ),
        (Job::Edit { .. }, true) => bail!("--batch samples new phrases only, not edits"),
    };
    for &seed in &seeds {
        let settings = GenerationSettings {
            seed,
            ..settings.clone()
        };
        let generated = match (&job, batched.as_mut()) {
            (_, Some(variations)) => variations
                .next()
                .context("internal: fewer variations than seeds")?,
            (Job::Generate, None) => {
                smdim_inference::generate(&mut denoiser, &settings, &cancel, |_, _| {})?
            }
            (Job::Edit { source, edit }, None) => {
                smdim_inference::generate_edit(
                    &mut denoiser,
                    &settings,
                    source,
                    edit,
                    &cancel,
                    |_, _| {},
                )?
                .generated
            }
        };
        if let Some(file) = tokens_out.as_mut() {
            use std::io::Write;
            let line = serde_json::json!({"seed": seed, "tokens": generated.tokens});
            writeln!(file, "{line}")?;
        }
        let out = out.as_ref().map(|out| {
            if count == 1 {
                out.clone()
            } else {
                let stem = out.file_stem().unwrap_or_default().to_string_lossy();
                out.with_file_name(format!("{stem}-{seed}.mid"))
            }
        });
        if let Some(out) = &out {
            let options = WriteOptions {
                tempo: tempo as f64,
                track_name: "SMDIM",
                ..Default::default()
            };
            save_smf(&generated.phrase, &options, out)
                .with_context(|| format!("writing {}", out.display()))?;
        }
        let phrase = &generated.phrase;
        println!(
            "model {} ({} tokens, SelectiveScan: {}), style {}, order {}, tonal focus {}, provider {}, {} steps ({} denoiser calls), generated in {:.0} ms (load {:.0} ms)",
            model_path.display(),
            generated.tokens.len(),
            if args.no_native_scan { "ONNX Scan function" } else { "native kernel registered" },
            generated.settings.style,
            generated.order.id(),
            generated.tonal_focus,
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

/// `smdim render`: the file's notes through the preview voice, as a WAV file.
fn render(args: &RenderArgs) -> Result<()> {
    let read = load_smf(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let tempo_map = match args.tempo {
        Some(bpm) => vec![(0, bpm)],
        None => read.tempo_map.clone(),
    };
    let gain = 10f32.powf(args.level as f32 / 20.0);
    let (left, right) =
        smdim_engine::preview::render_phrase(&read.phrase, &tempo_map, f64::from(args.rate), gain);
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: args.rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let write = || -> Result<(), hound::Error> {
        let mut wav = hound::WavWriter::create(&args.out, spec)?;
        for (l, r) in left.iter().zip(&right) {
            for s in [l, r] {
                wav.write_sample((s.clamp(-1.0, 1.0) * 32767.0).round() as i16)?;
            }
        }
        wav.finalize()
    };
    write().with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{} notes, {:.2} s at {} Hz -> {}",
        read.phrase.notes.len(),
        left.len() as f64 / f64::from(args.rate),
        args.rate,
        args.out.display()
    );
    Ok(())
}

fn main() -> Result<()> {
    // Output piped into `head` and closed early ends the program quietly, as command-line tools
    // do, instead of a panic on the next print (Rust ignores SIGPIPE by default).
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of one signal before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
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
        Command::Render(args) => render(&args)?,
        Command::Generate(args) => generate(args)?,
        Command::Continue(args) => edit(
            &args.input,
            &args.common,
            Some(args.bars),
            smdim_engine::sampler::edit::Edit::Continue {
                keep_bars: args.keep_bars,
            },
        )?,
        Command::Infill(args) => edit(
            &args.input,
            &args.common,
            None,
            smdim_engine::sampler::edit::Edit::Infill {
                from: args.bars.0,
                to: args.bars.1,
            },
        )?,
        Command::Vary(args) => edit(
            &args.input,
            &args.common,
            None,
            smdim_engine::sampler::edit::Edit::Vary {
                strength: args.strength,
                keep_rhythm: args.keep_rhythm,
            },
        )?,
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
        assert_eq!(args.common.provider, "tensorrt");
        assert_eq!(
            args.common.tensorrt_cache,
            Some(PathBuf::from("/tmp/engines"))
        );
        let Command::Generate(defaults) = Cli::try_parse_from(["smdim", "generate", "-o", "y.mid"])
            .unwrap()
            .command
        else {
            panic!("not generate");
        };
        assert_eq!(defaults.common.provider, "cpu");
        assert_eq!(defaults.common.style, Style::Melody);
        assert_eq!(
            defaults.common.tensorrt_cache, None,
            "LoadOptions' per-user default applies"
        );
    }

    fn generate_args(extra: &[&str]) -> GenerateArgs {
        let mut args = vec!["smdim", "generate", "-o", "x.mid"];
        args.extend_from_slice(extra);
        match Cli::try_parse_from(args).unwrap().command {
            Command::Generate(args) => args,
            _ => panic!("not generate"),
        }
    }

    /// The ends of every range are accepted as given, not moved.
    #[test]
    fn range_ends_are_accepted_as_given() {
        let low = generate_args(&[
            "--bars=1",
            "--tempo=4",
            "--steps=1",
            "--temperature=0",
            "--top-p=0.01",
            "--noise=0",
            "--density=0.1",
            "--max-notes-per-onset=1",
            "--pitch-range=0-0",
            "--threads=1",
        ]);
        assert_eq!(
            (low.bars, low.common.tempo, low.common.steps),
            (1, Some(4.0), Some(1))
        );
        assert_eq!(
            (low.common.temperature, low.common.top_p, low.common.noise),
            (0.0, 0.01, Some(0.0))
        );
        assert_eq!(
            (low.common.density, low.common.max_notes_per_onset),
            (Some(0.1), 1)
        );
        assert_eq!(
            (low.common.pitch_range, low.common.threads),
            ((0, 0), Some(1))
        );
        let high = generate_args(&[
            "--bars=64",
            "--tempo=1000",
            "--steps=1000",
            "--temperature=5",
            "--top-p=1",
            "--noise=10",
            "--density=8",
            "--max-notes-per-onset=12",
            "--pitch-range=0-127",
        ]);
        assert_eq!(
            (high.bars, high.common.tempo, high.common.steps),
            (64, Some(1000.0), Some(1000))
        );
        assert_eq!(
            (
                high.common.temperature,
                high.common.top_p,
                high.common.noise
            ),
            (5.0, 1.0, Some(10.0))
        );
        assert_eq!(
            (high.common.density, high.common.max_notes_per_onset),
            (Some(8.0), 12)
        );
        assert_eq!(high.common.pitch_range, (0, 127));
        let defaults = generate_args(&[]);
        assert_eq!(
            (defaults.bars, defaults.common.tempo, defaults.common.steps),
            (8, None, None)
        );
        assert_eq!(defaults.common.pitch_range, (48, 84));
        assert_eq!(defaults.meter, TimeSignature::FOUR_FOUR);
        assert_eq!(defaults.common.key, None);
    }

    /// `--key` is parsed once, here: any spelling `Key::parse` reads, or `none`.
    #[test]
    fn key_flag_parses_to_a_key() {
        assert_eq!(
            generate_args(&["--key", "Bb-major"]).common.key,
            Some(KeyArg(Key::parse("A#-major")))
        );
        assert_eq!(
            generate_args(&["--key", "F#-dorian"]).common.key,
            Some(KeyArg(Key::parse("F#-dorian")))
        );
        assert_eq!(
            generate_args(&["--key", "none"]).common.key,
            Some(KeyArg(None))
        );
        assert_eq!(
            generate_args(&["--meter", "6/8"]).meter,
            TimeSignature::new(6, 8).unwrap()
        );
        let err = Cli::try_parse_from(["smdim", "generate", "-o", "x", "--key", "Q-minor"])
            .err()
            .expect("Q is no note");
        assert_eq!(err.kind(), clap::error::ErrorKind::ValueValidation);
        assert!(err.to_string().contains(Key::EXAMPLES), "{err}");
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
            assert_eq!(args.common.style, style);
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
