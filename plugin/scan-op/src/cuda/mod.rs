//! The CUDA twin of `smdim::SelectiveScan`: same name and domain, registered for ONNX Runtime's
//! `CUDAExecutionProvider`, so a CUDA session keeps the scan on the GPU (no copies to the host)
//! while a CPU session keeps using the CPU kernel.
//!
//! The kernel (`cuda/selective_scan.cu`) is compiled by `cargo xtask build-ops` into a fatbin
//! that this crate embeds; at run time the CUDA driver (`libcuda`, loaded dynamically through
//! cudarc, so nothing links against CUDA) loads it into ONNX Runtime's context once per context
//! and launches it on ONNX Runtime's compute stream. Every failure is an `ort` error; no panic
//! crosses into ONNX Runtime (cudarc panics when a driver symbol is missing: that is caught).

pub mod fatbin;

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::ops::RangeInclusive;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use cudarc::driver::{result as cu, sys};
use ort::operator::{
    ComputeContext, Kernel, KernelContext, Operator, OperatorInput, OperatorOutput,
    ShapeInferenceContext,
};
use ort::value::TensorElementType;
use ort::AsPointer;

use crate::op::{dims_from_shapes, guard, shape_of, INPUTS};
use crate::{ScanDims, ScanInputs, DOMAIN, OP_NAME};

/// ONNX Runtime's name for the CUDA execution provider.
pub const CUDA_EXECUTION_PROVIDER: &str = "CUDAExecutionProvider";

/// The kernel's entry point in the fatbin.
pub const KERNEL_NAME: &str = "smdim_selective_scan_fwd";

/// Threads per block; must equal `SMDIM_THREADS` in the .cu file.
const THREADS: u32 = 128;

/// Largest dynamic shared memory a launch may ask for without opting in (48 KiB).
const MAX_SHARED_BYTES: usize = 48 * 1024;

static EMBEDDED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/selective_scan.fatbin"));

/// The embedded fatbin, or `None` when this build was made without `cargo xtask build-ops`.
pub fn kernel_image() -> Option<&'static [u8]> {
    (!EMBEDDED.is_empty()).then_some(EMBEDDED)
}

static KERNELS_CREATED: AtomicU64 = AtomicU64::new(0);

/// How many times ONNX Runtime has asked for a CUDA-twin kernel in this process (one per node of
/// a session on the CUDA provider, refused ones included); zero when every session ran on the
/// CPU.
pub fn kernels_created() -> u64 {
    KERNELS_CREATED.load(Ordering::Relaxed)
}

/// The CUDA twin of [`crate::SelectiveScan`].
#[derive(Clone, Copy, Debug, Default)]
pub struct SelectiveScanCuda;

/// Per-node kernel; the loaded function lives in the per-context cache.
#[derive(Debug)]
pub struct SelectiveScanCudaKernel;

impl Operator for SelectiveScanCuda {
    type Kernel<'attr> = SelectiveScanCudaKernel;

    fn name(&self) -> &str {
        OP_NAME
    }

    fn versions(&self) -> RangeInclusive<u32> {
        1..=i32::MAX as u32
    }

    fn execution_provider_type(&self) -> Option<&str> {
        Some(CUDA_EXECUTION_PROVIDER)
    }

    fn inputs(&self) -> impl IntoIterator<Item = OperatorInput> {
        INPUTS.map(|_| OperatorInput::required(TensorElementType::Float32))
    }

    fn outputs(&self) -> impl IntoIterator<Item = OperatorOutput> {
        [OperatorOutput::required(TensorElementType::Float32)]
    }

    fn create_kernel<'attr>(&self, _: &KernelContext<'attr>) -> ort::Result<Self::Kernel<'attr>> {
        guard("CUDA kernel creation", || {
            KERNELS_CREATED.fetch_add(1, Ordering::Relaxed);
            if kernel_image().is_none() {
                return Err(ort::Error::new(format!(
                    "{DOMAIN}::{OP_NAME}: this build has no CUDA kernel (run `cargo xtask \
                     build-ops` before building)"
                )));
            }
            driver_ready().map_err(ort::Error::new)?;
            // Refusing here fails the session build, so the provider chain falls back with this
            // reason instead of failing every generation at launch.
            check_device().map_err(ort::Error::new)?;
            Ok(SelectiveScanCudaKernel)
        })
    }

    fn infer_shape(&self, ctx: &mut ShapeInferenceContext) -> ort::Result<()> {
        crate::op::infer_output_like_x(ctx)
    }
}

impl Kernel for SelectiveScanCudaKernel {
    fn compute(&mut self, ctx: &ComputeContext) -> ort::Result<()> {
        guard("CUDA kernel", || compute(ctx))
    }
}

fn driver_error(what: &str, e: cu::DriverError) -> String {
    let name = e
        .error_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    format!("{DOMAIN}::{OP_NAME} (CUDA): {what}: {name}")
}

/// Loads and initialises the CUDA driver once per process.
pub fn driver_ready() -> Result<(), String> {
    static READY: OnceLock<Result<(), String>> = OnceLock::new();
    READY
        .get_or_init(|| {
            std::panic::catch_unwind(|| {
                // SAFETY: only tries to dlopen the driver library.
                if !unsafe { sys::is_culib_present() } {
                    return Err(
                        "the CUDA driver library (libcuda.so.1 / nvcuda.dll) is not installed"
                            .into(),
                    );
                }
                cu::init().map_err(|e| driver_error("cuInit", e))
            })
            .unwrap_or_else(|_| {
                Err("the CUDA driver library lacks a function we need (driver too old?)".into())
            })
        })
        .clone()
}

/// The oldest GPU generation the fatbin has code for (its PTX JIT-compiles only forward).
pub const MIN_COMPUTE_CAPABILITY: (i32, i32) = (8, 0);

/// Checks that the GPU ONNX Runtime uses (the current context's, else device 0) can run the
/// embedded kernel.
fn check_device() -> Result<(), String> {
    let device = match cu::ctx::get_current().map_err(|e| driver_error("cuCtxGetCurrent", e))? {
        Some(_) => {
            let mut device: sys::CUdevice = 0;
            // SAFETY: a context is current; the out-pointer is valid.
            unsafe { sys::cuCtxGetDevice(&mut device) }
                .result()
                .map_err(|e| driver_error("cuCtxGetDevice", e))?;
            device
        }
        None => cu::device::get(0).map_err(|e| driver_error("cuDeviceGet", e))?,
    };
    use sys::CUdevice_attribute::*;
    // SAFETY: `device` came from the driver.
    let (major, minor) = unsafe {
        (
            cu::device::get_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR),
            cu::device::get_attribute(device, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR),
        )
    };
    let major = major.map_err(|e| driver_error("cuDeviceGetAttribute", e))?;
    let minor = minor.map_err(|e| driver_error("cuDeviceGetAttribute", e))?;
    if (major, minor) < MIN_COMPUTE_CAPABILITY {
        return Err(format!(
            "{DOMAIN}::{OP_NAME} (CUDA): this GPU is sm_{major}{minor}; the kernel needs sm_80 \
             (Ampere) or newer"
        ));
    }
    Ok(())
}

/// The kernel function per CUDA context (a module must be loaded into each context it runs in).
static FUNCTIONS: Mutex<BTreeMap<usize, usize>> = Mutex::new(BTreeMap::new());

/// The context ONNX Runtime's thread runs in; the primary context of `pointer`'s device when
/// none is current yet (the runtime API makes it current lazily).
fn current_context(pointer: sys::CUdeviceptr) -> Result<sys::CUcontext, String> {
    if let Some(ctx) = cu::ctx::get_current().map_err(|e| driver_error("cuCtxGetCurrent", e))? {
        return Ok(ctx);
    }
    let mut ordinal: i32 = 0;
    // SAFETY: `pointer` is a device allocation ONNX Runtime handed us; the out-pointer is valid.
    unsafe {
        sys::cuPointerGetAttribute(
            (&mut ordinal as *mut i32).cast(),
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            pointer,
        )
    }
    .result()
    .map_err(|e| driver_error("cuPointerGetAttribute (is the input on the GPU?)", e))?;
    let device = cu::device::get(ordinal).map_err(|e| driver_error("cuDeviceGet", e))?;
    // SAFETY: retaining and making current the device's primary context, as the runtime does.
    unsafe {
        let ctx = cu::primary_ctx::retain(device)
            .map_err(|e| driver_error("cuDevicePrimaryCtxRetain", e))?;
        cu::ctx::set_current(ctx).map_err(|e| driver_error("cuCtxSetCurrent", e))?;
        Ok(ctx)
    }
}

fn function_for(ctx: sys::CUcontext) -> Result<sys::CUfunction, String> {
    let mut map = FUNCTIONS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(&f) = map.get(&(ctx as usize)) {
        return Ok(f as sys::CUfunction);
    }
    let image = kernel_image().ok_or("no CUDA kernel in this build")?;
    // The driver reads the image while loading; keep an aligned copy alive until then.
    let aligned: Vec<u64> = image
        .chunks(8)
        .map(|c| {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(b)
        })
        .collect();
    // SAFETY: `aligned` holds a complete fatbin (checked by the tests) and outlives the call;
    // the module stays loaded for the life of the context (never unloaded: the function handle
    // is cached).
    unsafe {
        let module = cu::module::load_data(aligned.as_ptr().cast())
            .map_err(|e| driver_error("cuModuleLoadData (no code for this GPU?)", e))?;
        let name = std::ffi::CString::new(KERNEL_NAME).expect("no NUL");
        let f = cu::module::get_function(module, name)
            .map_err(|e| driver_error("cuModuleGetFunction", e))?;
        map.insert(ctx as usize, f as usize);
        Ok(f)
    }
}

/// Launch geometry, checked against the kernel's limits.
pub fn launch_shape(dims: ScanDims) -> Result<((u32, u32, u32), u32), String> {
    let err = |what: &str| format!("{DOMAIN}::{OP_NAME} (CUDA): {what} ({dims:?})");
    let channels = u32::try_from(dims.channels).map_err(|_| err("too many channels"))?;
    let batch = u32::try_from(dims.batch)
        .ok()
        .filter(|&b| b <= 65_535)
        .ok_or_else(|| err("batch above 65,535"))?;
    if i32::try_from(dims.len).is_err() || i32::try_from(dims.channels).is_err() {
        return Err(err("sequence or channels above 2^31"));
    }
    let shared = dims.state.checked_mul(4).filter(|&s| s <= MAX_SHARED_BYTES);
    let shared = shared.ok_or_else(|| err("state size above 12,288"))?;
    Ok(((channels, batch, 1), shared as u32))
}

fn data_pointer(value: &impl AsPointer<Sys = ort::sys::OrtValue>) -> ort::Result<sys::CUdeviceptr> {
    let mut data: *mut c_void = std::ptr::null_mut();
    // SAFETY: `value` is a live tensor owned by the kernel context.
    let status = unsafe { (ort::api().GetTensorMutableData)(value.ptr().cast_mut(), &mut data) };
    if !status.0.is_null() {
        // SAFETY: a non-null status from ONNX Runtime; read its message, then release it.
        let message = unsafe {
            let text = std::ffi::CStr::from_ptr((ort::api().GetErrorMessage)(status.0))
                .to_string_lossy()
                .into_owned();
            (ort::api().ReleaseStatus)(status.0);
            text
        };
        return Err(ort::Error::new(format!("{DOMAIN}::{OP_NAME}: {message}")));
    }
    Ok(data as sys::CUdeviceptr)
}

fn compute(ctx: &ComputeContext) -> ort::Result<()> {
    let n_inputs = ctx.num_inputs()?;
    if n_inputs != INPUTS.len() {
        return Err(ort::Error::new(format!(
            "{DOMAIN}::{OP_NAME}: expected 6 inputs (x, delta, A, B, C, D), got {n_inputs}"
        )));
    }
    let mut shapes: [Vec<i64>; 6] = Default::default();
    let mut pointers = [0 as sys::CUdeviceptr; 7];
    for (i, name) in INPUTS.iter().enumerate() {
        let v = ctx.input(i)?.ok_or_else(|| {
            ort::Error::new(format!("{DOMAIN}::{OP_NAME}: input `{name}` is missing"))
        })?;
        shapes[i] = shape_of(name, v.dtype())?;
        pointers[i] = data_pointer(&*v)?;
    }
    let dims = dims_from_shapes(&shapes)?;
    let out = ctx
        .output(0, shapes[0].clone())?
        .ok_or_else(|| ort::Error::new(format!("{DOMAIN}::{OP_NAME}: no output")))?;
    pointers[6] = data_pointer(&*out)?;
    if dims.batch == 0 || dims.channels == 0 || dims.len == 0 {
        return Ok(());
    }
    let shape = launch_shape(dims).map_err(ort::Error::new)?;
    let context = current_context(pointers[0]).map_err(ort::Error::new)?;
    let function = function_for(context).map_err(ort::Error::new)?;
    let stream = ctx.stream()?.map_or(std::ptr::null_mut(), |s| s.as_ptr()) as sys::CUstream;
    // SAFETY: every pointer is a live ONNX Runtime tensor of the checked size, and the launch is
    // ordered on ONNX Runtime's own stream, which it synchronises before reading `y`.
    unsafe { launch(function, dims, shape, pointers, stream) }
        .map_err(|e| ort::Error::new(driver_error("cuLaunchKernel", e)))
}

/// Launches the kernel on `stream` with the geometry from [`launch_shape`]. `pointers` are x,
/// delta, A, B, C, D and y.
///
/// # Safety
/// The pointers must be device allocations of `dims`' sizes in the current context.
unsafe fn launch(
    function: sys::CUfunction,
    dims: ScanDims,
    (grid, shared): ((u32, u32, u32), u32),
    mut pointers: [sys::CUdeviceptr; 7],
    stream: sys::CUstream,
) -> Result<(), cu::DriverError> {
    let (mut channels, mut state, mut len) =
        (dims.channels as i32, dims.state as i32, dims.len as i32);
    // The kernel's signature: seven device pointers, then three ints, each passed by address.
    let mut params: [*mut c_void; 10] = [std::ptr::null_mut(); 10];
    for (slot, pointer) in params.iter_mut().zip(pointers.iter_mut()) {
        *slot = (pointer as *mut sys::CUdeviceptr).cast();
    }
    params[7] = (&mut channels as *mut i32).cast();
    params[8] = (&mut state as *mut i32).cast();
    params[9] = (&mut len as *mut i32).cast();
    // SAFETY: `params` matches the signature and outlives the call (the driver copies them).
    unsafe { cu::launch_kernel(function, grid, (THREADS, 1, 1), shared, stream, &mut params) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn launch_limits_are_errors() {
        assert_eq!(
            launch_shape(ScanDims::new(2, 512, 16, 2048)).unwrap(),
            ((512, 2, 1), 64)
        );
        assert!(launch_shape(ScanDims::new(70_000, 1, 16, 8))
            .unwrap_err()
            .contains("batch"));
        assert!(launch_shape(ScanDims::new(1, 1, 20_000, 8))
            .unwrap_err()
            .contains("state"));
        assert!(launch_shape(ScanDims::new(1, 1, 16, 1 << 31)).is_err());
    }
}

/// Running the kernel outside ONNX Runtime on device 0 (the GPU parity test and
/// `examples/cuda_scan_check.rs`). Not used by the operator.
#[doc(hidden)]
pub mod standalone {
    use super::*;

    /// Device memory freed on drop.
    struct DeviceBuffer(sys::CUdeviceptr);

    impl Drop for DeviceBuffer {
        fn drop(&mut self) {
            // SAFETY: allocated by `cuMemAlloc` in the current context, freed once.
            let _ = unsafe { cu::free_sync(self.0) };
        }
    }

    fn upload(data: &[f32]) -> Result<DeviceBuffer, String> {
        // SAFETY: a fresh allocation of `data`'s size, filled from host memory.
        unsafe {
            let buffer = DeviceBuffer(
                cu::malloc_sync(std::mem::size_of_val(data).max(4))
                    .map_err(|e| driver_error("cuMemAlloc", e))?,
            );
            cu::memcpy_htod_sync(buffer.0, data).map_err(|e| driver_error("cuMemcpyHtoD", e))?;
            Ok(buffer)
        }
    }

    /// The GPU's name (device 0), making its primary context current on this thread.
    pub fn device_name() -> Result<String, String> {
        driver_ready()?;
        let device = cu::device::get(0).map_err(|e| driver_error("cuDeviceGet", e))?;
        // Retained once per thread (each retain is a reference the process keeps).
        if cu::ctx::get_current()
            .map_err(|e| driver_error("cuCtxGetCurrent", e))?
            .is_none()
        {
            // SAFETY: as the CUDA runtime does on first use.
            unsafe {
                let ctx = cu::primary_ctx::retain(device)
                    .map_err(|e| driver_error("cuDevicePrimaryCtxRetain", e))?;
                cu::ctx::set_current(ctx).map_err(|e| driver_error("cuCtxSetCurrent", e))?;
            }
        }
        cu::device::get_name(device).map_err(|e| driver_error("cuDeviceGetName", e))
    }

    /// Runs the scan `repeats` times on device 0; returns y and the median kernel time (ms,
    /// CUDA events, excluding transfers).
    pub fn scan(inputs: &ScanInputs<'_>, repeats: usize) -> Result<(Vec<f32>, f64), String> {
        let dims = inputs.dims;
        let mut y = vec![0.0f32; dims.x_len().ok_or("sizes overflow")?];
        inputs.check_lengths(y.len()).map_err(|e| e.to_string())?;
        device_name()?;
        let context = cu::ctx::get_current()
            .map_err(|e| driver_error("cuCtxGetCurrent", e))?
            .ok_or("no current context")?;
        let function = function_for(context)?;
        let shape = launch_shape(dims)?;
        let buffers = inputs.slices().map(upload);
        let mut ptrs = [0 as sys::CUdeviceptr; 7];
        let mut keep = Vec::new();
        for (i, buffer) in buffers.into_iter().enumerate() {
            let buffer = buffer?;
            ptrs[i] = buffer.0;
            keep.push(buffer);
        }
        let out = upload(&y)?;
        ptrs[6] = out.0;
        let mut times = Vec::with_capacity(repeats.max(1));
        // SAFETY: the buffers have `dims`' sizes; events and the launch use the default stream
        // of the current context.
        unsafe {
            let start = cu::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
                .map_err(|e| driver_error("cuEventCreate", e))?;
            let stop = cu::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT)
                .map_err(|e| driver_error("cuEventCreate", e))?;
            for _ in 0..repeats.max(1) {
                let null = std::ptr::null_mut();
                cu::event::record(start, null).map_err(|e| driver_error("cuEventRecord", e))?;
                launch(function, dims, shape, ptrs, null)
                    .map_err(|e| driver_error("cuLaunchKernel", e))?;
                cu::event::record(stop, null).map_err(|e| driver_error("cuEventRecord", e))?;
                cu::event::synchronize(stop).map_err(|e| driver_error("kernel run", e))?;
                let ms = cu::event::elapsed(start, stop)
                    .map_err(|e| driver_error("cuEventElapsedTime", e))?;
                times.push(ms as f64);
            }
            cu::memcpy_dtoh_sync(&mut y, out.0).map_err(|e| driver_error("cuMemcpyDtoH", e))?;
            let _ = cu::event::destroy(start);
            let _ = cu::event::destroy(stop);
        }
        times.sort_by(f64::total_cmp);
        Ok((y, times[times.len() / 2]))
    }
}
