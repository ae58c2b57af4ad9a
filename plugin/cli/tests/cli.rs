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

/// `smdim generate ARGS --tokens-out JSONL`, which must succeed: its stdout and the JSONL.
fn generate_tokens(args: &[&str], jsonl: &std::path::Path) -> (String, String) {
    let out = smdim()
        .arg("generate")
        .args(args)
        .arg("--tokens-out")
        .arg(jsonl)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (text, std::fs::read_to_string(jsonl).unwrap())
}

fn tiny_model() -> String {
    format!(
        "{}/../inference/tests/data/tiny.onnx",
        env!("CARGO_MANIFEST_DIR")
    )
}

#[test]
fn generate_writes_a_phrase() {
    let out_path = std::env::temp_dir().join(format!("smdim-gen-{}.mid", std::process::id()));
    let out = smdim()
        .args([
            "generate",
            "--bars",
            "2",
            "--density",
            "0.5",
            "--seed",
            "5",
            "--key",
            "D-minor",
            "--model",
        ])
        .arg(tiny_model())
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("provider CPU"), "{text}");
    assert!(text.contains("in 2 bars of 4/4"), "{text}");
    let info = smdim().arg("midi-info").arg(&out_path).output().unwrap();
    assert!(String::from_utf8_lossy(&info.stdout).contains("bars:            2"));
    std::fs::remove_file(&out_path).unwrap();
}

#[test]
fn missing_or_broken_runtime_library_is_a_clear_error() {
    let garbage = std::env::temp_dir().join(format!("smdim-libort-{}.so", std::process::id()));
    std::fs::write(&garbage, b"this is not a shared library").unwrap();
    for (library, expected) in [
        (
            std::path::PathBuf::from("/nonexistent/libonnxruntime.so"),
            "ONNX Runtime library not found",
        ),
        (garbage.clone(), "could not be loaded"),
    ] {
        let out = smdim()
            .args(["generate", "--bars", "1", "--out", "/dev/null", "--model"])
            .arg(tiny_model())
            .env("SMDIM_ORT_LIBRARY", &library)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(err.contains(expected), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    std::fs::remove_file(&garbage).unwrap();
}

#[test]
fn missing_model_is_a_clear_error() {
    let out = smdim()
        .args([
            "generate",
            "--out",
            "/dev/null",
            "--model",
            "/nonexistent/model.onnx",
        ])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/model.onnx"), "{err}");
}

/// The shipped card's tonal focus is the default; `--tonal-focus` overrides it and changes the
/// phrase (0 is the plain model).
#[test]
fn tonal_focus_comes_from_the_card_and_the_flag_overrides_it() {
    let shipped = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../models/smdim-default-int8.onnx"
    );
    let dir = std::env::temp_dir().join(format!("smdim-tonal-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let run = |name: &str, extra: &[&str]| {
        let mut args = vec![
            "--bars", "16", "--seed", "4", "--count", "2", "--model", shipped,
        ];
        args.extend_from_slice(extra);
        generate_tokens(&args, &dir.join(name))
    };
    let (card, card_tokens) = run("card.jsonl", &[]);
    assert_eq!(card.matches("tonal focus 1.5,").count(), 2, "{card}");
    let (plain, plain_tokens) = run("plain.jsonl", &["--tonal-focus", "0"]);
    assert_eq!(plain.matches("tonal focus 0,").count(), 2, "{plain}");
    assert_ne!(card_tokens, plain_tokens);
    let (again, again_tokens) = run("again.jsonl", &["--tonal-focus", "1.5"]);
    assert_eq!(again.matches("tonal focus 1.5,").count(), 2, "{again}");
    assert_eq!(
        again_tokens, card_tokens,
        "the flag at the card's value is the default"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn style_chorale_generates_and_the_summary_says_so() {
    let out_path = std::env::temp_dir().join(format!("smdim-chorale-{}.mid", std::process::id()));
    let out = smdim()
        .args([
            "generate",
            "--bars",
            "2",
            "--density",
            "0.5",
            "--seed",
            "5",
            "--style",
            "chorale",
            "--model",
        ])
        .arg(tiny_model())
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("style Chorale"), "{text}");
    std::fs::remove_file(&out_path).unwrap();
}

#[test]
fn unknown_style_is_an_error_listing_the_choices_and_help_lists_the_flag() {
    let out = smdim()
        .args(["generate", "--out", "/dev/null", "--style", "banana"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("banana"), "{err}");
    assert!(err.contains("any, melody or chorale"), "{err}");

    let help = smdim().args(["generate", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--style <STYLE>"), "{help}");
    assert!(help.contains("chorale"), "{help}");
    assert!(help.contains("[default: melody]"), "{help}");
}

#[test]
fn a_model_without_styles_refuses_melody_and_runs_any() {
    let nostyle = format!(
        "{}/../inference/tests/data/tiny-nostyle.onnx",
        env!("CARGO_MANIFEST_DIR")
    );
    let base = [
        "generate",
        "--bars",
        "1",
        "--density",
        "0.25",
        "--out",
        "/dev/null",
    ];
    let refused = smdim()
        .args(base)
        .args(["--model", &nostyle])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!refused.status.success(), "the default style is Melody");
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("this model has no styles: choose Any"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");

    let any = smdim()
        .args(base)
        .args(["--model", &nostyle, "--style", "any"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&any.stdout);
    assert!(
        any.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&any.stderr)
    );
    assert!(text.contains("style Any"), "{text}");
}

/// `--count N --tokens-out F`: N phrases from one model load, seeds seed..seed+N-1, one JSON
/// line each with exactly the requested bars (the plan's end marker is not in the tokens);
/// the same seed repeats its phrase, the order flag is honoured and reported.
#[test]
fn count_and_tokens_out_write_one_line_per_seed() {
    let dir = std::env::temp_dir().join(format!("smdim-count-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = tiny_model();
    let run_with = |order: &str, name: &str, extra: &[&str]| {
        let mut args = vec![
            "--bars",
            "3",
            "--seed",
            "10",
            "--count",
            "3",
            "--density",
            "0.5",
            "--order",
            order,
            "--style",
            "chorale",
            "--model",
            &model,
        ];
        args.extend_from_slice(extra);
        let (text, jsonl) = generate_tokens(&args, &dir.join(name));
        assert_eq!(text.matches(&format!("order {order}")).count(), 3, "{text}");
        let lines: Vec<serde_json::Value> = jsonl
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        lines
    };
    let run = |order: &str, name: &str| run_with(order, name, &[]);
    let random = run("random", "random.jsonl");
    // --batch: the same phrases, sampled together.
    assert_eq!(run_with("random", "batch.jsonl", &["--batch"]), random);
    assert_eq!(random.len(), 3);
    let vocab = smdim_engine::Vocabulary::remi_v1();
    for (k, line) in random.iter().enumerate() {
        assert_eq!(line["seed"], 10 + k as u64);
        let tokens: Vec<u32> = serde_json::from_value(line["tokens"].clone()).unwrap();
        assert_eq!(tokens.iter().filter(|&&t| t == vocab.bar_id()).count(), 3);
        let decoded = smdim_engine::codec::decode(vocab, &tokens);
        assert_eq!(decoded.report.skipped(), 0);
        assert_eq!(decoded.phrase.bars, 3);
    }
    assert_ne!(random[0]["tokens"], random[1]["tokens"]);
    assert_eq!(run("random", "again.jsonl"), random);
    assert_ne!(run("confidence", "confidence.jsonl"), random);
    // Nothing to write is an error, not a silent no-op.
    let out = smdim()
        .args(["generate", "--model"])
        .arg(tiny_model())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to write"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The CLI writes its output file and nothing else: no ONNX Runtime telemetry under HOME.
#[test]
fn generate_writes_nothing_outside_its_output() {
    let home = std::env::temp_dir().join(format!("smdim-cli-home-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).unwrap();
    let out_path = home.join("phrase.mid");
    let out = smdim()
        .args([
            "generate",
            "--bars",
            "1",
            "--density",
            "0.5",
            "--seed",
            "3",
            "--model",
        ])
        .arg(tiny_model())
        .arg("--out")
        .arg(&out_path)
        .env("HOME", &home)
        .env_remove("XDG_CACHE_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_STATE_HOME")
        .env_remove("ORT_DISABLE_TELEMETRY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written: Vec<_> = std::fs::read_dir(&home)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(written, vec![std::ffi::OsString::from("phrase.mid")]);
    std::fs::remove_dir_all(&home).unwrap();
}

/// Out-of-range values are usage errors naming the allowed range, before any model loads; none
/// is quietly clamped (`--bars 0` was 1 bar, `--tempo nan` 120 bpm, `--steps 0` one step).
#[test]
fn out_of_range_values_are_errors_naming_the_range() {
    let generate = |flag: &str, value: &str| {
        vec![
            "generate".to_string(),
            "--out".into(),
            "/dev/null".into(),
            format!("{flag}={value}"),
        ]
    };
    let mut cases: Vec<(Vec<String>, &str)> = vec![
        (generate("--bars", "0"), "1..=64"),
        (generate("--bars", "100000"), "1..=64"),
        (
            generate("--tempo", "0"),
            "from 4 to 1000 quarter notes per minute",
        ),
        (
            generate("--tempo", "nan"),
            "from 4 to 1000 quarter notes per minute",
        ),
        (
            generate("--tempo", "inf"),
            "from 4 to 1000 quarter notes per minute",
        ),
        (
            generate("--tempo", "1001"),
            "from 4 to 1000 quarter notes per minute",
        ),
        (
            generate("--tempo", "fast"),
            "from 4 to 1000 quarter notes per minute",
        ),
        (generate("--steps", "0"), "1..=1000"),
        (generate("--steps", "1001"), "1..=1000"),
        (generate("--count", "0"), "is not in 1.."),
        (generate("--temperature", "-1"), "from 0 to 5"),
        (generate("--temperature", "nan"), "from 0 to 5"),
        (generate("--top-p", "0"), "from 0.01 to 1"),
        (generate("--top-p", "1.5"), "from 0.01 to 1"),
        (generate("--noise", "11"), "from 0 to 10"),
        (generate("--tonal-focus", "5"), "from 0 to 4"),
        (generate("--tonal-focus", "-1"), "from 0 to 4"),
        (generate("--tonal-focus", "nan"), "from 0 to 4"),
        (
            generate("--density", "0"),
            "from 0.1 to 8 notes per quarter note",
        ),
        (
            generate("--density", "nan"),
            "from 0.1 to 8 notes per quarter note",
        ),
        (generate("--max-notes-per-onset", "0"), "1..=12"),
        (generate("--max-notes-per-onset", "13"), "1..=12"),
        (
            generate("--pitch-range", "20-200"),
            "each 0-127, lowest <= highest",
        ),
        (
            generate("--pitch-range", "90-20"),
            "each 0-127, lowest <= highest",
        ),
        (
            generate("--pitch-range", "60"),
            "each 0-127, lowest <= highest",
        ),
        (
            generate("--key", "H-minor"),
            "try D-minor, F#-dorian, Bb-major",
        ),
        (generate("--meter", "7/16"), "choose 3/8, 6/8"),
        (generate("--meter", "four"), "choose 3/8, 6/8"),
        (generate("--threads", "0"), "is not in 1.."),
        (
            generate("--provider", "banana"),
            "cpu, cuda, tensorrt or auto",
        ),
    ];
    let others: [(&[&str], &str); 4] = [
        (
            &[
                "tokens-to-midi",
                "in.txt",
                "--out",
                "/dev/null",
                "--tempo=0",
            ],
            "from 4 to 1000 quarter notes per minute",
        ),
        (
            &["bench", "--model", "m.onnx", "--threads=0"],
            "is not in 1..",
        ),
        (&["bench", "--model", "m.onnx", "--steps=0"], "1..=1000"),
        (
            &["bench", "--model", "m.onnx", "--lengths=0"],
            "is not in 1..",
        ),
    ];
    for (args, expected) in others {
        cases.push((args.iter().map(|a| a.to_string()).collect(), expected));
    }
    for (args, expected) in cases {
        let out = smdim()
            .args(&args)
            .env("RUST_BACKTRACE", "0")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?} is a usage error: {err}"
        );
        let value = args.last().unwrap().split_once('=').unwrap().1;
        assert!(
            err.contains(&format!("invalid value '{value}'")),
            "{args:?}: {err}"
        );
        assert!(
            err.contains(expected),
            "{args:?}: expected {expected:?} in {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
    }
}

/// An error's cause is printed once: the message holds it, the `Caused by:` chain does not
/// repeat it.
#[test]
fn an_error_s_cause_is_printed_once() {
    let dir = std::env::temp_dir().join(format!("smdim-cli-cause-{}", std::process::id()));
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
    assert!(err.contains("not a valid MIDI file: "), "{err}");
    assert_eq!(err.matches("invalid midi header").count(), 1, "{err}");

    let tokens = dir.join("t.txt");
    std::fs::write(&tokens, golden_tokens("waltz_3_4")).unwrap();
    let out = smdim()
        .arg("tokens-to-midi")
        .arg(&tokens)
        .args(["--out", "/nonexistent/dir/x.mid"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writing /nonexistent/dir/x.mid"), "{err}");
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Notes of a MIDI file as (start tick, length, pitch, velocity), in bars `bars`.
fn notes_of(path: &std::path::Path, bars: std::ops::Range<u32>) -> Vec<(u32, u32, u8, u8)> {
    let phrase = smdim_engine::midi_file::load_smf(path).unwrap().phrase;
    let bar = phrase.time_signature.bar_ticks();
    phrase
        .notes
        .iter()
        .filter(|n| bars.contains(&(n.start / bar)))
        .map(|n| (n.start, n.length, n.pitch, n.velocity))
        .collect()
}

fn run_ok(args: &[&str]) -> String {
    let out = smdim().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn continue_infill_and_vary_keep_what_they_keep_and_are_deterministic() {
    let dir = std::env::temp_dir().join(format!("smdim-cli-edit-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).display().to_string();
    // A source written by the model itself (on the grid, so nothing moves).
    run_ok(&[
        "generate",
        "--bars",
        "4",
        "--seed",
        "3",
        "-o",
        &file("src.mid"),
    ]);
    let src = std::path::PathBuf::from(file("src.mid"));

    let summary = run_ok(&[
        "continue",
        &file("src.mid"),
        "--keep-bars",
        "2",
        "--bars",
        "6",
        "--seed",
        "5",
        "-o",
        &file("cont.mid"),
    ]);
    assert!(summary.contains("0 moved to the grid"), "{summary}");
    let cont = dir.join("cont.mid");
    assert_eq!(
        notes_of(&cont, 0..2),
        notes_of(&src, 0..2),
        "kept bars, velocities too"
    );
    assert!(!notes_of(&cont, 2..6).is_empty(), "new bars were written");
    assert_eq!(
        smdim_engine::midi_file::load_smf(&cont)
            .unwrap()
            .phrase
            .bars,
        6
    );
    // Same flags, same seed: the same file.
    run_ok(&[
        "continue",
        &file("src.mid"),
        "--keep-bars",
        "2",
        "--bars",
        "6",
        "--seed",
        "5",
        "-o",
        &file("cont2.mid"),
    ]);
    assert_eq!(
        std::fs::read(&cont).unwrap(),
        std::fs::read(dir.join("cont2.mid")).unwrap()
    );

    run_ok(&[
        "infill",
        &file("src.mid"),
        "--bars",
        "2-3",
        "--seed",
        "5",
        "-o",
        &file("inf.mid"),
    ]);
    let inf = dir.join("inf.mid");
    assert_eq!(notes_of(&inf, 0..1), notes_of(&src, 0..1));
    assert_eq!(notes_of(&inf, 3..4), notes_of(&src, 3..4));

    run_ok(&[
        "vary",
        &file("src.mid"),
        "--strength",
        "0",
        "-o",
        &file("same.mid"),
    ]);
    assert_eq!(
        notes_of(&dir.join("same.mid"), 0..4),
        notes_of(&src, 0..4),
        "0 % is the identity"
    );

    run_ok(&[
        "vary",
        &file("src.mid"),
        "--strength",
        "1",
        "--keep-rhythm",
        "--seed",
        "2",
        "-o",
        &file("rhythm.mid"),
    ]);
    // Every onset stays (a new pitch that repeats one still sounding restarts it, so a
    // duration can come out shorter; see `Edit::Vary`).
    let rhythm = |p: &std::path::Path| {
        let mut r: Vec<u32> = notes_of(p, 0..4).iter().map(|n| n.0).collect();
        r.sort();
        r
    };
    assert_eq!(rhythm(&dir.join("rhythm.mid")), rhythm(&src));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn edits_that_do_not_fit_the_source_are_clear_errors() {
    let dir = std::env::temp_dir().join(format!("smdim-cli-edit-err-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("src.mid").display().to_string();
    run_ok(&["generate", "--bars", "4", "--seed", "1", "-o", &src]);
    let out = dir.join("x.mid").display().to_string();
    for (args, expected) in [
        (
            vec![
                "continue",
                &src,
                "--keep-bars",
                "5",
                "--bars",
                "8",
                "-o",
                &out,
            ],
            "keep 5 bars: the source has 4 bar(s)",
        ),
        (
            vec![
                "continue",
                &src,
                "--keep-bars",
                "4",
                "--bars",
                "4",
                "-o",
                &out,
            ],
            "nothing left to generate",
        ),
        (
            vec!["infill", &src, "--bars", "3-6", "-o", &out],
            "bars 3-6: the source has bars 1-4",
        ),
        (
            vec!["infill", &src, "--bars", "0-2", "-o", &out],
            "give bars as FROM-TO",
        ),
        (vec!["vary", &src, "--strength", "1.5", "-o", &out], "1.5"),
    ] {
        let result = smdim().args(&args).output().unwrap();
        assert!(!result.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            !std::path::Path::new(&out).exists(),
            "nothing written on an error"
        );
    }
    let generate_key = smdim()
        .args(["generate", "--source-key", "-o", &out])
        .output()
        .unwrap();
    assert!(!generate_key.status.success());
    assert!(String::from_utf8_lossy(&generate_key.stderr).contains("--source-key needs a source"));
    let keyed = run_ok(&[
        "continue",
        &src,
        "--keep-bars",
        "2",
        "--bars",
        "4",
        "--source-key",
        "-o",
        &out,
    ]);
    assert!(keyed.contains("source key: "), "{keyed}");
    std::fs::remove_file(&out).unwrap();
    let missing = smdim()
        .args(["vary", "/nonexistent/in.mid", "-o", &out])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/in.mid"));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Output piped into a reader that closes early (`| head -1`) ends the program quietly.
#[cfg(unix)]
#[test]
fn a_closed_pipe_is_not_a_panic() {
    use std::io::Read;
    use std::process::Stdio;
    let dir = std::env::temp_dir().join(format!("smdim-cli-pipe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("x.mid");
    let mut child = smdim()
        .args(["generate", "--bars", "2", "--count", "3", "-o"])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one byte, then close the pipe before the rest is written.
    let mut stdout = child.stdout.take().unwrap();
    let mut byte = [0u8; 1];
    stdout.read_exact(&mut byte).unwrap();
    drop(stdout);
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    child.wait().unwrap();
    assert!(!stderr.contains("panicked"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// (channels, rate, bits, left/right samples) of a PCM WAV file as `render` writes it.
fn read_wav(path: &std::path::Path) -> (u16, u32, u16, Vec<i16>) {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], b"RIFF");
    assert_eq!(&bytes[8..16], b"WAVEfmt ");
    let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
    assert_eq!(u16_at(20), 1, "PCM");
    assert_eq!(&bytes[36..40], b"data");
    let data = &bytes[44..44 + u32_at(40) as usize];
    let samples = data
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    (u16_at(22), u32_at(24), u16_at(34), samples)
}

#[test]
fn render_plays_a_midi_file_with_the_preview_voice() {
    let dir = std::env::temp_dir().join(format!("smdim-cli-render-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("waltz.txt");
    std::fs::write(&input, golden_tokens("waltz_3_4")).unwrap();
    let mid = dir.join("waltz.mid");
    let made = smdim()
        .arg("tokens-to-midi")
        .arg(&input)
        .args(["--tempo", "90", "--out"])
        .arg(&mid)
        .output()
        .unwrap();
    assert!(made.status.success());

    let render = |name: &str, extra: &[&str]| {
        let wav = dir.join(name);
        let out = smdim()
            .arg("render")
            .arg(&mid)
            .arg("-o")
            .arg(&wav)
            .args(extra)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(text.contains("12 notes"), "{text}");
        wav
    };
    let wav = render("a.wav", &["--rate", "44100"]);
    let (channels, rate, bits, samples) = read_wav(&wav);
    assert_eq!((channels, rate, bits), (2, 44_100, 16));
    // 4 bars of 3/4 at 90 bpm (8 s) and the release tail (0.45 s).
    let frames = samples.len() / 2;
    assert_eq!(frames, 8 * 44_100 + (0.45f64 * 44_100.0).ceil() as usize);
    let peak = samples.iter().map(|s| s.unsigned_abs()).max().unwrap();
    assert!(peak > 1_000, "audible: peak {peak}");
    assert!(samples[samples.len() - 2_000..].iter().all(|&s| s == 0));

    // Deterministic, and the level flag is the plugin's Preview level.
    let again = render("b.wav", &["--rate", "44100"]);
    assert_eq!(std::fs::read(&wav).unwrap(), std::fs::read(&again).unwrap());
    let quiet = render("c.wav", &["--rate", "44100", "--level", "-26"]);
    let quiet_peak = read_wav(&quiet)
        .3
        .iter()
        .map(|s| s.unsigned_abs())
        .max()
        .unwrap();
    let ratio = quiet_peak as f64 / peak as f64;
    assert!((ratio - 0.1).abs() < 0.01, "-20 dB: {ratio}");

    // Bad input: a clear error, nothing written.
    let missing = dir.join("missing.wav");
    let out = smdim()
        .arg("render")
        .arg(dir.join("nothing.mid"))
        .arg("-o")
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("reading"));
    assert!(!missing.exists());
    let out = smdim()
        .arg("render")
        .arg(&mid)
        .args(["-o", "/tmp/never.wav", "--level", "3"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be from -48 to 0 dB"));
    std::fs::remove_dir_all(&dir).unwrap();
}
