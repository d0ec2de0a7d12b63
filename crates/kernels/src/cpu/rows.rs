//! Row-parallel loops of the fused kernels: rayon's pool natively, one thread in the browser.

/// Calls `f(i, row_i, &mut out_i)` for each `width`-wide row of `values`, rows in parallel.
#[cfg(not(target_family = "wasm"))]
pub fn for_each_row<T: Send>(values: &mut [f32], width: usize, out: &mut [T], f: impl Fn(usize, &mut [f32], &mut T) + Sync + Send) {
    use rayon::prelude::*;
    values.par_chunks_mut(width).zip(out.par_iter_mut()).enumerate().for_each(|(i, (row, o))| f(i, row, o));
}

#[cfg(target_family = "wasm")]
pub fn for_each_row<T: Send>(values: &mut [f32], width: usize, out: &mut [T], f: impl Fn(usize, &mut [f32], &mut T)) {
    values.chunks_mut(width).zip(out.iter_mut()).enumerate().for_each(|(i, (row, o))| f(i, row, o));
}

/// Runs `f(i)` for `i in 0..count` in parallel and collects the results in order.
#[cfg(not(target_family = "wasm"))]
pub fn map_tasks<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    (0..count).into_par_iter().map(f).collect()
}

#[cfg(target_family = "wasm")]
pub fn map_tasks<T: Send>(count: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    (0..count).map(f).collect()
}

/// Calls `f(start, chunk)` for consecutive `chunk`-sized pieces of `values` (`start` = the
/// piece's offset), pieces in parallel.
#[cfg(not(target_family = "wasm"))]
pub fn for_each_chunk(values: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    use rayon::prelude::*;
    values.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
}

#[cfg(target_family = "wasm")]
pub fn for_each_chunk(values: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32])) {
    values.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
}
