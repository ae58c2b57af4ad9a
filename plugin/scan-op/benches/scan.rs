//! Scan kernel vs the naive reference, B=1, D=512, N=16, L=512 and 2048 (a default-size
//! Mamba block: d_model 256, expand 2). `cargo bench -p smdim-scan-op --bench scan`.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use smdim_scan_op::testing::{inputs, Rng};
use smdim_scan_op::{
    selective_scan, selective_scan_reference, selective_scan_threaded, ScanDims, ScanInputs,
};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("selective_scan");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for len in [512usize, 2048] {
        let dims = ScanDims::new(1, 512, 16, len);
        let inp = inputs(&mut Rng(42), dims);
        let scan = ScanInputs::new(&inp, dims);
        let mut y = vec![0.0f32; dims.x_len().unwrap()];
        group.throughput(Throughput::Elements(
            (dims.x_len().unwrap() * dims.state) as u64,
        ));
        group.bench_with_input(BenchmarkId::new("kernel_1_thread", len), &len, |bch, _| {
            bch.iter(|| selective_scan(&scan, black_box(&mut y)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("kernel_2_threads", len), &len, |bch, _| {
            bch.iter(|| selective_scan_threaded(&scan, black_box(&mut y), 2).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("reference", len), &len, |bch, _| {
            bch.iter(|| selective_scan_reference(&scan, black_box(&mut y)).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
