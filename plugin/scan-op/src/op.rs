//! `smdim::SelectiveScan` as an `ort` custom operator.

use std::any::Any;
use std::ops::RangeInclusive;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ort::operator::{
    ComputeContext, Kernel, KernelContext, Operator, OperatorDomain, OperatorInput, OperatorOutput,
    ShapeInferenceContext,
};
use ort::value::{TensorElementType, ValueType};

use crate::kernel::{Isa, Prepared};
use crate::{ScanDims, ScanError, ScanInputs, DOMAIN, OP_NAME};

/// Input names, in order, as the ONNX node lists them.
pub(crate) const INPUTS: [&str; 6] = ["x", "delta", "A", "B", "C", "D"];

/// Work per thread-pool task, in (step × state) elements: large enough that the task overhead
/// vanishes, small enough to spread B·D rows over a few threads.
const TASK_WORK: usize = 1 << 15;

/// The `smdim::SelectiveScan` operator (CPU). Six `float` inputs `x, delta, A, B, C, D`, one
/// `float` output `y` with `x`'s shape.
#[derive(Clone, Copy, Debug, Default)]
pub struct SelectiveScan;

/// The kernel ONNX Runtime instantiates per node.
#[derive(Debug)]
pub struct SelectiveScanKernel {
    isa: Isa,
}

/// The `smdim` domain holding [`SelectiveScan`] and its CUDA twin
/// ([`crate::cuda::SelectiveScanCuda`]), for `SessionBuilder::with_operators`. ONNX Runtime
/// picks the twin that matches the node's execution provider. A build without the CUDA kernel
/// registers the CPU twin alone, so CUDA sessions still work (the scan runs on the CPU).
pub fn operator_domain() -> ort::Result<OperatorDomain> {
    let domain = OperatorDomain::new(DOMAIN)?.add(SelectiveScan)?;
    if crate::cuda::kernel_image().is_some() {
        domain.add(crate::cuda::SelectiveScanCuda)
    } else {
        Ok(domain)
    }
}

static CPU_RUNS: AtomicU64 = AtomicU64::new(0);

/// How many times the CPU kernel has run in this process (tests use it to see which twin ONNX
/// Runtime picked; one relaxed increment per call costs nothing next to a scan).
pub fn cpu_kernel_runs() -> u64 {
    CPU_RUNS.load(Ordering::Relaxed)
}

fn panic_message(payload: Box<dyn Any + Send>) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Runs `f`, turning a panic into an error so that no unwind reaches ONNX Runtime.
pub(crate) fn guard<T>(what: &str, f: impl FnOnce() -> ort::Result<T>) -> ort::Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(payload) => Err(ort::Error::new(format!(
            "{DOMAIN}::{OP_NAME} {what} panicked: {}",
            panic_message(payload)
        ))),
    }
}

impl Operator for SelectiveScan {
    type Kernel<'attr> = SelectiveScanKernel;

    fn name(&self) -> &str {
        OP_NAME
    }

    fn versions(&self) -> RangeInclusive<u32> {
        1..=i32::MAX as u32
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        INPUTS.map(|_| OperatorInput::required(TensorElementType::Float32))
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        Ok(SelectiveScanKernel { isa: Isa::detect() })
    }

    fn infer_shape(&self, ctx: &mut ShapeInferenceContext) -> ort::Result<()> {
        infer_output_like_x(ctx)
    }
}

/// y has x's type and shape (symbolic dimensions included).
pub(crate) fn infer_output_like_x(ctx: &mut ShapeInferenceContext) -> ort::Result<()> {
    guard("shape inference", || {
        let inputs = ctx.inputs();
        let x = inputs
            .first()
            .ok_or_else(|| ort::Error::new(format!("{DOMAIN}::{OP_NAME}: no inputs")))?;
        ctx.set_output(0, x)
    })
}

impl Kernel for SelectiveScanKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        let isa = self.isa;
        guard("kernel", || compute(ctx, isa))
    }
}

pub(crate) fn shape_of(input: &'static str, dtype: &ValueType) -> Result<Vec<i64>, ScanError> {
    match dtype {
        ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        } => Ok(shape.to_vec()),
        other => Err(ScanError::Shape {
            input,
            expected: format!("a float32 tensor, got {other}"),
            actual: Vec::new(),
        }),
    }
}

/// Reads [`ScanDims`] from the six input shapes, checking every dimension.
pub(crate) fn dims_from_shapes(shapes: &[Vec<i64>; 6]) -> Result<ScanDims, ScanError> {
    let [x, delta, a, b, c, d] = shapes;
    let bad = |input: &'static str, expected: String, actual: &Vec<i64>| ScanError::Shape {
        input,
        expected,
        actual: actual.clone(),
    };
    if x.len() != 3 || x.iter().any(|&v| v < 0) {
        return Err(bad("x", "[B, D, L]".into(), x));
    }
    if a.len() != 2 || a.iter().any(|&v| v < 0) {
        return Err(bad("A", "[D, N]".into(), a));
    }
    let (bb, dd, ll, nn) = (x[0], x[1], x[2], a[1]);
    let expect: [(&'static str, &Vec<i64>, Vec<i64>, &str); 5] = [
        ("delta", delta, vec![bb, dd, ll], "[B, D, L]"),
        ("A", a, vec![dd, nn], "[D, N]"),
        ("B", b, vec![bb, nn, ll], "[B, N, L]"),
        ("C", c, vec![bb, nn, ll], "[B, N, L]"),
        ("D", d, vec![dd], "[D]"),
    ];
    for (input, actual, want, names) in expect {
        if *actual != want {
            return Err(bad(input, format!("{names} = {want:?}"), actual));
        }
    }
    let u = |v: i64| usize::try_from(v).expect("checked non-negative");
    Ok(ScanDims::new(u(bb), u(dd), u(nn), u(ll)))
}

/// A raw pointer the thread-pool tasks share; each task writes its own disjoint rows.
#[derive(Clone, Copy)]
struct SharedOut(*mut f32);
// SAFETY: tasks write disjoint row ranges of one live buffer and the call waits for all of them.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}
impl SharedOut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

fn compute(ctx: &ComputeContext, isa: Isa) -> ort::Result<()> {
    CPU_RUNS.fetch_add(1, Ordering::Relaxed);
    let n_inputs = ctx.num_inputs()?;
    if n_inputs != INPUTS.len() {
        return Err(ort::Error::new(format!(
            "{DOMAIN}::{OP_NAME}: expected 6 inputs (x, delta, A, B, C, D), got {n_inputs}"
        )));
    }
    let mut values = Vec::with_capacity(INPUTS.len());
    for (i, name) in INPUTS.iter().enumerate() {
        let v = ctx.input(i)?.ok_or_else(|| {
            ort::Error::new(format!("{DOMAIN}::{OP_NAME}: input `{name}` is missing"))
        })?;
        values.push(v);
    }
    let mut shapes: [Vec<i64>; 6] = Default::default();
    for (i, v) in values.iter().enumerate() {
        shapes[i] = shape_of(INPUTS[i], v.dtype())?;
    }
    let dims = dims_from_shapes(&shapes)?;
    let mut data: [&[f32]; 6] = [&[]; 6];
    for (i, v) in values.iter().enumerate() {
        data[i] = v.try_extract_tensor::<f32>()?.1;
    }
    let inputs = ScanInputs::new(&data, dims);

    let mut out = ctx
        .output(0, shapes[0].clone())?
        .ok_or_else(|| ort::Error::new(format!("{DOMAIN}::{OP_NAME}: no output")))?;
    let (_, y) = out.try_extract_tensor_mut::<f32>()?;
    inputs.check_lengths(y.len())?;

    let rows = dims.batch * dims.channels;
    if rows == 0 || dims.len == 0 {
        return Ok(());
    }
    let prepared = Prepared::new(&inputs);
    let row_work = dims.len.saturating_mul(dims.state.max(1));
    let rows_per_task = (TASK_WORK / row_work.max(1)).clamp(1, rows);
    let tasks = rows.div_ceil(rows_per_task);
    if tasks == 1 {
        prepared.scan_rows(0..rows, y, isa);
        return Ok(());
    }

    let out_ptr = SharedOut(y.as_mut_ptr());
    let failed = AtomicBool::new(false);
    let len = prepared.dims().len;
    ctx.par_for(tasks, 0, |task| {
        let start = task * rows_per_task;
        let end = (start + rows_per_task).min(rows);
        if start >= end {
            return;
        }
        // SAFETY: rows [start, end) belong to this task alone and lie inside `y`
        // (end <= rows, y.len() == rows * len); `y` outlives `par_for`, which blocks.
        let ys = unsafe {
            std::slice::from_raw_parts_mut(out_ptr.get().add(start * len), (end - start) * len)
        };
        // A panic must not unwind into ONNX Runtime's thread pool (an FFI callback).
        if catch_unwind(AssertUnwindSafe(|| prepared.scan_rows(start..end, ys, isa))).is_err() {
            failed.store(true, Ordering::Relaxed);
        }
    })?;
    if failed.load(Ordering::Relaxed) {
        return Err(ort::Error::new(format!(
            "{DOMAIN}::{OP_NAME}: a worker task panicked"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(b: i64, d: i64, n: i64, l: i64) -> [Vec<i64>; 6] {
        [
            vec![b, d, l],
            vec![b, d, l],
            vec![d, n],
            vec![b, n, l],
            vec![b, n, l],
            vec![d],
        ]
    }

    #[test]
    fn dims_from_good_shapes() {
        assert_eq!(
            dims_from_shapes(&shapes(2, 5, 16, 7)).unwrap(),
            ScanDims::new(2, 5, 16, 7)
        );
        assert_eq!(
            dims_from_shapes(&shapes(1, 1, 1, 0)).unwrap(),
            ScanDims::new(1, 1, 1, 0)
        );
    }

    #[test]
    fn every_mismatch_is_named() {
        let cases: [(usize, Vec<i64>, &str); 8] = [
            (0, vec![2, 5], "x"),
            (0, vec![2, 5, -1], "x"),
            (1, vec![2, 5, 8], "delta"),
            (2, vec![5, 16, 1], "A"),
            (2, vec![4, 16], "A"),
            (3, vec![2, 15, 7], "B"),
            (4, vec![1, 16, 7], "C"),
            (5, vec![6], "D"),
        ];
        for (idx, shape, name) in cases {
            let mut s = shapes(2, 5, 16, 7);
            s[idx] = shape.clone();
            match dims_from_shapes(&s) {
                Err(ScanError::Shape { input, actual, .. }) => {
                    assert_eq!(input, name, "{shape:?}");
                    assert_eq!(actual, shape);
                }
                other => panic!("{name} {shape:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn guard_turns_panics_into_errors() {
        // ort::Error lives in ONNX Runtime (an OrtStatus): this needs the library.
        crate::test_common::environment();
        let r: ort::Result<()> = guard("test", || panic!("boom {}", 7));
        let msg = r.unwrap_err().to_string();
        assert!(msg.contains("boom 7"), "{msg}");
        assert_eq!(guard("test", || Ok(3)).unwrap(), 3);
    }
}
