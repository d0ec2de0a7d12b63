//! Counting kernel launches by kernel: the figure a launch-bound GPU pass is judged by (a decode
//! step on a GPU spends its time issuing dispatches, not in them; `reports/gpu/README.md`).
//! `rosetta bench generate --device wgpu` reports the launches of one decode step with it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::ThreadId;

use cubecl::logging::{LaunchObservation, LaunchObserver};

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
