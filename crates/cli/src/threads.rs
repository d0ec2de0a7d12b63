//! The command runs on a thread of the compute pool, not beside it.
//!
//! Every projection, norm and attention block hands its work to rayon's pool (the kernels' task
//! sets, burn's CPU ops, gemm). Called from a thread outside the pool, each such call queues
//! the work, puts the caller to sleep and wakes it when the pool is done: two context switches
//! per call, about 9 000 calls a second when decoding, and a third thread contending for two
//! cores. A decode profile had 28 % of its time in the scheduler (`finish_task_switch`,
//! `__schedule`, `sched_yield`). Run from a pool thread, a parallel call splits its work with
//! the other workers and runs its own share in place.

/// Runs `command` on a worker of a rayon pool with rayon's default thread count
/// (`RAYON_NUM_THREADS`, else one per CPU) and returns its result. Falls back to running it here
/// if the pool cannot be built (then the kernels use rayon's global pool as before).
pub fn on_compute_pool<T: Send>(command: impl FnOnce() -> T + Send) -> T {
    // The main thread's stack size, not rayon's 2 MiB default: the command runs all of its code
    // there (parsers, the tokenizer's regexes, serde), not only the kernels' leaf tasks.
    const STACK_BYTES: usize = 8 << 20;
    match rayon::ThreadPoolBuilder::new().stack_size(STACK_BYTES).thread_name(|i| format!("rosetta-compute-{i}")).build() {
        Ok(pool) => pool.install(command),
        Err(_) => command(),
    }
}
