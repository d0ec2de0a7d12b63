//! Keeps the thread pool's other threads awake while the kernels call into it in quick
//! succession — on wasm threads only (the lab's threaded module).
//!
//! A decoding step makes a few hundred parallel calls (every projection, attention, the norms),
//! each worth tens to hundreds of microseconds. rayon's idle threads go to sleep almost at once
//! (their spin rounds call `std::thread::yield_now`, which does nothing on wasm), and a browser
//! takes longer to wake a worker blocked in `Atomics.wait` than such a call lasts: the calling
//! thread finished both halves of each split itself before the other thread woke, and decoding
//! ran no faster on two threads than on one. So before each parallel call the kernels make sure
//! every other thread runs [`spin`]: a rayon job that takes work from the pool's queues as it
//! appears ([`rayon::yield_now`]). How long a thread keeps spinning without finding work depends on
//! whether its caller is inside a [`Burst`] (a stretch of synchronous compute: the lab's worker
//! opens one around each poll of a request): inside, as long as work keeps coming (up to a cap of
//! 2²⁴ empty rounds); outside, 2¹⁶ rounds — a short gap, such as the worker's yield between two
//! batches — before it returns to rayon's loop and sleeps, so an idle or waiting page does not keep
//! a core busy. Measured on SmolLM2 in Chromium (2 threads): with a fixed 2¹⁸ rounds, decoding was
//! as fast as on one thread; with 2²⁴, 1.22× (forward 1.75×).
//!
//! Natively this is a no-op: the CLI runs each command on a pool thread, and the OS wakes a
//! thread in microseconds.

#[cfg(all(target_family = "wasm", has_threads))]
mod awake {
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Threads currently running [`spin`] (or about to: spawned, not yet started).
    static SPINNING: AtomicUsize = AtomicUsize::new(0);
    /// Open [`super::Burst`]s.
    pub static BURSTS: AtomicUsize = AtomicUsize::new(0);

    /// Rounds without work (each a look at the pool's queues) before a spinning thread goes back
    /// to rayon's loop: outside a burst, and the cap inside one.
    const IDLE_ROUNDS: u32 = 1 << 16;
    const IDLE_ROUNDS_IN_BURST: u32 = 1 << 24;

    pub fn keep_awake() {
        let others = rayon::current_num_threads().saturating_sub(1);
        while SPINNING.load(Ordering::Acquire) < others {
            SPINNING.fetch_add(1, Ordering::AcqRel);
            rayon::spawn(spin);
        }
    }

    fn spin() {
        // The lab's worker is the pool's thread 0 (`use_current_thread`); it may pick this job
        // up while it waits for a share of its own call. It must not spin: it has work to return to.
        if rayon::current_thread_index() == Some(0) {
            SPINNING.fetch_sub(1, Ordering::AcqRel);
            return;
        }
        let mut idle = 0;
        loop {
            let limit = if BURSTS.load(Ordering::Relaxed) > 0 { IDLE_ROUNDS_IN_BURST } else { IDLE_ROUNDS };
            if idle >= limit {
                break;
            }
            match rayon::yield_now() {
                Some(rayon::Yield::Executed) => idle = 0,
                _ => {
                    idle += 1;
                    std::hint::spin_loop();
                }
            }
        }
        SPINNING.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Before a parallel call: every other thread of the pool is awake and looking for work (wasm
/// threads), or nothing (native threads).
#[cfg(has_threads)]
#[inline]
pub(crate) fn keep_awake() {
    #[cfg(target_family = "wasm")]
    awake::keep_awake();
}

/// A stretch of synchronous compute with many parallel calls (see the module's note): while one
/// is open, the pool's other threads keep looking for work instead of going to sleep between the
/// calls. A no-op without wasm threads.
#[must_use = "the burst ends when the guard is dropped"]
pub struct Burst(());

/// Opens a [`Burst`], closed when the guard drops.
pub fn burst() -> Burst {
    #[cfg(all(target_family = "wasm", has_threads))]
    awake::BURSTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Burst(())
}

impl Drop for Burst {
    fn drop(&mut self) {
        #[cfg(all(target_family = "wasm", has_threads))]
        awake::BURSTS.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
