//! Drag the phrase out of the editor: the .mid written for a drag, and on X11 the drag on its
//! own thread (`smdim_drag::start_file_drag`). On Windows and macOS the editor runs the system
//! drag on its GUI thread instead (`SmdimEditor::start_native_drag`, through the `drag` crate),
//! with the same file.
//!
//! Drag files live in `$XDG_CACHE_HOME/smdim/drag/` (else `~/.cache/smdim/drag/`, else the
//! temp folder) and outlive the drag: the DAW may read the file after the drop finished. Files
//! older than a day are removed when the next drag starts, never during a drag.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;
use smdim_drag::{start_file_drag, DragOutcome};
use smdim_engine::TimeSignature;
use smdim_inference::Generated;

/// Drag files older than this are removed on the next drag.
pub const MAX_AGE: Duration = Duration::from_secs(24 * 60 * 60);

/// `<cache>/smdim/drag` (`$XDG_CACHE_HOME` or `~/.cache` on Linux, `%LOCALAPPDATA%` on
/// Windows, `~/Library/Caches` on macOS), else `<temp>/smdim/drag`.
pub fn drag_dir() -> PathBuf {
    dirs::cache_dir()
        .unwrap_or_else(std::env::temp_dir)
        .join("smdim")
        .join("drag")
}

/// `smdim-<key>-<bars>bars-seed<seed>.mid`, safe in any file system.
pub fn drag_file_name(generated: &Generated) -> String {
    let key = generated
        .settings
        .key
        .map_or_else(|| "nokey".to_string(), |k| k.to_string())
        .replace('#', "sharp")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect::<String>();
    format!(
        "smdim-{key}-{}bars-seed{}.mid",
        generated.phrase.bars, generated.settings.seed
    )
}

/// Removes `.mid` files in `dir` last modified more than `max_age` ago; returns how many.
pub fn remove_old_files(dir: &Path, max_age: Duration) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let now = SystemTime::now();
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| now.duration_since(t).ok())
            .is_some_and(|age| age > max_age);
        if old
            && path.extension().is_some_and(|e| e == "mid")
            && std::fs::remove_file(&path).is_ok()
        {
            removed += 1;
        }
    }
    removed
}

/// Writes the phrase for a drag into `dir` (host tempo and meter, track name) and returns the
/// path. Old drag files are removed first; a file of the same name is replaced.
pub fn write_drag_file(
    generated: &Generated,
    dir: &Path,
    tempo: f64,
    time_signature: TimeSignature,
    channel: u8,
    track_name: &str,
) -> Result<PathBuf, String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))?;
    remove_old_files(dir, MAX_AGE);
    let bytes = crate::export::smf_bytes(generated, tempo, time_signature, channel, track_name)?;
    let path = dir.join(drag_file_name(generated));
    // Write then rename: a target still reading an earlier file of that name keeps its copy.
    let tmp = path.with_extension("mid.part");
    std::fs::write(&tmp, bytes).map_err(|e| format!("could not write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, &path).map_err(|e| format!("could not write {}: {e}", path.display()))?;
    Ok(path)
}

/// The X11 window id behind a raw window handle (Xlib or XCB); `None` elsewhere.
pub fn x11_window_id(handle: raw_window_handle::RawWindowHandle) -> Option<u32> {
    match handle {
        raw_window_handle::RawWindowHandle::Xlib(h) => u32::try_from(h.window).ok(),
        raw_window_handle::RawWindowHandle::Xcb(h) => Some(h.window.get()),
        _ => None,
    }
}

/// What the editor shows about the last drag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DragState {
    Dragging,
    Done(String),
    Failed(String),
}

/// Starts the drag on its own thread (the call blocks until the drop) and records the result in
/// `state`. `window` is the editor's X11 window id (0 when unknown: the root window is used).
pub fn spawn_drag(window: u32, path: PathBuf, state: Arc<Mutex<Option<DragState>>>) {
    *state.lock() = Some(DragState::Dragging);
    let spawned = std::thread::Builder::new()
        .name("smdim-drag".into())
        .spawn({
            let state = state.clone();
            move || {
                let result = match start_file_drag(window, &path) {
                    Ok(DragOutcome::Dropped { .. }) => {
                        DragState::Done(format!("Dropped {}", path.display()))
                    }
                    Ok(DragOutcome::Refused) => DragState::Done("Drop refused".into()),
                    Ok(DragOutcome::Cancelled) => DragState::Done("Drag cancelled".into()),
                    Ok(DragOutcome::TimedOut) => DragState::Failed("drag timed out".into()),
                    Err(e) => DragState::Failed(e.to_string()),
                };
                *state.lock() = Some(result);
            }
        });
    if let Err(e) = spawned {
        *state.lock() = Some(DragState::Failed(format!("could not start the drag: {e}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smdim_engine::midi_file::read_smf;
    use smdim_engine::phrase::{Note, Phrase};
    use smdim_inference::{GenerationSettings, Provider};

    /// The per-user cache folder of the platform (Wine runs the Windows case in CI).
    #[test]
    fn the_drag_folder_is_the_platform_cache() {
        let dir = drag_dir();
        assert!(dir.is_absolute(), "{}", dir.display());
        assert!(dir.ends_with(Path::new("smdim").join("drag")));
        #[cfg(windows)]
        {
            let local = std::env::var_os("LOCALAPPDATA").expect("LOCALAPPDATA");
            assert!(dir.starts_with(local), "{}", dir.display());
        }
        #[cfg(target_os = "linux")]
        if let Some(cache) =
            std::env::var_os("XDG_CACHE_HOME").filter(|c| Path::new(c).is_absolute())
        {
            assert!(dir.starts_with(cache));
        }
    }

    fn generated() -> Generated {
        let mut phrase = Phrase::empty(TimeSignature::FOUR_FOUR, 2);
        phrase.notes.push(Note {
            start: 960,
            length: 480,
            pitch: 62,
            velocity: 90,
        });
        Generated {
            phrase,
            tokens: vec![],
            settings: GenerationSettings {
                key: smdim_engine::Key::parse("F#-dorian"),
                seed: 42,
                ..GenerationSettings::default()
            },
            steps: 1,
            provider: Provider::Cpu,
            elapsed: Duration::ZERO,
            denoiser_calls: 1,
            order: Default::default(),
            tonal_focus: 0.0,
            edit: None,
        }
    }

    #[test]
    fn drag_file_has_key_bars_seed_tempo_meter_and_old_files_go_later() {
        let dir = std::env::temp_dir().join(format!("smdim-dragfile-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let old = dir.join("smdim-old.mid");
        std::fs::write(&old, b"x").unwrap();
        let day_ago = SystemTime::now() - MAX_AGE - Duration::from_secs(60);
        std::fs::File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(day_ago)
            .unwrap();
        let fresh = dir.join("smdim-fresh.mid");
        std::fs::write(&fresh, b"x").unwrap();

        let ts = TimeSignature::new(3, 4).unwrap();
        let path = write_drag_file(&generated(), &dir, 97.0, ts, 0, "SMDIM lead").unwrap();
        assert_eq!(
            path.file_name().unwrap(),
            "smdim-Fsharp-dorian-2bars-seed42.mid"
        );
        assert!(
            !old.exists(),
            "files older than a day are removed on the next drag"
        );
        assert!(fresh.exists(), "recent drag files stay");
        let read = read_smf(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(read.phrase.notes, generated().phrase.notes);
        assert_eq!(read.phrase.time_signature, ts);
        assert!((read.tempo_map[0].1 - 97.0).abs() < 0.01);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn drag_dir_follows_xdg_cache_home() {
        // Only reads the environment; the process-wide variable is not changed here.
        let dir = drag_dir();
        assert!(dir.ends_with("smdim/drag"), "{}", dir.display());
    }
}
