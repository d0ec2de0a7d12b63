//! Function multiversioning for the element-wise loops of the CPU kernels. The release build
//! targets baseline x86-64 (SSE2) so that one binary runs on any x86-64 machine; a loop the
//! compiler vectorises then uses 4-wide SSE. [`vectorized!`] compiles the same body twice more,
//! for AVX-512 and for AVX2 + FMA, and picks one at run time (the CPU's features are checked once,
//! `level`). The body is one Rust function: every variant computes the same values, bit for
//! bit (Rust never contracts `a * b + c` into an FMA on its own), so results do not depend on
//! the CPU.

/// `vectorized! { /// docs \n pub fn name(a: A, b: B) -> R { body } }` defines `name` as a
/// dispatcher over the body compiled for AVX-512F/BW/VL/DQ, AVX2 + FMA, and baseline.
/// The body may call only `#[inline(always)]` helpers (like `exp::exp`) for them to be
/// compiled for the variant too.
macro_rules! vectorized {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body

            #[cfg(target_arch = "x86_64")]
            #[allow(unsafe_code, reason = "calls of the same body compiled for features the CPU was just checked to have")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512dq,avx2,fma")]
                fn avx512($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                match $crate::cpu::simd::level() {
                    // SAFETY: `level` saw the features each variant is compiled for.
                    $crate::cpu::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::cpu::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::cpu::simd::Level::Baseline => {}
                }
            }
            portable($($arg),*)
        }
    };
}
pub(crate) use vectorized;

/// The widest variant [`vectorized!`] may run on this CPU (x86-64; elsewhere there is one).
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    Avx512,
    Avx2,
    Baseline,
}

/// What this CPU supports (checked once).
#[cfg(target_arch = "x86_64")]
pub fn level() -> Level {
    use std::sync::OnceLock;
    static LEVEL: OnceLock<Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
        let avx512 = avx2
            && is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512vl")
            && is_x86_feature_detected!("avx512dq");
        if avx512 {
            Level::Avx512
        } else if avx2 {
            Level::Avx2
        } else {
            Level::Baseline
        }
    })
}
