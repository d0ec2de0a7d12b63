//! Counting kernel launches by kernel: the figure a launch-bound GPU pass is judged by (a decode
//! step on a GPU spends its time issuing dispatches, not in them; `reports/gpu/README.md`).
//! `rosetta bench generate --device wgpu` reports the launches of one decode step with it — and,
//! with [`time_launches`], the device time each kernel took: what a launch-bound pass spends in
//! kernels against its wall time, and which kernels those are.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

use cubecl::logging::{Duration, LaunchObservation, LaunchObserver, ProfileDuration, TimingMethod, TimingRequest};

/// Launches by kernel name (paths dropped, long generics folded: `SelectKernel`,
/// `SourceKernel<Template>` — every WGSL kernel of `shaders/` —, `MatmulEntry<…>`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchCounts(pub BTreeMap<String, u64>);

impl LaunchCounts {
    pub fn total(&self) -> u64 {
        self.0.values().sum()
    }

    /// Per-kernel difference `self − earlier` (kernels launched fewer times dropped).
    pub fn since(&self, earlier: &LaunchCounts) -> LaunchCounts {
        let counts = self
            .0
            .iter()
            .filter_map(|(name, &n)| {
                let before = earlier.0.get(name).copied().unwrap_or(0);
                (n > before).then(|| (name.clone(), n - before))
            })
            .collect();
        LaunchCounts(counts)
    }
}

/// Counts the launches issued by one thread: cubecl's observer is process-wide and called on the
/// issuing thread, so other threads' work (tests running side by side in one process) is left out.
struct Counter {
    thread: ThreadId,
    counts: Mutex<BTreeMap<&'static str, u64>>,
}

impl LaunchObserver for Counter {
    fn launched(&self, kernel: &'static str) {
        if std::thread::current().id() == self.thread {
            *self.counts.lock().unwrap_or_else(PoisonError::into_inner).entry(kernel).or_default() += 1;
        }
    }
}

/// Runs `work` and counts the kernels it launches from this thread, on every device. (A burn op
/// launches its kernels on the thread that calls it.)
pub fn count_launches<R>(work: impl FnOnce() -> R) -> (R, LaunchCounts) {
    let counter = Arc::new(Counter { thread: std::thread::current().id(), counts: Mutex::default() });
    let observation = LaunchObservation::new(counter.clone());
    let result = work();
    drop(observation);
    let mut counts = BTreeMap::new();
    for (name, n) in counter.counts.lock().unwrap_or_else(PoisonError::into_inner).iter() {
        *counts.entry(readable(short_name(name))).or_default() += *n;
    }
    (result, LaunchCounts(counts))
}

/// Device time of one kernel's launches (a count and a sum; both per step once
/// [`KernelTimes::scaled`]).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct KernelTime {
    pub launches: f64,
    pub seconds: f64,
}

/// Where the launches of a piece of work spent their time, by kernel (named as in
/// [`LaunchCounts`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct KernelTimes {
    pub by_kernel: BTreeMap<String, KernelTime>,
    /// Launches timed by the device's timestamps (this and the next two: counts over all the
    /// timed work, never scaled).
    pub device_timed: u64,
    /// Launches timed on the host around a blocking submit — wgpu's fallback once its
    /// timestamp queries run out, and the only method on adapters without them: submission and
    /// sync included, so not comparable with device time.
    pub system_timed: u64,
    /// Launches whose measurement carried nothing.
    pub unmeasured: u64,
}

impl KernelTimes {
    pub fn seconds(&self) -> f64 {
        self.by_kernel.values().map(|t| t.seconds).sum()
    }

    pub fn launches(&self) -> f64 {
        self.by_kernel.values().map(|t| t.launches).sum()
    }

    /// Launches and seconds multiplied by `factor` (`1 / steps`: per step).
    pub fn scaled(&self, factor: f64) -> KernelTimes {
        let by_kernel = self
            .by_kernel
            .iter()
            .map(|(name, t)| (name.clone(), KernelTime { launches: t.launches * factor, seconds: t.seconds * factor }))
            .collect();
        KernelTimes { by_kernel, ..self.clone() }
    }

    /// Per-kernel difference `self − earlier`, kernels with no more launches dropped (the
    /// timing-method counts too, floored at zero).
    pub fn since(&self, earlier: &KernelTimes) -> KernelTimes {
        let by_kernel = self
            .by_kernel
            .iter()
            .filter_map(|(name, t)| {
                let before = earlier.by_kernel.get(name).copied().unwrap_or_default();
                (t.launches > before.launches).then(|| {
                    (name.clone(), KernelTime { launches: t.launches - before.launches, seconds: (t.seconds - before.seconds).max(0.0) })
                })
            })
            .collect();
        KernelTimes {
            by_kernel,
            device_timed: self.device_timed.saturating_sub(earlier.device_timed),
            system_timed: self.system_timed.saturating_sub(earlier.system_timed),
            unmeasured: self.unmeasured.saturating_sub(earlier.unmeasured),
        }
    }
}

/// Keeps the measurements of the launches one thread issues (see [`Counter`]).
struct Timer {
    thread: ThreadId,
    pending: Mutex<Vec<(&'static str, ProfileDuration)>>,
    timed: Mutex<Vec<(&'static str, Duration, TimingMethod)>>,
}

impl Timer {
    fn ours(&self) -> bool {
        std::thread::current().id() == self.thread
    }
}

impl LaunchObserver for Timer {
    fn launched(&self, _kernel: &'static str) {}

    // Measurements handed over unread, and read once the work is over: reading each at once would
    // wait for every kernel in turn and time a pipeline that no longer overlaps anything.
    fn timing(&self) -> TimingRequest {
        TimingRequest::Deferred
    }

    fn profiled(&self, kernel: &'static str, profile: ProfileDuration) {
        if self.ours() {
            self.pending.lock().unwrap_or_else(PoisonError::into_inner).push((kernel, profile));
        }
    }

    // What arrives here instead of `profiled` while cubecl's profiling logger reads the
    // measurements too.
    fn timed(&self, kernel: &'static str, duration: Duration, method: TimingMethod) {
        if self.ours() {
            self.timed.lock().unwrap_or_else(PoisonError::into_inner).push((kernel, duration, method));
        }
    }
}

/// Runs `work` with every launch it issues from this thread timed, and sums the measurements by
/// kernel once it is over (blocking until the device has run them). Timing costs each launch a
/// round trip to the server, so `work`'s own wall time is not the untimed pass's.
pub fn time_launches<R>(work: impl FnOnce() -> R) -> (R, KernelTimes) {
    let timer = Arc::new(Timer { thread: std::thread::current().id(), pending: Mutex::default(), timed: Mutex::default() });
    let observation = LaunchObservation::new(timer.clone());
    let result = work();
    drop(observation);
    let mut times = KernelTimes::default();
    let mut add = |kernel: &str, measured: Option<(Duration, TimingMethod)>| {
        let entry = times.by_kernel.entry(readable(short_name(kernel))).or_default();
        entry.launches += 1.0;
        match measured {
            Some((duration, method)) => {
                entry.seconds += duration.as_secs_f64();
                match method {
                    TimingMethod::Device => times.device_timed += 1,
                    TimingMethod::System => times.system_timed += 1,
                }
            }
            None => times.unmeasured += 1,
        }
    };
    let pending = std::mem::take(&mut *timer.pending.lock().unwrap_or_else(PoisonError::into_inner));
    for (kernel, profile) in pending {
        let method = profile.timing_method();
        let ticks = pollster::block_on(profile.resolve());
        add(kernel, ticks.map(|t| (t.duration(), method)));
    }
    for (kernel, duration, method) in std::mem::take(&mut *timer.timed.lock().unwrap_or_else(PoisonError::into_inner)) {
        add(kernel, Some((duration, method)));
    }
    (result, times)
}

/// Long generic arguments (burn's matmul names its whole tile configuration) folded to `<…>`.
fn readable(name: String) -> String {
    match name.find('<') {
        Some(at) if name.len() > 48 => format!("{}<…>", &name[..at]),
        _ => name,
    }
}

/// A type name without its module paths: `a::b::K<c::T>` → `K<T>`.
fn short_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(at) = rest.find("::") {
        out.push_str(&rest[..at]);
        // Drop the path segment just written: back to the last character that cannot be in one.
        let keep = out.rfind(|c: char| !(c.is_alphanumeric() || c == '_')).map_or(0, |i| i + 1);
        out.truncate(keep);
        rest = &rest[at + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::{readable, short_name};

    #[test]
    fn paths_are_dropped_inside_generics_too() {
        assert_eq!(short_name("burn_cubecl::kernel::SelectKernel"), "SelectKernel");
        assert_eq!(short_name("cubecl::SourceKernel<rosetta_kernels::wgpu::launch::Template>"), "SourceKernel<Template>");
        assert_eq!(short_name("Plain"), "Plain");
        assert_eq!(
            readable(short_name("m::MatmulEntry<m::TensorArgs, m::DynamicScalar<m::Lhs>, m::DynamicSize<m::LhsSize>>")),
            "MatmulEntry<…>"
        );
    }
}
