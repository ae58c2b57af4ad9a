use std::process::Command;

fn smdim() -> Command {
    Command::new(env!("CARGO_BIN_EXE_smdim"))
}

fn golden_tokens(name: &str) -> String {
    let path = format!(
        "{}/../../vocab/golden/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    doc["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn tokens_to_midi_then_info_then_back_to_tokens() {
    let dir = std::env::temp_dir().join(format!("smdim-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tokens = golden_tokens("waltz_3_4");
    let input = dir.join("waltz.txt");
    std::fs::write(&input, &tokens).unwrap();
    let mid = dir.join("waltz.mid");

    let out = smdim()
        .args(["tokens-to-midi"])
        .arg(&input)
        .arg("--out")
        .arg(&mid)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("12 notes, 4 bars of 3/4"));

    let info = smdim().arg("midi-info").arg(&mid).output().unwrap();
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(info.status.success());
    assert!(text.contains("time signature:  3/4"), "{text}");
    assert!(text.contains("notes:           12"), "{text}");

    let back = smdim().arg("midi-to-tokens").arg(&mid).output().unwrap();
    assert!(back.status.success());
    let back = String::from_utf8_lossy(&back.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert_eq!(back, tokens);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn corrupt_input_is_a_clear_error_not_a_panic() {
    let dir = std::env::temp_dir().join(format!("smdim-cli-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.mid");
    std::fs::write(&bad, b"MThd\0\0\0\x06\0\x01\0\x02\x01").unwrap();
    let out = smdim()
        .arg("midi-info")
        .arg(&bad)
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a valid MIDI file"), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let tokens = dir.join("t.txt");
    std::fs::write(&tokens, "Bar_None Banana_3").unwrap();
    let out = smdim()
        .arg("tokens-to-midi")
        .arg(&tokens)
        .args(["--out", "/dev/null"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Banana_3"));
    std::fs::remove_dir_all(&dir).unwrap();
}
