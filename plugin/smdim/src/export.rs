//! Export .mid: the current phrase with the host's tempo and meter, into a per-user folder.

use std::path::{Path, PathBuf};

use smdim_engine::midi_file::{write_smf, WriteOptions};
use smdim_engine::TimeSignature;
use smdim_inference::Generated;

/// `$SMDIM_EXPORT_DIR`, else `SMDIM` in the user's music folder (XDG's `MUSIC` folder on Linux,
/// else `~/Music`; Music on Windows and macOS).
pub fn export_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("SMDIM_EXPORT_DIR") {
        return Some(PathBuf::from(dir));
    }
    let music = dirs::audio_dir().or_else(|| Some(dirs::home_dir()?.join("Music")))?;
    Some(music.join("SMDIM"))
}

/// The phrase as a Standard MIDI File with the host's tempo and meter on `channel` (0-based):
/// what Export .mid writes and what a drag carries.
pub fn smf_bytes(
    generated: &Generated,
    tempo: f64,
    time_signature: TimeSignature,
    channel: u8,
    track_name: &str,
) -> Result<Vec<u8>, String> {
    write_smf(
        &generated.phrase,
        &WriteOptions {
            tempo,
            time_signature: Some(time_signature),
            track_name,
            channel,
        },
    )
    .map_err(|e| format!("could not encode the phrase: {e}"))
}

/// Writes `generated` to a new file in `dir` and returns its path.
pub fn export_mid(
    generated: &Generated,
    dir: &Path,
    tempo: f64,
    time_signature: TimeSignature,
    channel: u8,
) -> Result<PathBuf, String> {
    let bytes = smf_bytes(generated, tempo, time_signature, channel, "SMDIM")?;
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = format!(
        "smdim-{}bars-seed{}-{stamp}.mid",
        generated.phrase.bars, generated.settings.seed
    );
    let mut path = dir.join(&name);
    let mut n = 1;
    while path.exists() {
        path = dir.join(format!("{}-{n}.mid", name.trim_end_matches(".mid")));
        n += 1;
    }
    std::fs::write(&path, bytes).map_err(|e| format!("could not write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use smdim_engine::midi_file::read_smf;
    use smdim_engine::phrase::{Note, Phrase};
    use smdim_inference::{GenerationSettings, Provider};
    use std::time::Duration;

    #[test]
    fn writes_a_readable_file_with_host_tempo_and_meter() {
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 2);
        phrase.notes.push(Note {
            start: 960,
            length: 480,
            pitch: 62,
            velocity: 90,
        });
        let generated = Generated {
            phrase,
            tokens: vec![],
            settings: GenerationSettings::default(),
            steps: 1,
            provider: Provider::Cpu,
            elapsed: Duration::ZERO,
            denoiser_calls: 1,
            order: Default::default(),
            tonal_focus: 0.0,
            edit: None,
        };
        let dir = std::env::temp_dir().join(format!("smdim-export-{}", std::process::id()));
        let ts = TimeSignature::new(3, 4).unwrap();
        let a = export_mid(&generated, &dir, 97.0, ts, 0).unwrap();
        let b = export_mid(&generated, &dir, 97.0, ts, 0).unwrap();
        assert_ne!(a, b, "a second export never overwrites the first");
        let bytes = std::fs::read(&a).unwrap();
        let read = read_smf(&bytes).unwrap();
        assert_eq!(read.phrase.notes.len(), 1);
        assert_eq!(read.phrase.notes[0].pitch, 62);
        assert_eq!(read.phrase.time_signature, ts);
        assert_eq!(read.tempo_map.len(), 1);
        assert!(
            (read.tempo_map[0].1 - 97.0).abs() < 0.01,
            "{:?}",
            read.tempo_map
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
