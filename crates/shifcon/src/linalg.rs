//! The small dense linear algebra the geometry needs, in f64 on the host: sentence states are a
//! few hundred rows of `d_model` columns, and the covariance problems live in a k-dimensional
//! principal subspace (k ≈ 16), where exact O(k³) methods cost nothing.

use crate::error::{Result, ShifconError};

/// Row-major `rows × cols`.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f64>,
}

impl Matrix {
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Matrix { rows, cols, data: vec![0.0; rows * cols] }
    }

    pub fn identity(n: usize) -> Self {
        let mut m = Matrix::zeros(n, n);
        (0..n).for_each(|i| m.data[i * n + i] = 1.0);
        m
    }

    /// From f32 rows of equal length (a readback of `[rows, cols]`).
    pub fn from_f32(rows: usize, cols: usize, values: &[f32]) -> Self {
        assert_eq!(values.len(), rows * cols, "matrix data has the wrong length");
        Matrix { rows, cols, data: values.iter().map(|&v| v as f64).collect() }
    }

    pub fn from_rows(rows: &[Vec<f64>]) -> Self {
        let cols = rows.first().map_or(0, Vec::len);
        assert!(rows.iter().all(|r| r.len() == cols), "rows of different lengths");
        Matrix { rows: rows.len(), cols, data: rows.concat() }
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    pub fn get(&self, i: usize, j: usize) -> f64 {
        self.data[i * self.cols + j]
    }

    pub fn set(&mut self, i: usize, j: usize, v: f64) {
        self.data[i * self.cols + j] = v;
    }

    /// Rows `indices` of `self`.
    pub fn select_rows(&self, indices: &[usize]) -> Matrix {
        Matrix { rows: indices.len(), cols: self.cols, data: indices.iter().flat_map(|&i| self.row(i).iter().copied()).collect() }
    }

    /// `self` stacked over `other`.
    pub fn stack(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.cols);
        let mut data = self.data.clone();
        data.extend_from_slice(&other.data);
        Matrix { rows: self.rows + other.rows, cols: self.cols, data }
    }

    pub fn transpose(&self) -> Matrix {
        let mut t = Matrix::zeros(self.cols, self.rows);
        for i in 0..self.rows {
            for j in 0..self.cols {
                t.data[j * self.rows + i] = self.data[i * self.cols + j];
            }
        }
        t
    }

    pub fn matmul(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.rows, "matmul shapes");
        let mut out = Matrix::zeros(self.rows, other.cols);
        for i in 0..self.rows {
            let out_row = &mut out.data[i * other.cols..(i + 1) * other.cols];
            for (k, &a) in self.row(i).iter().enumerate() {
                if a == 0.0 {
                    continue;
                }
                for (o, &b) in out_row.iter_mut().zip(other.row(k)) {
                    *o += a * b;
                }
            }
        }
        out
    }

    /// Column means.
    pub fn column_means(&self) -> Vec<f64> {
        let mut mean = vec![0.0; self.cols];
        for i in 0..self.rows {
            mean.iter_mut().zip(self.row(i)).for_each(|(m, &v)| *m += v);
        }
        let n = self.rows.max(1) as f64;
        mean.iter_mut().for_each(|m| *m /= n);
        mean
    }

    /// `self` with `v` subtracted from every row.
    pub fn minus_row(&self, v: &[f64]) -> Matrix {
        let mut out = self.clone();
        for i in 0..out.rows {
            out.data[i * out.cols..(i + 1) * out.cols].iter_mut().zip(v).for_each(|(x, &m)| *x -= m);
        }
        out
    }

    pub fn trace(&self) -> f64 {
        (0..self.rows.min(self.cols)).map(|i| self.get(i, i)).sum()
    }
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

pub fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

/// Eigenvalues and eigenvectors (columns of the returned matrix) of a symmetric matrix, sorted by
/// decreasing eigenvalue: Householder reduction to tridiagonal form, then the implicit QL
/// algorithm (the EISPACK `tred2`/`tql2` pair). O(n³), exact to rounding.
pub fn symmetric_eigen(m: &Matrix) -> (Vec<f64>, Matrix) {
    let n = m.rows;
    assert_eq!(n, m.cols, "symmetric_eigen needs a square matrix");
    if n == 0 {
        return (Vec::new(), Matrix::zeros(0, 0));
    }
    // v[i][j], row-major; symmetrised so rounding asymmetry in the input cannot matter.
    let mut v: Vec<Vec<f64>> = (0..n).map(|i| (0..n).map(|j| 0.5 * (m.get(i, j) + m.get(j, i))).collect()).collect();
    let mut d: Vec<f64> = v[n - 1].clone();
    let mut e = vec![0.0; n];
    tridiagonalise(&mut v, &mut d, &mut e);
    tridiagonal_ql(&mut v, &mut d, &mut e);
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[j].total_cmp(&d[i]));
    let values = order.iter().map(|&i| d[i]).collect();
    let mut vectors = Matrix::zeros(n, n);
    for (new, &old) in order.iter().enumerate() {
        for k in 0..n {
            vectors.set(k, new, v[k][old]);
        }
    }
    (values, vectors)
}

/// Householder reduction of the symmetric `v` to tridiagonal form: diagonal `d`, sub-diagonal
/// `e[1..]`, and `v` becomes the accumulated orthogonal transformation.
fn tridiagonalise(v: &mut [Vec<f64>], d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[i - 1][j];
                v[i][j] = 0.0;
                v[j][i] = 0.0;
            }
        } else {
            for dk in d[..i].iter_mut() {
                *dk /= scale;
                h += *dk * *dk;
            }
            let f = d[i - 1];
            let g = if f > 0.0 { -h.sqrt() } else { h.sqrt() };
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].iter_mut().for_each(|x| *x = 0.0);
            for j in 0..i {
                let f = d[j];
                v[j][i] = f;
                let mut g = e[j] + v[j][j] * f;
                for k in j + 1..i {
                    g += v[k][j] * d[k];
                    e[k] += v[k][j] * f;
                }
                e[j] = g;
            }
            let mut f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                let (f, g) = (d[j], e[j]);
                for k in j..i {
                    v[k][j] -= f * e[k] + g * d[k];
                }
                d[j] = v[i - 1][j];
                v[i][j] = 0.0;
            }
        }
        d[i] = h;
    }
    for i in 0..n - 1 {
        v[n - 1][i] = v[i][i];
        v[i][i] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[k][i + 1] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[k][i + 1] * v[k][j]).sum();
                for k in 0..=i {
                    v[k][j] -= g * d[k];
                }
            }
        }
        for row in v.iter_mut().take(i + 1) {
            row[i + 1] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[n - 1][j];
        v[n - 1][j] = 0.0;
    }
    v[n - 1][n - 1] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL iterations on the tridiagonal (`d`, `e`), rotating `v` along: `d` ends as the
/// eigenvalues and the columns of `v` as the eigenvectors.
fn tridiagonal_ql(v: &mut [Vec<f64>], d: &mut [f64], e: &mut [f64]) {
    let n = d.len();
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            for _ in 0..200 {
                let g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in d.iter_mut().skip(l + 2) {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    let g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for row in v.iter_mut() {
                        let h = row[i + 1];
                        row[i + 1] = s * row[i] + c * h;
                        row[i] = c * row[i] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

/// Lower-triangular `L` with `L Lᵀ = m` (m symmetric positive definite).
pub fn cholesky(m: &Matrix) -> Result<Matrix> {
    let n = m.rows;
    let mut l = Matrix::zeros(n, n);
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = (0..j).map(|k| l.get(i, k) * l.get(j, k)).sum();
            if i == j {
                let d = m.get(i, i) - s;
                if !(d > 0.0) {
                    return Err(ShifconError::Invalid(
                        "a covariance matrix is not positive definite (constant or duplicated sentence states?); raise the shrinkage"
                            .into(),
                    ));
                }
                l.set(i, j, d.sqrt());
            } else {
                l.set(i, j, (m.get(i, j) - s) / l.get(j, j));
            }
        }
    }
    Ok(l)
}

/// `L⁻¹ m L⁻ᵀ` for lower-triangular `L` (forward substitution on both sides).
pub fn whiten(m: &Matrix, l: &Matrix) -> Matrix {
    let n = m.rows;
    // Y = L⁻¹ m, column by column.
    let solve = |b: &Matrix| {
        let mut y = Matrix::zeros(n, b.cols);
        for c in 0..b.cols {
            for i in 0..n {
                let s: f64 = (0..i).map(|k| l.get(i, k) * y.get(k, c)).sum();
                y.set(i, c, (b.get(i, c) - s) / l.get(i, i));
            }
        }
        y
    };
    let y = solve(m);
    solve(&y.transpose())
}

/// The top-`k` right singular vectors of `x` (`rows × d`) as the columns of a `d × k` matrix,
/// with the variances `σ²/(rows−1)` along them: principal axes of already-centred data. Exact:
/// the eigendecomposition of the smaller of `X Xᵀ` and `Xᵀ X`.
pub fn principal_axes(x: &Matrix, k: usize) -> (Matrix, Vec<f64>) {
    let k = k.min(x.rows).min(x.cols);
    let denominator = (x.rows.max(2) - 1) as f64;
    let mut axes = Matrix::zeros(x.cols, k);
    let values = if x.rows < x.cols {
        // Gram trick: X Xᵀ = U Σ² Uᵀ, right vectors V = Xᵀ U Σ⁻¹.
        let (values, u) = symmetric_eigen(&x.matmul(&x.transpose()));
        let mut uk = Matrix::zeros(x.rows, k);
        for r in 0..x.rows {
            for j in 0..k {
                uk.set(r, j, u.get(r, j));
            }
        }
        let projected = x.transpose().matmul(&uk);
        for j in 0..k {
            let sigma = values[j].max(0.0).sqrt();
            for c in 0..x.cols {
                axes.set(c, j, if sigma > 0.0 { projected.get(c, j) / sigma } else { 0.0 });
            }
        }
        values
    } else {
        let (values, v) = symmetric_eigen(&x.transpose().matmul(x));
        for c in 0..x.cols {
            for j in 0..k {
                axes.set(c, j, v.get(c, j));
            }
        }
        values
    };
    (axes, values[..k].iter().map(|v| v.max(0.0) / denominator).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jacobi_recovers_a_known_spectrum() {
        let m = Matrix::from_rows(&[vec![4.0, 1.0, 0.0], vec![1.0, 3.0, 1.0], vec![0.0, 1.0, 2.0]]);
        let (values, vectors) = symmetric_eigen(&m);
        assert!((values.iter().sum::<f64>() - 9.0).abs() < 1e-12);
        for j in 0..3 {
            let v: Vec<f64> = (0..3).map(|i| vectors.get(i, j)).collect();
            let mv = m.matmul(&Matrix { rows: 3, cols: 1, data: v.clone() });
            for i in 0..3 {
                assert!((mv.data[i] - values[j] * v[i]).abs() < 1e-12);
            }
        }
        assert!(values[0] >= values[1] && values[1] >= values[2]);
    }

    #[test]
    fn whitening_by_itself_is_the_identity() {
        let m = Matrix::from_rows(&[vec![2.0, 0.5], vec![0.5, 1.0]]);
        let w = whiten(&m, &cholesky(&m).unwrap());
        for (i, v) in w.data.iter().enumerate() {
            assert!((v - if i % 3 == 0 { 1.0 } else { 0.0 }).abs() < 1e-12);
        }
        assert!(cholesky(&Matrix::zeros(2, 2)).is_err());
    }

    #[test]
    fn both_principal_axis_paths_agree() {
        // 320 rows × 300 columns: the covariance path; its first 150 rows: the Gram path.
        let mut rows = Vec::new();
        let mut state = 1u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for _ in 0..320 {
            rows.push((0..300).map(|c| next() * (10.0 / (1.0 + c as f64))).collect::<Vec<f64>>());
        }
        let x = Matrix::from_rows(&rows);
        let x = x.minus_row(&x.column_means());
        let (iterated, var_i) = principal_axes(&x, 3);
        let (var_e, exact) = symmetric_eigen(&x.transpose().matmul(&x));
        for j in 0..3 {
            let d: f64 = (0..300).map(|c| iterated.get(c, j) * exact.get(c, j)).sum();
            assert!((d.abs() - 1.0).abs() < 1e-8, "axis {j}: |cos| = {}", d.abs());
            assert!((var_i[j] - var_e[j] / 319.0).abs() < 1e-9 * var_i[j]);
        }
        let small = x.select_rows(&(0..150).collect::<Vec<_>>());
        let (gram_axes, _) = principal_axes(&small, 2);
        let (_, direct) = symmetric_eigen(&small.transpose().matmul(&small));
        for j in 0..2 {
            let d: f64 = (0..300).map(|c| gram_axes.get(c, j) * direct.get(c, j)).sum();
            assert!((d.abs() - 1.0).abs() < 1e-8);
        }
    }
}
