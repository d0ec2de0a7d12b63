//! Exact-k pruning masks on host rows, by selection instead of sorting: per row, the `k`
//! smallest scores under (score, column) order are pruned — what
//! [`crate::masking::prune_mask_reference`] defines through a sort and a cumulative sum — found
//! with `select_nth_unstable_by` (O(width) per row rather than O(width · log width)). A Wanda
//! sweep masks every projection of the model (135 M scores for SmolLM2), where the sort was
//! the largest cost after the calibration passes.

use std::cmp::Ordering;

use super::rows::for_each_row;

/// The order pruning uses: score ascending (`-0.0` equal to `0.0`, as the reference's
/// comparisons have it), then column ascending — so of equal scores the lower column goes first.
fn order(values: &[f32], a: u32, b: u32) -> Ordering {
    let (x, y) = (values[a as usize] + 0.0, values[b as usize] + 0.0);
    x.total_cmp(&y).then(a.cmp(&b))
}

/// `1.0` keep, `0.0` prune for each of the `rows × width` row-major `scores`: the `k` smallest
/// of each row (under [`order`]) pruned. `k = 0` keeps everything; `k ≤ width`.
pub fn exact_k_keep(scores: &[f32], width: usize, k: usize) -> Vec<f32> {
    assert!(width > 0 && scores.len().is_multiple_of(width) && k <= width, "exact_k_keep: checked by the caller");
    let rows = scores.len() / width;
    let mut keep = vec![1.0f32; scores.len()];
    if k == 0 {
        return keep;
    }
    let mut unused = vec![(); rows];
    for_each_row(&mut keep, width, &mut unused, |i, keep, _| {
        let values = &scores[i * width..(i + 1) * width];
        let mut columns: Vec<u32> = (0..width as u32).collect();
        let (_, &mut last_pruned, _) = columns.select_nth_unstable_by(k - 1, |&a, &b| order(values, a, b));
        for (j, keep) in keep.iter_mut().enumerate() {
            if order(values, j as u32, last_pruned) != Ordering::Greater {
                *keep = 0.0;
            }
        }
    });
    keep
}
