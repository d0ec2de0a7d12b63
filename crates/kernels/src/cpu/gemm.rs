//! A checked, safe face of the `gemm` crate — the f32 GEMM burn's CPU backend already runs — for
//! the fused training kernels, which need what burn's matmul does not offer: strided views
//! without copies and accumulation into an existing output (`dst += a·b`).
//!
//! The second place in the workspace with `unsafe` (after `quant::x86`): the `gemm` crate takes
//! raw pointers and strides. Every view is checked when it is made — its last element lies
//! inside its slice — and [`gemm`] checks that the shapes agree, so the call reads and writes
//! only inside the slices it was given.
#![allow(unsafe_code)]

/// A read-only `rows × cols` matrix inside `data`, element `(i, j)` at `i·row_stride + j·col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    row_stride: usize,
    col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A strided view. Panics (a bug in the caller, never bad user input) when an element would
    /// lie outside `data`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> Self {
        // The `gemm` crate takes strides as `isize`, also those of a dimension of size 1.
        assert!(
            isize::try_from(row_stride).is_ok() && isize::try_from(col_stride).is_ok(),
            "strides {row_stride}, {col_stride} exceed isize"
        );
        if rows > 0 && cols > 0 {
            let last = (rows - 1).checked_mul(row_stride).zip((cols - 1).checked_mul(col_stride)).and_then(|(a, b)| a.checked_add(b));
            assert!(
                last.is_some_and(|l| l < data.len()),
                "a {rows}×{cols} view (strides {row_stride}, {col_stride}) outside {} values",
                data.len()
            );
        }
        MatRef { data, rows, cols, row_stride, col_stride }
    }

    /// A dense row-major matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "a {rows}×{cols} row-major matrix needs {} values", rows * cols);
        Self::new(data, rows, cols, cols, 1)
    }

    /// The transpose, as a view of the same values.
    pub fn t(self) -> Self {
        MatRef { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }

    /// Rows `start..end`.
    pub fn rows(self, start: usize, end: usize) -> Self {
        assert!(start <= end && end <= self.rows, "rows {start}..{end} of {}", self.rows);
        if start == end {
            return MatRef { data: &[], rows: 0, ..self };
        }
        MatRef { data: &self.data[start * self.row_stride..], rows: end - start, ..self }
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.rows, self.cols)
    }

    /// The values as a dense row-major slice, when the view is one (not a transpose or a stride).
    pub fn as_row_major(&self) -> Option<&'a [f32]> {
        let dense = self.col_stride == 1 && (self.row_stride == self.cols || self.rows <= 1);
        dense.then(|| &self.data[..self.rows * self.cols])
    }
}

/// A writable dense row-major `rows × cols` matrix.
#[derive(Debug)]
pub struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
}

impl<'a> MatMut<'a> {
    pub fn row_major(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "a {rows}×{cols} row-major matrix needs {} values", rows * cols);
        MatMut { data, rows, cols }
    }
}

/// How many threads one product may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Threads {
    /// The calling thread only (the caller already runs tasks in parallel).
    One,
    /// rayon's pool with `has_threads`; the calling thread otherwise.
    Pool,
}

/// `dst ← (accumulate ? dst : 0) + alpha · lhs · rhs`.
pub fn gemm(dst: MatMut<'_>, lhs: MatRef<'_>, rhs: MatRef<'_>, alpha: f32, accumulate: bool, threads: Threads) {
    assert!(
        lhs.cols == rhs.rows && dst.rows == lhs.rows && dst.cols == rhs.cols,
        "gemm of {}×{} by {}×{} into {}×{}",
        lhs.rows,
        lhs.cols,
        rhs.rows,
        rhs.cols,
        dst.rows,
        dst.cols
    );
    let (m, n, k) = (dst.rows, dst.cols, lhs.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            dst.data.fill(0.0);
        }
        return;
    }
    let parallelism = match threads {
        #[cfg(has_threads)]
        Threads::Pool => {
            super::pool::keep_awake();
            gemm::Parallelism::Rayon(0)
        }
        _ => gemm::Parallelism::None,
    };
    // SAFETY: every view was checked at construction to hold all of its elements inside its
    // slice, `dst` is a dense m×n slice borrowed mutably (so it aliases neither input), and the
    // shapes agree (asserted above). Strides fit in isize (asserted when each view was made).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            alpha,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: MatRef<'_>, b: MatRef<'_>) -> Vec<f32> {
        let at = |m: &MatRef<'_>, i: usize, j: usize| m.data[i * m.row_stride + j * m.col_stride];
        let mut out = vec![0.0; a.rows * b.cols];
        for i in 0..a.rows {
            for j in 0..b.cols {
                out[i * b.cols + j] = (0..a.cols).map(|p| at(&a, i, p) * at(&b, p, j)).sum();
            }
        }
        out
    }

    #[test]
    fn strided_views_and_accumulation_match_the_naive_product() {
        let a: Vec<f32> = (0..35).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..42).map(|i| (i as f32 * 0.11).cos()).collect();
        // a: 5×7 row-major; b stored 6×7 row-major and used transposed (7×6).
        let (a, b) = (MatRef::row_major(&a, 5, 7), MatRef::row_major(&b, 6, 7).t());
        let expected = naive(a, b);
        for threads in [Threads::One, Threads::Pool] {
            let mut out = vec![1.0; 30];
            gemm(MatMut::row_major(&mut out, 5, 6), a, b, 2.0, true, threads);
            for (o, e) in out.iter().zip(&expected) {
                assert!((o - (1.0 + 2.0 * e)).abs() < 1e-5, "{o} vs {}", 1.0 + 2.0 * e);
            }
            let mut two = vec![f32::NAN; 12];
            gemm(MatMut::row_major(&mut two, 2, 6), a.rows(1, 3), b, 1.0, false, threads);
            for (o, e) in two.iter().zip(&expected[6..18]) {
                assert!((o - e).abs() < 1e-5, "{o} vs {e}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "outside")]
    fn a_view_past_its_slice_is_refused() {
        MatRef::new(&[0.0; 10], 3, 4, 4, 1);
    }
}
