//! Row-parallel loops of the fused kernels: on rayon's pool where the target has threads (`has_threads`:
//! native, or the lab's threaded wasm module), in order on the calling thread otherwise.

/// Calls `f(i, row_i, &mut out_i)` for each `width`-wide row of `values`, rows in parallel.
#[cfg(has_threads)]
pub fn for_each_row<T: Send>(values: &mut [f32], width: usize, out: &mut [T], f: impl Fn(usize, &mut [f32], &mut T) + Sync + Send) {
    use rayon::prelude::*;
    super::pool::keep_awake();
    values.par_chunks_mut(width).zip(out.par_iter_mut()).enumerate().for_each(|(i, (row, o))| f(i, row, o));
}

#[cfg(not(has_threads))]
pub fn for_each_row<T: Send>(values: &mut [f32], width: usize, out: &mut [T], f: impl Fn(usize, &mut [f32], &mut T)) {
    values.chunks_mut(width).zip(out.iter_mut()).enumerate().for_each(|(i, (row, o))| f(i, row, o));
}

/// Runs `f(i)` for `i in 0..count` in parallel and collects the results in order.
#[cfg(has_threads)]
pub fn map_tasks<T: Send>(count: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    use rayon::prelude::*;
    super::pool::keep_awake();
    (0..count).into_par_iter().map(f).collect()
}

#[cfg(not(has_threads))]
pub fn map_tasks<T: Send>(count: usize, f: impl Fn(usize) -> T) -> Vec<T> {
    (0..count).map(f).collect()
}

/// Calls `f(start, chunk)` for consecutive `chunk`-sized pieces of `values` (`start` = the
/// piece's offset), pieces in parallel.
#[cfg(has_threads)]
pub fn for_each_chunk(values: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    use rayon::prelude::*;
    super::pool::keep_awake();
    values.par_chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
}

#[cfg(not(has_threads))]
pub fn for_each_chunk(values: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32])) {
    values.chunks_mut(chunk).enumerate().for_each(|(i, c)| f(i * chunk, c));
}
