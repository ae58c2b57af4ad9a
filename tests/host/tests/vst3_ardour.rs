//! The VST3 in Ardour 7, headless (Debian packages `ardour`): Ardour's own VST3 scanner loads
//! and describes the bundle, then an `ardour7-lua` session with the Dummy backend puts SMDIM on
//! a MIDI track, presses Generate through the parameter and records the note-ons that come out
//! (tests/host/ardour/). They must sit exactly on the phrase grid (1/8 beat at 120 bpm, 48 kHz:
//! 3,000 samples) and repeat every bar (the 1-bar phrase loops), i.e. play in sync. Then the
//! saved session is reopened in a new Ardour process: the restored plugin state plays the same
//! bar, without generating. The track's audio after SMDIM (the preview voice, on in a new
//! instance) is rendered to a WAV file: sound after each note-on, silence before the first.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// Note-ons printed by the Ardour scripts, as (absolute sample, key).
fn notes_in(text: &str) -> Vec<(u64, u8)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("SMDIM_NOTE"))
        .map(|l| {
            let mut parts = l.split_whitespace();
            let sample = parts.next().unwrap().parse().unwrap();
            let key = parts.next().unwrap().parse().unwrap();
            (sample, key)
        })
        .collect()
}

/// A 32-bit float stereo WAV as written by play.lua: (left, right).
fn read_wav(path: &std::path::Path) -> (Vec<f32>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..12], b"WAVE");
    assert_eq!(u16::from_le_bytes([bytes[20], bytes[21]]), 3, "IEEE float");
    assert_eq!(u16::from_le_bytes([bytes[22], bytes[23]]), 2, "stereo");
    let samples: Vec<f32> = bytes[44..]
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let left = samples.iter().step_by(2).copied().collect();
    let right = samples.iter().skip(1).step_by(2).copied().collect();
    (left, right)
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|&s| (s as f64).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

/// The notes of bar `n` as (offset in the bar, key).
fn bar(notes: &[(u64, u8)], n: u64) -> BTreeSet<(u64, u8)> {
    notes
        .iter()
        .filter(|(s, _)| s / 96_000 == n)
        .map(|(s, k)| (s % 96_000, *k))
        .collect()
}

#[test]
fn vst3_scans_and_plays_in_sync_in_ardour() {
    // Canonical: Ardour keys its scan cache by the bundle path.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap();
    let bundled = root.join("target/bundled");
    let vst3 = bundled.join("SMDIM.vst3");
    assert!(
        vst3.is_dir(),
        "run `cargo xtask bundle smdim --release` first"
    );
    let scanner = PathBuf::from("/usr/lib/ardour7/ardour-vst3-scanner");
    assert!(
        scanner.is_file(),
        "needs Ardour 7 (Debian package `ardour`)"
    );

    // Private config and cache folders: the scan result and our capture script only.
    let home = std::env::temp_dir().join(format!("smdim-ardour-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    let scripts = home.join("config/ardour7/scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    std::fs::copy(
        root.join("tests/host/ardour/smdim_capture.lua"),
        scripts.join("smdim_capture.lua"),
    )
    .unwrap();
    let env = |c: &mut Command| {
        c.env("XDG_CONFIG_HOME", home.join("config"))
            .env("XDG_CACHE_HOME", home.join("cache"))
            .env("VST3_PATH", &bundled)
            .env("LD_LIBRARY_PATH", "/usr/lib/ardour7");
    };

    let mut scan = Command::new(&scanner);
    env(&mut scan);
    let out = scan
        .arg("-f")
        .arg("-v")
        .arg(&vst3)
        .output()
        .expect("scanner runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "scan failed:\n{text}");
    for wanted in [
        "name=\"SMDIM\"",
        "category=\"Instrument|Generator\"",
        "n_inputs=\"0\"",
        "n_outputs=\"2\"",
        "n_midi_inputs=\"1\"",
        "n_midi_outputs=\"1\"",
    ] {
        assert!(
            text.contains(wanted),
            "{wanted} missing in the scan:\n{text}"
        );
    }

    let mut session = Command::new("ardour7-lua");
    env(&mut session);
    let out = session
        .env("SMDIM_ARDOUR_SESSION", home.join("session"))
        .env("SMDIM_ARDOUR_SECONDS", "9")
        .arg(root.join("tests/host/ardour/play.lua"))
        .output()
        .expect("ardour7-lua runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("Error:"),
        "the Ardour session script failed:\n{text}"
    );
    let notes = notes_in(&text);
    assert!(
        text.contains("SMDIM_RATE\t48000") || text.contains("SMDIM_RATE 48000"),
        "{text}"
    );
    assert!(notes.len() >= 4, "SMDIM played in Ardour: {text}");
    // 120 bpm at 48 kHz: a beat is 24,000 samples, the REMI grid 3,000, a 4/4 bar 96,000.
    for (sample, key) in &notes {
        assert_eq!(
            sample % 3000,
            0,
            "note {key} at {sample} is off the grid: {notes:?}"
        );
    }
    // The 1-bar phrase loops: every bar after the first one played holds the same notes.
    let first_bar = notes[0].0 / 96_000;
    let last_bar = notes.last().unwrap().0 / 96_000;
    assert!(last_bar > first_bar + 1, "several bars played: {notes:?}");
    // The phrase arrives at a bar line; compare the complete bars after it.
    let reference = bar(&notes, first_bar + 1);
    assert!(!reference.is_empty());
    for n in first_bar + 2..last_bar {
        assert_eq!(bar(&notes, n), reference, "bar {n} differs: {notes:?}");
    }

    // The rendered preview: every note-on is heard on both channels, nothing before the first.
    let audio_line = text
        .lines()
        .find_map(|l| l.strip_prefix("SMDIM_AUDIO"))
        .unwrap_or_else(|| panic!("no audio recorded: {text}"));
    let mut fields = audio_line
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap());
    let (frames, first) = (fields.next().unwrap(), fields.next().unwrap());
    let (left, right) = read_wav(&home.join("session/smdim-preview.wav"));
    assert_eq!(left.len() as u64, frames);
    assert!(frames >= 4 * 48_000, "at least 4 s rendered: {frames}");
    assert!(left
        .iter()
        .chain(&right)
        .all(|s| s.is_finite() && s.abs() <= 1.0));
    let mut heard = 0;
    for &(sample, key) in &notes {
        // 5 to 30 ms after the onset (the shortest grid note lasts 62.5 ms).
        let from = (sample + 240).saturating_sub(first) as usize;
        let to = (sample + 1_440).saturating_sub(first) as usize;
        if to <= left.len() && sample >= first {
            let (l, r) = (rms(&left[from..to]), rms(&right[from..to]));
            assert!(
                l > 1e-4 && r > 1e-4,
                "note {key} at {sample} is silent ({l}, {r})"
            );
            heard += 1;
        }
    }
    assert!(heard >= 4, "notes checked in the render: {heard}");
    let before = (notes[0].0.saturating_sub(first)) as usize;
    assert!(
        left[..before]
            .iter()
            .chain(&right[..before])
            .all(|&s| s == 0.0),
        "silent before the first note"
    );

    // Reopen the saved session in a fresh Ardour: the plugin state brings the phrase back.
    let mut session = Command::new("ardour7-lua");
    env(&mut session);
    let out = session
        .env("SMDIM_ARDOUR_SESSION", home.join("session"))
        .env("SMDIM_ARDOUR_SECONDS", "5")
        .arg(root.join("tests/host/ardour/replay.lua"))
        .output()
        .expect("ardour7-lua runs");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(
        !text.contains("Error:"),
        "the replay script failed:\n{text}"
    );
    let replayed = notes_in(&text);
    assert!(replayed.len() >= 2, "the reloaded plugin plays: {text}");
    let last = replayed.last().unwrap().0 / 96_000;
    for n in 0..last {
        assert_eq!(
            bar(&replayed, n),
            reference,
            "replayed bar {n}: {replayed:?}"
        );
    }
    let _ = std::fs::remove_dir_all(&home);
}
