//! `cargo xtask <command>`: build chores that need more than cargo.
//!
//! - `demo`: build the `smdim` CLI in release and run the main job.
//!
//! `fetch-ort` and `build-ops` (inference engine) and `bundle`/`install` (plugin) arrive with
//! the issues that need them.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn run(command: &mut Command) -> Result<()> {
    let status = command
        .status()
        .with_context(|| format!("starting {command:?}"))?;
    if !status.success() {
        bail!("{command:?} failed: {status}");
    }
    Ok(())
}

fn demo(root: &Path) -> Result<()> {
    run(Command::new(env!("CARGO")).current_dir(root).args([
        "build",
        "--release",
        "-p",
        "smdim-cli",
    ]))?;
    let smdim = root.join("target/release/smdim");
    let out_dir = root.join("target/demo");
    std::fs::create_dir_all(&out_dir)?;
    let mid = out_dir.join("jig.mid");
    run(Command::new(&smdim)
        .arg("tokens-to-midi")
        .arg(root.join("vocab/golden/jig_6_8.json"))
        .arg("--out")
        .arg(&mid))?;
    run(Command::new(&smdim).arg("midi-info").arg(&mid))
}

fn main() -> Result<()> {
    let root = workspace_root();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(&root),
        None | Some("help") | Some("--help") => {
            println!("usage: cargo xtask <command>\n\ncommands:\n  demo    build the smdim CLI and run the main job\n  help    this text");
            Ok(())
        }
        Some(other) => bail!("unknown xtask command {other:?}; run `cargo xtask help`"),
    }
}
