//! A private X server for the editor tests: Xvfb on a free display, and X command-line tools
//! run against it. Shared by `editor.rs` and `editor_drag.rs`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// Where the Generate button's centre is, in editor pixels: it is the first widget of the top
/// row (see `plugin/smdim/src/editor.rs`).
pub const GENERATE_AT: (u32, u32) = (56, 22);

pub struct Xvfb(Child);

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn start_xvfb() -> (Xvfb, String) {
    let mut child = Command::new("Xvfb")
        .args([
            "-displayfd",
            "1",
            "-screen",
            "0",
            "1024x768x24",
            "-nolisten",
            "tcp",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("Xvfb (Debian package xvfb) must be installed");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .expect("Xvfb reports its display");
    let display = format!(":{}", line.trim());
    assert!(line.trim().parse::<u32>().is_ok(), "Xvfb display {line:?}");
    (Xvfb(child), display)
}

pub fn tool(name: &str, args: &[&str], display: &str) -> Vec<u8> {
    let out = Command::new(name)
        .args(args)
        .env("DISPLAY", display)
        .output()
        .unwrap_or_else(|e| panic!("{name} (install it): {e}"));
    assert!(
        out.status.success(),
        "{name} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}
