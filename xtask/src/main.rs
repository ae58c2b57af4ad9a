//! `cargo xtask <command>`: build chores that need more than cargo.
//!
//! Commands arrive with the issues that need them: `fetch-ort` and `build-ops` (inference
//! engine), `bundle` and `install` (plugin).

use anyhow::{bail, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None | Some("help") | Some("--help") => {
            println!("usage: cargo xtask <command>\n\ncommands:\n  help    this text");
            Ok(())
        }
        Some(other) => bail!("unknown xtask command {other:?}; run `cargo xtask help`"),
    }
}
