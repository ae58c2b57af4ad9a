//! Counts heap operations made inside [`Plugin::process`](nice_plug::prelude::Plugin::process),
//! in the shipped binary, so a host test can prove the audio path never allocates.
//!
//! The plugin's global allocator is the system allocator plus one thread-local check: while the
//! current thread is inside `process`, every allocation, reallocation and free increments a
//! counter. A host reads it through the exported C function [`smdim_process_heap_ops`]. The
//! cost outside `process` is a thread-local read per heap operation.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

struct Audited;

thread_local! {
    static IN_PROCESS: Cell<bool> = const { Cell::new(false) };
    /// This thread's share of the count (tests that run beside others).
    static THREAD_OPS: Cell<u64> = const { Cell::new(0) };
}

static PROCESS_HEAP_OPS: AtomicU64 = AtomicU64::new(0);

#[inline]
fn note() {
    // `try_with`: no panic during thread teardown; const TLS without destructor never allocates.
    if IN_PROCESS.try_with(Cell::get).unwrap_or(false) {
        PROCESS_HEAP_OPS.fetch_add(1, Ordering::Relaxed);
        let _ = THREAD_OPS.try_with(|n| n.set(n.get() + 1));
    }
}

unsafe impl GlobalAlloc for Audited {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc(layout)
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note();
        System.alloc_zeroed(layout)
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        note();
        System.dealloc(ptr, layout)
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note();
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static GLOBAL: Audited = Audited;

/// Marks the current thread as inside `process` until dropped.
pub struct ProcessScope(());

impl ProcessScope {
    #[inline]
    pub fn enter() -> ProcessScope {
        let _ = IN_PROCESS.try_with(|c| c.set(true));
        ProcessScope(())
    }
}

impl Drop for ProcessScope {
    #[inline]
    fn drop(&mut self) {
        let _ = IN_PROCESS.try_with(|c| c.set(false));
    }
}

/// Heap operations (allocations, reallocations, frees) performed inside `process` since the
/// library was loaded, by every instance in this process.
#[no_mangle]
pub extern "C" fn smdim_process_heap_ops() -> u64 {
    PROCESS_HEAP_OPS.load(Ordering::Relaxed)
}

/// Heap operations this thread performed inside `process` (unaffected by other threads).
pub fn thread_heap_ops() -> u64 {
    THREAD_OPS.try_with(Cell::get).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_only_inside_the_scope() {
        let before = smdim_process_heap_ops();
        let outside = vec![1u8; 100];
        drop(outside);
        // Other test threads may run concurrently but never enter a scope.
        assert_eq!(smdim_process_heap_ops(), before);
        {
            let _scope = ProcessScope::enter();
            let inside = std::hint::black_box(vec![1u8; 100]);
            drop(inside);
        }
        assert_eq!(smdim_process_heap_ops(), before + 2);
    }
}
