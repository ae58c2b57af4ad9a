//! The operator inside an ONNX Runtime session (one-node graph), 1 and 2 intra-op threads, for
//! B=1, D=512, N=16, L=512 and 2048: the kernel plus ORT's overhead and its `par_for` split.
//! Needs `cargo xtask fetch-ort` (or ORT_DYLIB_PATH). `cargo bench -p smdim-scan-op --bench op`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ort::session::Session;
use ort::value::Tensor;
use smdim_scan_op::testing::{inputs, Rng};
use smdim_scan_op::{operator_domain, ScanDims};

const MODEL: &[u8] = include_bytes!("../tests/data/selective_scan.onnx");

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("selective_scan_op");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    for threads in [1usize, 2] {
        let mut session = Session::builder(common::environment())
            .unwrap()
            .with_intra_threads(threads)
            .unwrap()
            .with_operators(operator_domain().unwrap())
            .unwrap()
            .commit_from_memory(MODEL)
            .unwrap();
        for len in [512usize, 2048] {
            let dims = ScanDims::new(1, 512, 16, len);
            let inp = inputs(&mut Rng(42), dims);
            let shapes = [
                vec![1, 512, len],
                vec![1, 512, len],
                vec![512, 16],
                vec![1, 16, len],
                vec![1, 16, len],
                vec![512],
            ];
            let t: Vec<Tensor<f32>> = inp
                .iter()
                .zip(shapes)
                .map(|(v, s)| Tensor::from_array((s, v.clone())).unwrap())
                .collect();
            let id = BenchmarkId::new(format!("ort_{threads}_threads"), len);
            group.bench_function(id, |b| {
                b.iter(|| {
                    let out = session
                        .run(ort::inputs![&t[0], &t[1], &t[2], &t[3], &t[4], &t[5]])
                        .unwrap();
                    assert_eq!(
                        out[0].try_extract_tensor::<f32>().unwrap().1.len(),
                        512 * len
                    );
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
