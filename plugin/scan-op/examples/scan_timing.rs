//! CPU time of the scan kernel per (step × state) element, robust to a busy machine: on Linux
//! it reads this thread's on-CPU time from /proc/thread-self/schedstat (wall time elsewhere).
//! `cargo run --release -p smdim-scan-op --example scan_timing [D] [N] [L] [reps]`

use std::time::Instant;

use smdim_scan_op::testing::{inputs, Rng};
use smdim_scan_op::{selective_scan, selective_scan_reference, ScanDims, ScanInputs};

fn cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

fn time(mut f: impl FnMut(), reps: usize) -> (f64, f64) {
    f();
    let (c0, w0) = (cpu_ns(), Instant::now());
    for _ in 0..reps {
        f();
    }
    let wall = w0.elapsed().as_secs_f64() / reps as f64;
    let cpu = match (c0, cpu_ns()) {
        (Some(a), Some(b)) => (b - a) as f64 * 1e-9 / reps as f64,
        _ => wall,
    };
    (cpu, wall)
}

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("number"))
        .collect();
    let arg = |i: usize, d: usize| args.get(i).copied().unwrap_or(d);
    let dims = ScanDims::new(1, arg(0, 512), arg(1, 16), arg(2, 2048));
    let reps = arg(3, 20);
    let inp = inputs(&mut Rng(42), dims);
    let scan = ScanInputs::new(&inp, dims);
    let mut y = vec![0.0f32; dims.x_len().unwrap()];
    let elems = (dims.x_len().unwrap() * dims.state) as f64;
    let (kc, kw) = time(|| selective_scan(&scan, &mut y).unwrap(), reps);
    let (rc, rw) = time(
        || selective_scan_reference(&scan, &mut y).unwrap(),
        reps.div_ceil(5),
    );
    println!("{dims:?}");
    println!(
        "kernel:    {:8.3} ms CPU ({:8.3} ms wall), {:.3} ns/element",
        kc * 1e3,
        kw * 1e3,
        kc * 1e9 / elems
    );
    println!(
        "reference: {:8.3} ms CPU ({:8.3} ms wall), {:.3} ns/element, kernel is {:.1}x faster",
        rc * 1e3,
        rw * 1e3,
        rc * 1e9 / elems,
        rc / kc
    );
}
