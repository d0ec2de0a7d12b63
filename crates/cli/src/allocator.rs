//! How the process's allocator treats the model's large, short-lived buffers.
//!
//! A forward pass allocates activations of megabytes each (a batch's projections, attention
//! scores, 200 MB of logits at 8 × 128 tokens) and frees them a layer later. glibc's malloc gives
//! such blocks back to the kernel as soon as they are freed — blocks over its mmap threshold are
//! unmapped, and the top of the heap is trimmed past 128 KiB — so the next layer faults the same
//! memory in again, a page at a time, each page cleared by the kernel. A profile of the batch-8
//! forward had 15 % in page faults, page clearing and unmapping
//! (`reports/inference/README.md`). Raising both thresholds keeps freed blocks in the heap for
//! the next layer: the peak resident memory stays what the largest live set needs, and the
//! forward ran ≈ 20 % faster.
//!
//! Only for glibc (other allocators and targets keep their defaults), and only when the user set
//! none of glibc's own malloc settings, which then win.

/// Blocks above this size are still mapped on their own: glibc's largest default (its adaptive
/// threshold stops growing here), so the blocks a forward frees layer after layer are kept. A
/// 1 GiB threshold, which also keeps a scoring batch's 200 MB of logits in the heap, measured
/// no faster on the forward and left a bf16 training step 750 MB above its peak (3.3 → 4.1 GB
/// RSS): its freed 50–110 MB blocks fragmented the heap.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const MMAP_THRESHOLD: libc::c_int = 32 << 20;
/// Free memory at the top of the heap is returned to the kernel only past this much.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
const TRIM_THRESHOLD: libc::c_int = 256 << 20;

/// Keeps freed large blocks for reuse (see the module docs). Call once, first thing in `main`,
/// before any thread starts.
pub fn keep_freed_buffers() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let user_set = std::env::vars_os().any(|(name, _)| {
            let name = name.to_string_lossy();
            name == "GLIBC_TUNABLES" || name.starts_with("MALLOC_")
        });
        if user_set {
            return;
        }
        // Setting one threshold turns off glibc's adaptive mmap threshold, so both are set: with
        // only one, every block over 128 KiB would be mapped and unmapped (measured 2× slower).
        // SAFETY: `mallopt` only changes the allocator's parameters; called before other threads
        // exist, and a refused value leaves the default in place (return value 0), which is safe.
        // The trim threshold only where the mmap threshold was taken: alone it would pin the
        // mmap threshold at its 128 KiB default.
        #[allow(unsafe_code)]
        unsafe {
            if libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 {
                libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
            }
        }
    }
}

/// Gives the heap's free memory back to the kernel (glibc's `malloc_trim`), so a measurement
/// that follows starts from what is live, not from what an earlier one left cached. Elsewhere,
/// nothing.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns free heap pages to the kernel; no live allocation moves.
    #[allow(unsafe_code)]
    unsafe {
        libc::malloc_trim(0);
    }
}
