//! `RegisterCustomOps`: the C entry point ONNX Runtime calls after loading this library.
//!
//! The host passes its `OrtApiBase`; we hand its `OrtApi` to `ort` (`ort::set_api`, feature
//! `alternative-backend`), build the `smdim` operator domain once and add it to the session
//! options. The domain is leaked on purpose: ONNX Runtime keeps pointers to it in every
//! session built from those options.

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::OnceLock;

use ort::sys::{
    OrtApi, OrtApiBase, OrtErrorCode, OrtSessionOptions, OrtStatusPtr, ORT_API_VERSION,
};
use ort::AsPointer;

/// The leaked domain, as an address (raw pointers are not `Sync`).
static DOMAIN: OnceLock<Result<usize, String>> = OnceLock::new();

fn domain_ptr() -> Result<*mut ort::sys::OrtCustomOpDomain, String> {
    let addr = DOMAIN.get_or_init(|| match smdim_scan_op::operator_domain() {
        Ok(domain) => Ok(Box::leak(Box::new(domain)).ptr() as usize),
        Err(e) => Err(format!("creating the smdim operator domain: {e}")),
    });
    addr.clone().map(|a| a as *mut ort::sys::OrtCustomOpDomain)
}

unsafe fn status(api: &OrtApi, msg: &str) -> OrtStatusPtr {
    let msg = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    unsafe { (api.CreateStatus)(OrtErrorCode::ORT_FAIL, msg.as_ptr()) }
}

/// Registers `smdim::SelectiveScan` (CPU) on `options`.
///
/// # Safety
/// Called by ONNX Runtime with valid `options` and `api_base` pointers.
#[no_mangle]
pub unsafe extern "C" fn RegisterCustomOps(
    options: *mut OrtSessionOptions,
    api_base: *const OrtApiBase,
) -> OrtStatusPtr {
    if api_base.is_null() || options.is_null() {
        // Without an API there is no way to build an error status; a null status means OK, so
        // this cannot be reported better. ONNX Runtime never passes null here.
        return OrtStatusPtr(std::ptr::null_mut());
    }
    let api_ptr = unsafe { ((*api_base).GetApi)(ORT_API_VERSION) };
    if api_ptr.is_null() {
        // This runtime is older than the API version we were built for; the older API we can
        // still reach is enough to report it.
        let old = unsafe { ((*api_base).GetApi)(17) };
        if old.is_null() {
            return OrtStatusPtr(std::ptr::null_mut());
        }
        let found = unsafe { std::ffi::CStr::from_ptr(((*api_base).GetVersionString)()) };
        return unsafe {
            status(
                &*old,
                &format!(
                    "smdim custom ops need ONNX Runtime API {ORT_API_VERSION} (1.{ORT_API_VERSION}+), found {}",
                    found.to_string_lossy()
                ),
            )
        };
    }
    let api = unsafe { &*api_ptr };
    let result = catch_unwind(AssertUnwindSafe(|| -> Result<(), String> {
        // `false` means an API was set by an earlier call: the same process, the same runtime.
        let _ = ort::set_api(api.clone());
        let domain = domain_ptr()?;
        let st = unsafe { (ort::api().AddCustomOpDomain)(options, domain) };
        if st.0.is_null() {
            Ok(())
        } else {
            // Pass ONNX Runtime's own status on by re-wrapping its message.
            let msg = unsafe { std::ffi::CStr::from_ptr((api.GetErrorMessage)(st.0)) }
                .to_string_lossy()
                .into_owned();
            unsafe { (api.ReleaseStatus)(st.0) };
            Err(format!("AddCustomOpDomain: {msg}"))
        }
    }));
    match result {
        Ok(Ok(())) => OrtStatusPtr(std::ptr::null_mut()),
        Ok(Err(msg)) => unsafe { status(api, &format!("smdim RegisterCustomOps: {msg}")) },
        Err(_) => unsafe { status(api, "smdim RegisterCustomOps panicked") },
    }
}
