//! The CUDA scan kernel on a real GPU, for the device machine: max error against the CPU
//! reference and the kernel's time (CUDA events, median of 20) next to our CPU kernel on all
//! cores, on the shapes the models use. Prints a Markdown table; exits 1 if the driver is
//! missing or an error exceeds 1e-4.
//! `cargo run --release -p smdim-scan-op --example cuda_scan_check`

use std::time::Instant;

use smdim_scan_op::cuda::standalone;
use smdim_scan_op::testing::{inputs, max_scaled_err, Rng};
use smdim_scan_op::{selective_scan_reference, selective_scan_threaded, ScanDims, ScanInputs};

fn main() {
    let device = match standalone::device_name() {
        Ok(name) => name,
        Err(e) => {
            eprintln!("no GPU: {e}");
            std::process::exit(1);
        }
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!("GPU: {device}; CPU kernel on {threads} threads\n");
    println!("| B | D | N | L | max scaled error | GPU kernel ms | CPU kernel ms | CPU/GPU |");
    println!("|---|---|---|---|---|---|---|---|");
    let mut worst = 0.0f32;
    for dims in [
        ScanDims::new(1, 256, 16, 512),
        ScanDims::new(1, 256, 16, 2048),
        ScanDims::new(1, 512, 16, 2048),
        ScanDims::new(8, 256, 16, 1024),
        ScanDims::new(1, 512, 16, 8192),
        ScanDims::new(3, 17, 7, 1531),
    ] {
        let inp = inputs(&mut Rng(dims.len as u64), dims);
        let scan = ScanInputs::new(&inp, dims);
        let (got, gpu_ms) = match standalone::scan(&scan, 20) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("{dims:?}: {e}");
                std::process::exit(1);
            }
        };
        let mut want = vec![0.0; dims.x_len().unwrap()];
        selective_scan_reference(&scan, &mut want).unwrap();
        let err = max_scaled_err(&got, &want);
        worst = worst.max(err);
        let mut y = vec![0.0; want.len()];
        let mut cpu = Vec::new();
        for _ in 0..5 {
            let t = Instant::now();
            selective_scan_threaded(&scan, &mut y, threads).unwrap();
            cpu.push(t.elapsed().as_secs_f64() * 1e3);
        }
        cpu.sort_by(f64::total_cmp);
        let cpu_ms = cpu[cpu.len() / 2];
        println!(
            "| {} | {} | {} | {} | {err:.1e} | {gpu_ms:.3} | {cpu_ms:.3} | {:.1}x |",
            dims.batch,
            dims.channels,
            dims.state,
            dims.len,
            cpu_ms / gpu_ms
        );
    }
    if worst > 1e-4 {
        eprintln!("max scaled error {worst} > 1e-4");
        std::process::exit(1);
    }
}
