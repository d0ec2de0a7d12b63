//! The compute-bound route of the packed matmul: `y = x · Wᵀ` for many activation rows (scoring
//! batches, long prompts), with the weight dequantised to bf16 a panel at a time and the
//! activations rounded to bf16, products accumulated in f32 by AVX-512 BF16's `vdpbf16ps` —
//! 32 multiply-adds per instruction, twice an f32 FMA's and without the per-block float work of
//! the integer tiles ([`super::matmul`]), which lead where the weights dominate (decoding).
//!
//! Layout, in the manner of BLIS: a *panel* is [`PANEL`] weight rows, stored as
//! `[input pair][row]` 32-bit words that each hold two adjacent inputs' bf16 values; a *strip* is
//! [`STRIP`] activation rows stored the same way, `[input pair][row]`. The tile keeps a strip ×
//! panel block of f32 sums in 24 registers, loads the panel's two registers per input pair and
//! broadcasts each strip row's pair from memory. Tasks are (weight, group of panels, range of
//! strips): a task dequantises its own panels (sized to stay in L2) and walks its strips over
//! them, writing its block of the output in place.
//!
//! bf16 keeps 8 bits of mantissa and f32's exponent: unlike 8-bit integer activations, the
//! massive activations of SmolLM2 (a few features hundreds of times the rest) do not flush their
//! neighbours to zero. The plain reference is [`reference_matmul`]: the same bf16 roundings,
//! summed in f64.
//!
//! The `unsafe` here: the `#[target_feature]` tile is reached only through a [`Bf16Route`] value,
//! which only [`Bf16Route::detect`] makes after checking the CPU; its loads read the packed
//! buffers at offsets bounded by their own lengths (asserted before the loop); tasks write
//! disjoint rectangles of the output through one shared pointer.
#![allow(unsafe_code)]

use std::arch::x86_64::*;
use std::borrow::Cow;
use std::ops::Range;

use super::matmul::{run_tasks, thread_count};
use super::packed::PackedMatrix;
use crate::error::{KernelError, Result};

/// Weight rows per panel: two registers of sixteen f32 sums.
pub const PANEL: usize = 32;
/// Activation rows per strip: 12 × 2 sums, two panel registers, the rest for the compiler.
pub const STRIP: usize = 12;
/// Bytes of bf16 panels a task keeps hot (a share of a core's L2).
const PANEL_GROUP_BYTES: usize = 256 * 1024;

/// The bf16 route on a CPU that has it (AVX-512 F, BW and BF16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bf16Route(());

impl Bf16Route {
    pub fn detect() -> Option<Self> {
        (is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512bf16"))
            .then_some(Bf16Route(()))
    }

    /// `x · Wᵢᵀ` for weights that read the same activations (q/k/v, gate/up): `x` is `[m, cols]`
    /// row-major, rounded to bf16 once; each result `[m, rowsᵢ]`.
    pub fn matmul_many(self, weights: &[Bf16Weight<'_>], x: &[f32], m: usize) -> Result<Vec<Vec<f32>>> {
        self.multiply(weights, Bf16Activations::RowMajor(x), m)
    }

    /// As [`Self::matmul_many`] with the activations given input-major: `x_t` is `[cols, m]`
    /// row-major, the transpose of the usual `x` (a weight gradient `xᵀ·g` reads the layer's
    /// inputs this way), packed without a transpose.
    pub fn matmul_many_input_major(self, weights: &[Bf16Weight<'_>], x_t: &[f32], m: usize) -> Result<Vec<Vec<f32>>> {
        self.multiply(weights, Bf16Activations::InputMajor(x_t), m)
    }

    fn multiply(self, weights: &[Bf16Weight<'_>], activations: Bf16Activations<'_>, m: usize) -> Result<Vec<Vec<f32>>> {
        let k = weights.first().map_or(0, |w| w.cols());
        for w in weights {
            check_weight(w)?;
            if w.cols() != k {
                return Err(KernelError::Shape {
                    op: "bf16 matmul",
                    reason: format!("a {}×{} weight beside one of {k} inputs", w.rows(), w.cols()),
                });
            }
        }
        check_activations(activations, m, k)?;
        if m == 0 || k == 0 {
            return Ok(weights.iter().map(|w| vec![0f32; m * w.rows()]).collect());
        }
        let sizes: Vec<usize> = weights
            .iter()
            .map(|w| {
                m.checked_mul(w.rows())
                    .ok_or_else(|| KernelError::Shape { op: "bf16 matmul", reason: format!("{m} × {} outputs overflow", w.rows()) })
            })
            .collect::<Result<_>>()?;
        // The outputs are not zeroed first: the tasks write every element (their strips cover
        // the `m` rows and their panels each weight's rows), and zeroing a scoring batch's
        // logits (200 MB at 8 × 128 tokens) was 6 % of its forward.
        let mut outs: Vec<Vec<f32>> = sizes.iter().map(|&size| Vec::with_capacity(size)).collect();
        let targets: Vec<Output> =
            outs.iter_mut().zip(weights).map(|(o, w)| Output { ptr: o.spare_capacity_mut().as_mut_ptr().cast(), cols: w.rows() }).collect();
        let heights: Vec<usize> = weights.iter().map(Bf16Weight::rows).collect();
        let strips = Strips::of(activations, m, k);
        // SAFETY: `self` proves the CPU features; each target has capacity for `[m, rows]`.
        unsafe { run_tiles(&heights, k, &strips, m, &targets, false, |i, rows| Cow::Owned(pack_panels(&weights[i], rows))) };
        for (out, size) in outs.iter_mut().zip(sizes) {
            // SAFETY: the capacity is `m · rows` and every element was written (see above);
            // `run_tiles` returned, so no task still writes.
            unsafe { out.set_len(size) };
        }
        Ok(outs)
    }

    /// A weight's panels, packed once for many calls of [`Self::matmul_packed`] (the loss head's
    /// 49 152 rows, multiplied 128 positions at a time, would otherwise be repacked per chunk).
    pub fn pack(self, weight: &Bf16Weight<'_>) -> Result<Bf16Panels> {
        check_weight(weight)?;
        let (rows, cols) = (weight.rows(), weight.cols());
        if cols == 0 {
            // Nothing to multiply: `matmul_packed` fills or keeps the output.
            return Ok(Bf16Panels { rows, cols, words: Vec::new() });
        }
        let panel_words = PANEL * (cols / 2);
        let panels = rows.div_ceil(PANEL);
        let mut words: Vec<u32> = Vec::with_capacity(panels * panel_words);
        let group = (PANEL_GROUP_BYTES / (panel_words * 4).max(1)).max(1);
        let target = Output { ptr: words.spare_capacity_mut().as_mut_ptr().cast(), cols: 0 };
        run_tasks(panels.div_ceil(group), |t| {
            let first = t * group;
            let range = first * PANEL..((first + group) * PANEL).min(rows);
            // SAFETY: `self` proves the CPU features; panels `first..first + group` are this
            // task's words of the capacity, and tasks write disjoint ranges.
            unsafe { pack_panels_into(weight, range, target.words().add(first * panel_words)) };
        });
        // SAFETY: every panel was written by its task (`pack_panels_into` writes all its words).
        unsafe { words.set_len(panels * panel_words) };
        Ok(Bf16Panels { rows, cols, words })
    }

    /// `out (+)= x · Wᵀ` with `W`'s panels packed by [`Self::pack`]: `out` is `[m, W's rows]`
    /// row-major, overwritten, or added to with `accumulate`.
    pub fn matmul_packed(self, panels: &Bf16Panels, x: Bf16Activations<'_>, m: usize, out: &mut [f32], accumulate: bool) -> Result<()> {
        let (rows, k) = (panels.rows, panels.cols);
        check_activations(x, m, k)?;
        if m.checked_mul(rows) != Some(out.len()) {
            return Err(KernelError::Shape { op: "bf16 matmul", reason: format!("an output of {} values for {m} × {rows}", out.len()) });
        }
        if m == 0 || rows == 0 {
            return Ok(());
        }
        if k == 0 {
            if !accumulate {
                out.fill(0.0);
            }
            return Ok(());
        }
        let strips = Strips::of(x, m, k);
        let targets = [Output { ptr: out.as_mut_ptr(), cols: rows }];
        let panel_words = PANEL * (k / 2);
        // SAFETY: `self` proves the CPU features; `out` is `[m, rows]` (checked).
        unsafe {
            run_tiles(&[rows], k, &strips, m, &targets, accumulate, |_, range| {
                Cow::Borrowed(&panels.words[range.start / PANEL * panel_words..range.end.div_ceil(PANEL) * panel_words])
            })
        };
        Ok(())
    }
}

/// A weight in bf16 panels (see [`Bf16Route::pack`]).
#[derive(Debug, Clone)]
pub struct Bf16Panels {
    rows: usize,
    cols: usize,
    words: Vec<u32>,
}

impl Bf16Panels {
    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn cols(&self) -> usize {
        self.cols
    }
}

fn check_weight(w: &Bf16Weight<'_>) -> Result<()> {
    if let Bf16Weight::Dense { values, rows, cols } | Bf16Weight::DenseInputMajor { values, rows, cols } = w
        && rows.checked_mul(*cols) != Some(values.len())
    {
        return Err(KernelError::Shape {
            op: "bf16 matmul",
            reason: format!("{} weight values are not {rows} outputs × {cols} inputs", values.len()),
        });
    }
    if !w.cols().is_multiple_of(32) {
        return Err(KernelError::Shape { op: "bf16 matmul", reason: format!("rows of {} inputs are not whole 32-value blocks", w.cols()) });
    }
    Ok(())
}

fn check_activations(x: Bf16Activations<'_>, m: usize, k: usize) -> Result<()> {
    let (Bf16Activations::RowMajor(values) | Bf16Activations::InputMajor(values)) = x;
    if m.checked_mul(k) != Some(values.len()) {
        return Err(KernelError::Shape {
            op: "bf16 matmul",
            reason: format!("{} activation values are not {m} rows of the weights' {k} inputs", values.len()),
        });
    }
    Ok(())
}

/// Runs the tiles of one call: tasks over (weight, group of panels, range of strips), each
/// getting its panels from `panels_of(weight, rows)` (packed there, or a slice of prepacked
/// ones) and writing (or, with `accumulate`, adding) its block of `targets[weight]`.
///
/// # Safety
/// The CPU has AVX-512 F and BF16 (a `Bf16Route` exists); `targets[i]` is valid for writes (and
/// reads, with `accumulate`) of `[m, heights[i]]`; `panels_of` returns `pairs · PANEL` words per
/// panel of the rows asked for.
unsafe fn run_tiles<'p>(
    heights: &[usize],
    k: usize,
    strips: &Strips,
    m: usize,
    targets: &[Output],
    accumulate: bool,
    panels_of: impl Fn(usize, Range<usize>) -> Cow<'p, [u32]> + Sync,
) {
    let pairs = k / 2;
    let group = (PANEL_GROUP_BYTES / (PANEL * pairs * 4)).max(1);
    let panel_groups: Vec<(usize, Range<usize>)> = heights
        .iter()
        .enumerate()
        .flat_map(|(i, &h)| {
            let panels = h.div_ceil(PANEL);
            (0..panels).step_by(group).map(move |p| (i, p..(p + group).min(panels)))
        })
        .collect();
    // Enough tasks for every thread to stay busy to the end: split the strips when the weights
    // are narrow (k/v projections); each split packs its panels again (unless prepacked), a
    // cost of 1/(its rows) of its multiply.
    let wanted = 4 * thread_count();
    let strip_splits = wanted.div_ceil(panel_groups.len().max(1)).min(strips.count).max(1);
    let strips_per_task = strips.count.div_ceil(strip_splits);
    let tasks: Vec<(usize, Range<usize>, Range<usize>)> = panel_groups
        .iter()
        .flat_map(|(i, panels)| {
            (0..strips.count).step_by(strips_per_task).map(move |s| (*i, panels.clone(), s..(s + strips_per_task).min(strips.count)))
        })
        .collect();
    let run = |t: usize| {
        let (i, ref panels, ref strip_range) = tasks[t];
        let height = heights[i];
        let rows = panels.start * PANEL..(panels.end * PANEL).min(height);
        let packed = panels_of(i, rows.clone());
        for s in strip_range.clone() {
            let x_rows = s * STRIP..((s + 1) * STRIP).min(m);
            for (p, panel) in packed.chunks_exact(PANEL * pairs).enumerate() {
                let first = rows.start + p * PANEL;
                let cols = (height - first).min(PANEL);
                let out = targets[i];
                // SAFETY: the caller's contract on the features and targets; the strip and panel
                // hold `pairs` words per row; the output block (x_rows × first..first + cols)
                // lies inside weight i's `[m, rows]` output and no other task touches it.
                unsafe {
                    tile(
                        strips.strip(s),
                        panel,
                        pairs,
                        out.ptr.add(x_rows.start * out.cols + first),
                        out.cols,
                        x_rows.len(),
                        cols,
                        accumulate,
                    )
                };
            }
        }
    };
    run_tasks(tasks.len(), run);
}

/// A weight's `[m, rows]` output, shared by the tasks that each write a disjoint block of it.
#[derive(Clone, Copy)]
struct Output {
    ptr: *mut f32,
    cols: usize,
}
impl Output {
    /// The buffer as 32-bit words (`Bf16Route::pack`'s panels). A method, so that a task's
    /// closure captures the shareable `Output`, not its raw pointer field.
    fn words(&self) -> *mut u32 {
        self.ptr.cast()
    }
}

// SAFETY: tasks write disjoint blocks (see `matmul_many`) and the owner waits for all of them.
unsafe impl Send for Output {}
unsafe impl Sync for Output {}

/// `v` rounded to bf16, to nearest with ties to even (NaN stays NaN): what `vcvtne2ps2bf16`
/// computes, written so the compiler vectorises the loops that call it.
#[inline]
pub fn to_bf16(v: f32) -> u16 {
    let bits = v.to_bits();
    let rounded = (bits.wrapping_add(0x7FFF + ((bits >> 16) & 1)) >> 16) as u16;
    if v.is_nan() { ((bits >> 16) as u16) | 0x0040 } else { rounded }
}

/// A bf16 value as f32 (exact).
#[inline]
pub fn from_bf16(v: u16) -> f32 {
    f32::from_bits((v as u32) << 16)
}

/// The activations as strips of [`STRIP`] rows, `[strip][input pair][row]`; the last strip's
/// missing rows are zeros.
struct Strips {
    count: usize,
    pairs: usize,
    words: Vec<u32>,
}

impl Strips {
    fn pack(x: &[f32], m: usize, k: usize) -> Self {
        let pairs = k / 2;
        let count = m.div_ceil(STRIP);
        let mut words = vec![0u32; count * pairs * STRIP];
        for (s, strip) in words.chunks_exact_mut(pairs * STRIP).enumerate() {
            let rows: Vec<&[f32]> = x[s * STRIP * k..((s + 1) * STRIP * k).min(x.len())].chunks_exact(k).collect();
            // SAFETY: `Bf16Route` values exist only on CPUs with the features (`detect`); the
            // strip is `pairs · STRIP` words.
            unsafe { interleave(&rows, pairs, strip.as_mut_ptr(), strip.len(), STRIP, 0) };
        }
        Strips { count, pairs, words }
    }

    fn of(x: Bf16Activations<'_>, m: usize, k: usize) -> Self {
        match x {
            Bf16Activations::RowMajor(x) => Strips::pack(x, m, k),
            Bf16Activations::InputMajor(x_t) => Strips::pack_input_major(x_t, m, k),
        }
    }

    /// The same strips from `x_t`, `[k, m]` row-major: strip `s`'s word for pair `p` and row `r`
    /// joins `x_t[2p][12s + r]` and `x_t[2p + 1][12s + r]`, as [`zip_pairs`] joins a panel's.
    fn pack_input_major(x_t: &[f32], m: usize, k: usize) -> Self {
        let pairs = k / 2;
        let count = m.div_ceil(STRIP);
        let mut words = vec![0u32; count * pairs * STRIP];
        for (s, strip) in words.chunks_exact_mut(pairs * STRIP).enumerate() {
            let first = s * STRIP;
            // SAFETY: as in `pack`; `x_t` is `[k, m]` (checked by `multiply`), the strip's rows
            // `first..first + width` are columns of it, and the strip is `pairs · STRIP` words.
            unsafe { zip_pairs(x_t, m, first, (m - first).min(STRIP), pairs, strip.as_mut_ptr(), STRIP) };
        }
        Strips { count, pairs, words }
    }

    fn strip(&self, s: usize) -> &[u32] {
        &self.words[s * self.pairs * STRIP..(s + 1) * self.pairs * STRIP]
    }
}

/// The activations of one call, `m` rows of `cols` inputs.
#[derive(Clone, Copy, Debug)]
pub enum Bf16Activations<'a> {
    /// `[m, cols]` row-major.
    RowMajor(&'a [f32]),
    /// `[cols, m]` row-major.
    InputMajor(&'a [f32]),
}

/// A weight the bf16 route multiplies: `rows` outputs × `cols` inputs.
#[derive(Debug, Clone, Copy)]
pub enum Bf16Weight<'a> {
    /// Quantized blocks, dequantised panel by panel.
    Packed(&'a PackedMatrix),
    /// f32 values, `[rows, cols]` row-major (PyTorch's `Linear.weight` layout): a dense
    /// projection of an edited (pruned) quantized model, read in place.
    Dense { values: &'a [f32], rows: usize, cols: usize },
    /// f32 values, `[cols, rows]` row-major — one row per *input* (burn's `Linear` layout,
    /// `[d_in, d_out]`): a training step's projection, read in place with no transpose.
    DenseInputMajor { values: &'a [f32], rows: usize, cols: usize },
}

impl<'a> From<&'a PackedMatrix> for Bf16Weight<'a> {
    fn from(w: &'a PackedMatrix) -> Self {
        Bf16Weight::Packed(w)
    }
}

impl Bf16Weight<'_> {
    pub fn rows(&self) -> usize {
        match self {
            Bf16Weight::Packed(w) => w.rows(),
            Bf16Weight::Dense { rows, .. } | Bf16Weight::DenseInputMajor { rows, .. } => *rows,
        }
    }

    pub fn cols(&self) -> usize {
        match self {
            Bf16Weight::Packed(w) => w.cols(),
            Bf16Weight::Dense { cols, .. } | Bf16Weight::DenseInputMajor { cols, .. } => *cols,
        }
    }

    /// Weight rows `range` as f32, `[range.len(), cols]` row-major (the output-major layouts).
    fn rows_f32(&self, range: Range<usize>) -> Cow<'_, [f32]> {
        match self {
            Bf16Weight::Packed(w) => Cow::Owned(w.dequantize_rows(range)),
            Bf16Weight::Dense { values, cols, .. } => Cow::Borrowed(&values[range.start * cols..range.end * cols]),
            Bf16Weight::DenseInputMajor { .. } => unreachable!("input-major weights are packed by `zip_pairs`"),
        }
    }
}

/// Weight rows `rows` in bf16 panels, `[panel][input pair][row of panel]`; a short last panel is
/// padded with zero rows. (Reusing a thread-local buffer instead of allocating per task
/// measured no faster.) Only that short panel is zeroed first: the full ones are written
/// whole, and zeroing every panel was 2 % of a scoring forward.
fn pack_panels(w: &Bf16Weight<'_>, rows: Range<usize>) -> Vec<u32> {
    let len = rows.len().div_ceil(PANEL) * PANEL * (w.cols() / 2);
    let mut words: Vec<u32> = Vec::with_capacity(len);
    // SAFETY: the capacity holds the panels of `rows`.
    unsafe { pack_panels_into(w, rows, words.spare_capacity_mut().as_mut_ptr().cast()) };
    // SAFETY: `pack_panels_into` wrote every word of the `len`.
    unsafe { words.set_len(len) };
    words
}

/// Writes the panels of weight rows `rows` (see [`pack_panels`]) at `out`: every word of them —
/// full panels whole, a short last panel zeroed before its rows are written.
///
/// # Safety
/// A `Bf16Route` exists (the CPU features); `out` is valid for writes of
/// `rows.len().div_ceil(PANEL) · PANEL · cols / 2` words.
unsafe fn pack_panels_into(w: &Bf16Weight<'_>, rows: Range<usize>, out: *mut u32) {
    let k = w.cols();
    let pairs = k / 2;
    let panel_words = PANEL * pairs;
    let len = rows.len().div_ceil(PANEL) * panel_words;
    let full_words = rows.len() / PANEL * panel_words;
    // SAFETY: `full_words ≤ len`, the caller's extent.
    unsafe { std::ptr::write_bytes(out.add(full_words), 0, len - full_words) };
    for p in 0..len / panel_words {
        let first = rows.start + p * PANEL;
        if let Bf16Weight::DenseInputMajor { values, rows: n, .. } = *w {
            let width = (rows.end - first).min(PANEL);
            // SAFETY: as in `Strips::pack`; `values` is `[k, n]` (checked by `check_weight`) and
            // columns `first..first + width` lie inside its rows; panel `p` is inside `out`.
            unsafe { zip_pairs(values, n, first, width, pairs, out.add(p * panel_words), PANEL) };
            continue;
        }
        for half in 0..2 {
            let start = (first + half * 16).min(rows.end);
            let end = (start + 16).min(rows.end);
            if start == end {
                break;
            }
            let values = w.rows_f32(start..end);
            let half_rows: Vec<&[f32]> = values.chunks_exact(k).collect();
            // SAFETY: as in `Strips::pack`; panel `p` is `panel_words` words inside `out`.
            unsafe { interleave(&half_rows, pairs, out.add(p * panel_words), panel_words, PANEL, half * 16) };
        }
    }
}

/// Writes up to 16 rows of `2 · pairs` values as bf16 pairs into `out[p · stride + offset + r]`
/// (pair `p` of row `r`): sixteen pairs of sixteen rows at a time, converted by
/// `vcvtne2ps2bf16` and transposed in registers. Only `rows.len()` lanes are written (`out` may
/// be uninitialised memory: it is only stored to).
///
/// # Safety
/// The CPU has AVX-512 F and BF16; `out` is valid for writes of `out_len` words.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn interleave(rows: &[&[f32]], pairs: usize, out: *mut u32, out_len: usize, stride: usize, offset: usize) {
    assert!(rows.len() <= 16 && pairs.is_multiple_of(16) && rows.iter().all(|r| r.len() == 2 * pairs));
    assert!(pairs == 0 || (pairs - 1) * stride + offset + rows.len() <= out_len);
    let lanes: __mmask16 = if rows.len() == 16 { 0xFFFF } else { (1u16 << rows.len()) - 1 };
    for p0 in (0..pairs).step_by(16) {
        let mut block = [_mm512_setzero_si512(); 16];
        for (row, values) in block.iter_mut().zip(rows) {
            // SAFETY: 2·p0 + 32 ≤ 2·pairs = the row's length (asserted).
            let (low, high) = unsafe { (_mm512_loadu_ps(values.as_ptr().add(2 * p0)), _mm512_loadu_ps(values.as_ptr().add(2 * p0 + 16))) };
            // SAFETY: both are 64 bytes of plain lanes.
            *row = unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low)) };
        }
        let columns = transpose16(block);
        for (i, column) in columns.iter().enumerate() {
            // SAFETY: pair p0 + i < pairs; the lanes written end within `out` (asserted).
            unsafe { _mm512_mask_storeu_epi32(out.add((p0 + i) * stride + offset).cast(), lanes, *column) };
        }
    }
}

/// A panel (or strip) from an input-major matrix (`values` is `[pairs · 2, n]` row-major): for
/// each input pair `p`, the `width` columns `first..` of rows `2p` and `2p + 1`, rounded to bf16
/// by `vcvtne2ps2bf16` and interleaved into words (`2p` low, `2p + 1` high) by one 16-bit permute
/// — no transpose, as the panel's rows are the matrix's columns — stored at
/// `out[p · stride + lane]`. Only the `width` lanes are written (a short panel is zeroed first).
///
/// # Safety
/// The CPU has AVX-512 F, BW and BF16; `out` is valid for writes of `pairs · stride` words;
/// `width ≤ stride ≤ PANEL`, `first + width ≤ n` and `values.len() ≥ 2 · pairs · n`.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn zip_pairs(values: &[f32], n: usize, first: usize, width: usize, pairs: usize, out: *mut u32, stride: usize) {
    assert!(width <= stride && stride <= PANEL && first + width <= n && values.len() >= 2 * pairs * n);
    // 16-bit lane i of the result: even i from the low row's value i/2, odd from the high row's.
    let order: [i16; 32] = std::array::from_fn(|i| ((i % 2) * 16 + i / 2) as i16);
    // SAFETY: 64 bytes of plain lanes.
    let order = unsafe { _mm512_loadu_si512(order.as_ptr().cast()) };
    for half in 0..2 {
        let lanes = width.saturating_sub(half * 16).min(16);
        if lanes == 0 {
            break;
        }
        let mask: __mmask16 = if lanes == 16 { 0xFFFF } else { (1u16 << lanes) - 1 };
        let column = first + half * 16;
        for p in 0..pairs {
            // SAFETY: masked lanes read only columns `column..column + lanes` ≤ n of rows 2p and
            // 2p + 1 < 2 · pairs (asserted); unread lanes are zeros.
            let (low, high) = unsafe {
                (
                    _mm512_maskz_loadu_ps(mask, values.as_ptr().add(2 * p * n + column)),
                    _mm512_maskz_loadu_ps(mask, values.as_ptr().add((2 * p + 1) * n + column)),
                )
            };
            // SAFETY: both are 64 bytes of plain lanes.
            let both = unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(high, low)) };
            // SAFETY: the `lanes` words written end at p · stride + half · 16 + lanes ≤ p · stride
            // + width ≤ pairs · stride.
            unsafe { _mm512_mask_storeu_epi32(out.add(p * stride + half * 16).cast(), mask, _mm512_permutexvar_epi16(order, both)) };
        }
    }
}

/// A 16 × 16 matrix of 32-bit words, one row per register, transposed: unpacks of 32- and
/// 64-bit elements within 128-bit lanes, then two rounds of 128-bit lane shuffles.
#[target_feature(enable = "avx512f")]
fn transpose16(r: [__m512i; 16]) -> [__m512i; 16] {
    let mut t = [_mm512_setzero_si512(); 16];
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    // u[4q + j] holds element j of each 128-bit lane for rows 4q..4q + 4.
    let mut u = [_mm512_setzero_si512(); 16];
    for q in 0..4 {
        u[4 * q] = _mm512_unpacklo_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 1] = _mm512_unpackhi_epi64(t[4 * q], t[4 * q + 2]);
        u[4 * q + 2] = _mm512_unpacklo_epi64(t[4 * q + 1], t[4 * q + 3]);
        u[4 * q + 3] = _mm512_unpackhi_epi64(t[4 * q + 1], t[4 * q + 3]);
    }
    // v: lanes 0 and 2 (then 1 and 3) of row groups q and q + 1.
    let mut v = [_mm512_setzero_si512(); 16];
    for half in 0..2 {
        for j in 0..4 {
            let (a, b) = (u[8 * half + j], u[8 * half + 4 + j]);
            v[8 * half + j] = _mm512_shuffle_i32x4::<0x88>(a, b);
            v[8 * half + 4 + j] = _mm512_shuffle_i32x4::<0xDD>(a, b);
        }
    }
    let mut out = [_mm512_setzero_si512(); 16];
    for j in 0..4 {
        // Column j: lane 0 of groups 0–3; column j + 8: lane 2; j + 4: lane 1; j + 12: lane 3.
        out[j] = _mm512_shuffle_i32x4::<0x88>(v[j], v[8 + j]);
        out[j + 8] = _mm512_shuffle_i32x4::<0xDD>(v[j], v[8 + j]);
        out[j + 4] = _mm512_shuffle_i32x4::<0x88>(v[4 + j], v[12 + j]);
        out[j + 12] = _mm512_shuffle_i32x4::<0xDD>(v[4 + j], v[12 + j]);
    }
    out
}

/// One strip × one panel: `out[r · ldc + c] (+)= Σ_p strip[p][r] · panel[p][c]` for the first
/// `rows` rows and `cols` columns (added to what `out` holds with `accumulate`).
///
/// # Safety
/// The CPU has AVX-512 F and BF16; `strip` holds `pairs · STRIP` words and `panel` `pairs · PANEL`;
/// `out` is valid for writes at `r · ldc + c` for `r < rows ≤ STRIP`, `c < cols ≤ PANEL`.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile(strip: &[u32], panel: &[u32], pairs: usize, out: *mut f32, ldc: usize, rows: usize, cols: usize, accumulate: bool) {
    assert!(strip.len() >= pairs * STRIP && panel.len() >= pairs * PANEL && rows <= STRIP && cols <= PANEL);
    let mut sums = [[_mm512_setzero_ps(); 2]; STRIP];
    let (a, b) = (strip.as_ptr(), panel.as_ptr());
    for p in 0..pairs {
        // SAFETY: p < pairs, within both buffers (asserted above).
        let (low, high): (__m512bh, __m512bh) = unsafe {
            (
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(p * PANEL).cast())),
                std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(b.add(p * PANEL + 16).cast())),
            )
        };
        for (r, sum) in sums.iter_mut().enumerate() {
            // SAFETY: as above; r < STRIP.
            let x: __m512bh = unsafe { std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*a.add(p * STRIP + r) as i32)) };
            sum[0] = _mm512_dpbf16_ps(sum[0], x, low);
            sum[1] = _mm512_dpbf16_ps(sum[1], x, high);
        }
    }
    let low_mask: __mmask16 = if cols >= 16 { 0xFFFF } else { (1u16 << cols) - 1 };
    let high_mask: __mmask16 = if cols >= PANEL {
        0xFFFF
    } else if cols > 16 {
        (1u16 << (cols - 16)) - 1
    } else {
        0
    };
    // The high half's address is formed only when it has columns: a short last panel's row of
    // 16 or fewer ends before it, and for the output's last row past the allocation.
    let halves: &[(usize, __mmask16)] = if high_mask == 0 { &[(0, low_mask)] } else { &[(0, low_mask), (16, high_mask)] };
    for (r, sum) in sums.iter().enumerate().take(rows) {
        for (&(offset, mask), &value) in halves.iter().zip(sum) {
            // SAFETY: the caller's contract on `out` (columns offset.. of row r exist where the
            // mask has lanes); masked lanes are neither read nor written.
            unsafe {
                let at = out.add(r * ldc + offset);
                let value = if accumulate { _mm512_add_ps(value, _mm512_maskz_loadu_ps(mask, at)) } else { value };
                _mm512_mask_storeu_ps(at, mask, value);
            }
        }
    }
}

/// The plain reference: the weight dequantised and both operands rounded to bf16 as the route
/// rounds them, products summed in f64.
pub fn reference_matmul(w: &PackedMatrix, x: &[f32], m: usize) -> Vec<f32> {
    let (n, k) = (w.rows(), w.cols());
    let round = |v: &f32| from_bf16(to_bf16(*v)) as f64;
    let weights: Vec<f64> = w.dequantize().iter().map(round).collect();
    let xs: Vec<f64> = x.iter().map(round).collect();
    let mut out = vec![0f32; m * n];
    for c in 0..m {
        for r in 0..n {
            out[c * n + r] = (0..k).map(|j| weights[r * k + j] * xs[c * k + j]).sum::<f64>() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::packed;
    use crate::quant::packed::QuantizeTo;

    /// `[m, k]` row-major values as `[k, m]` (input-major).
    fn transposed(x: &[f32], m: usize, k: usize) -> Vec<f32> {
        (0..k * m).map(|i| x[(i % m) * k + i / m]).collect()
    }

    fn values(len: usize, seed: u32) -> Vec<f32> {
        (0..len).map(|i| (((i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed) >> 8) % 2001) as f32 / 1000.0 - 1.0).collect()
    }

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3F80);
        // 1 + 2⁻⁸ is halfway between 1 and the next bf16: ties go to the even mantissa (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3F80);
        // 1 + 3·2⁻⁸ is halfway between two odd/even neighbours: up to the even one.
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3F82);
        assert_eq!(from_bf16(to_bf16(-2.5)), -2.5);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
        // A massive activation keeps its neighbours: 1000 and 0.01 both survive.
        assert!((from_bf16(to_bf16(1000.0)) - 1000.0).abs() < 4.0 && (from_bf16(to_bf16(0.01)) - 0.01).abs() < 1e-4);
    }

    /// The route equals its reference for every packed type at shapes that leave remainders in
    /// strips (rows not a multiple of 12) and panels (weight rows not a multiple of 32), for
    /// several weights at once.
    #[test]
    fn the_route_matches_its_reference() {
        let Some(route) = Bf16Route::detect() else {
            // Nothing to run: the model's projections never take this route on such a CPU
            // (`rosetta_model::nn::projection` checks `detect` too).
            eprintln!("this CPU has no AVX-512 BF16: the bf16 route is not used here");
            return;
        };
        let shapes = [(1, 7, 64), (13, 33, 96), (25, 70, 256), (12, 32, 352), (40, 100, 512), (360, 40, 32)];
        for ty in packed::tests::PACKED {
            for &(m, n, k) in &shapes {
                if k % ty.block_size() != 0 {
                    continue;
                }
                let bytes = packed::tests::random_ggml_bytes(ty, n * k / ty.block_size(), (m * n + k) as u64);
                let w = PackedMatrix::from_ggml(ty, n, k, &bytes).unwrap();
                let x = values(m * k, (n * 31 + k) as u32);
                let expected = reference_matmul(&w, &x, m);
                for out in route.matmul_many(&[(&w).into(), (&w).into()], &x, m).unwrap() {
                    assert_close(&out, &expected, &format!("{} {m}×{n}×{k}", ty.name()));
                }
            }
        }
    }

    /// Weights of different heights in one call (q, k and v of a GQA layer): each result is its
    /// own weight's product, with its own panels and tasks.
    #[test]
    fn weights_of_different_heights_in_one_call() {
        let Some(route) = Bf16Route::detect() else {
            eprintln!("this CPU has no AVX-512 BF16: the bf16 route is not used here");
            return;
        };
        let (m, k) = (50, 96);
        let heights = [96, 33, 7];
        let weights: Vec<PackedMatrix> = heights
            .iter()
            .enumerate()
            .map(|(i, &n)| PackedMatrix::quantize(QuantizeTo::Q4_1, n, k, &values(n * k, 17 + i as u32)).unwrap())
            .collect();
        let x = values(m * k, 3);
        let got = route.matmul_many(&weights.iter().map(Bf16Weight::from).collect::<Vec<_>>(), &x, m).unwrap();
        for ((w, out), n) in weights.iter().zip(&got).zip(heights) {
            assert_eq!(out.len(), m * n);
            assert_close(out, &reference_matmul(w, &x, m), &format!("Q4_1 {m}×{n}×{k} beside others"));
        }
    }

    /// A dense f32 weight gives exactly what the same values packed give (the panels hold the
    /// same bf16 words), beside a packed weight in one call.
    #[test]
    fn dense_f32_weights_equal_their_packed_source() {
        let Some(route) = Bf16Route::detect() else {
            eprintln!("this CPU has no AVX-512 BF16: the bf16 route is not used here");
            return;
        };
        let (m, n, k) = (29, 70, 96);
        let w = PackedMatrix::quantize(QuantizeTo::Q4_1, n, k, &values(n * k, 5)).unwrap();
        let dense = w.dequantize();
        let x = values(m * k, 8);
        let out = route.matmul_many(&[(&w).into(), Bf16Weight::Dense { values: &dense, rows: n, cols: k }], &x, m).unwrap();
        assert_eq!(out[0], out[1]);
        assert_close(&out[1], &reference_matmul(&w, &x, m), "dense Q4_1 values");
        let short = Bf16Weight::Dense { values: &dense[1..], rows: n, cols: k };
        assert!(route.matmul_many(&[short], &x, m).unwrap_err().to_string().contains("outputs ×"));
    }

    /// A weight stored input-major (`[cols, rows]`, burn's `Linear` layout) gives exactly what
    /// the same values stored output-major give: the panels hold the same bf16 words. Heights
    /// that leave short panels and short halves (7, 70, 100).
    #[test]
    fn input_major_weights_equal_output_major_ones() {
        let Some(route) = Bf16Route::detect() else {
            eprintln!("this CPU has no AVX-512 BF16: the bf16 route is not used here");
            return;
        };
        for (m, n, k) in [(13, 7, 64), (50, 70, 96), (25, 100, 256)] {
            let output_major = values(n * k, (m + n) as u32);
            let input_major: Vec<f32> = (0..k * n).map(|i| output_major[(i % n) * k + i / n]).collect();
            let x = values(m * k, 9);
            let out = route
                .matmul_many(
                    &[
                        Bf16Weight::Dense { values: &output_major, rows: n, cols: k },
                        Bf16Weight::DenseInputMajor { values: &input_major, rows: n, cols: k },
                    ],
                    &x,
                    m,
                )
                .unwrap();
            assert_eq!(out[0], out[1], "{m}×{n}×{k}");
        }
    }

    /// Activations given input-major (`[k, m]`, the transpose) give exactly what the same values
    /// row-major give, for rows that leave a short strip (m = 13, 50).
    #[test]
    fn input_major_activations_equal_row_major_ones() {
        let Some(route) = Bf16Route::detect() else {
            eprintln!("this CPU has no AVX-512 BF16: the bf16 route is not used here");
            return;
        };
        for (m, n, k) in [(13, 7, 64), (50, 70, 96)] {
            let w = values(n * k, 3);
            let x = values(m * k, (m + k) as u32);
            let x_t = transposed(&x, m, k);
            let weight = [Bf16Weight::Dense { values: &w, rows: n, cols: k }];
            let row_major = route.matmul_many(&weight, &x, m).unwrap();
            assert_eq!(route.matmul_many_input_major(&weight, &x_t, m).unwrap(), row_major, "{m}×{n}×{k}");
        }
    }

    /// Panels packed once give what packing per call gives, overwriting or adding to the
    /// output, for either layout of the activations; heights with short panels (70, 7).
    #[test]
    fn prepacked_panels_equal_packing_per_call() {
        let Some(route) = Bf16Route::detect() else {
            eprintln!("this CPU has no AVX-512 BF16: the bf16 route is not used here");
            return;
        };
        for (m, n, k) in [(50, 70, 96), (13, 7, 64)] {
            let w = values(n * k, 21);
            let weight = Bf16Weight::Dense { values: &w, rows: n, cols: k };
            let x = values(m * k, 22);
            let x_t = transposed(&x, m, k);
            let expected = route.matmul_many(&[weight], &x, m).unwrap().pop().unwrap();
            let panels = route.pack(&weight).unwrap();
            let mut out = vec![f32::NAN; m * n];
            route.matmul_packed(&panels, Bf16Activations::RowMajor(&x), m, &mut out, false).unwrap();
            assert_eq!(out, expected, "{m}×{n}×{k}, overwritten");
            let mut sum = vec![1.0f32; m * n];
            route.matmul_packed(&panels, Bf16Activations::InputMajor(&x_t), m, &mut sum, true).unwrap();
            let added: Vec<f32> = expected.iter().map(|v| v + 1.0).collect();
            assert_eq!(sum, added, "{m}×{n}×{k}, accumulated from input-major activations");
            let err = route.matmul_packed(&panels, Bf16Activations::RowMajor(&x), m, &mut out[1..], false).unwrap_err();
            assert!(err.to_string().contains("an output of"), "{err}");
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let Some(route) = Bf16Route::detect() else { return };
        let w = PackedMatrix::quantize(QuantizeTo::Q8_0, 4, 64, &values(256, 1)).unwrap();
        let narrow = PackedMatrix::quantize(QuantizeTo::Q8_0, 4, 32, &values(128, 1)).unwrap();
        assert!(route.matmul_many(&[(&w).into()], &values(100, 2), 2).unwrap_err().to_string().contains("not 2 rows"));
        assert!(route.matmul_many(&[(&w).into(), (&narrow).into()], &values(128, 2), 2).unwrap_err().to_string().contains("4×32"));
    }

    fn assert_close(got: &[f32], expected: &[f32], what: &str) {
        assert_eq!(got.len(), expected.len(), "{what}");
        let scale = expected.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
        for (i, (g, e)) in got.iter().zip(expected).enumerate() {
            assert!((g - e).abs() <= 1e-5 * scale, "{what}, element {i}: {g} vs {e} (scale {scale})");
        }
    }
}
