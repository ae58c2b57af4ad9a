//! `smdim`: the command-line face of the engine.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use smdim_engine::codec::{decode, parse_token_text, Encoder};
use smdim_engine::midi_file::{load_smf, save_smf, WriteOptions};
use smdim_engine::Vocabulary;

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
