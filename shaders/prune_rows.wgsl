// Exact-k unstructured pruning mask: in every row, the k entries of smallest score are pruned,
// ties broken by the lower column index (the reference's order). One workgroup per row:
//  1. binary search over the bit patterns of the (non-negative) scores for the k-th smallest,
//     counting with a workgroup atomic — 31 rounds of one pass over the row;
//  2. entries below it are pruned; of those equal to it, the first `k − count_below` by index,
//     ranked through a prefix sum over the threads' contiguous chunks.
//
// Launched by: crates/kernels/src/wgpu/masking.rs (`prune_mask`, unstructured).
// Reference: crates/kernels/src/masking.rs `prune_mask_reference`.
//
// Bindings: scores [rows, width] (≥ 0); keep [rows, width] (1.0 keep, 0.0 prune);
// info = [rows, width, k]. All read_write, sizes made uniform: see logit_block.wgsl.

@group(0) @binding(0) var<storage, read_write> scores: array<f32>;
@group(0) @binding(1) var<storage, read_write> keep: array<f32>;
@group(0) @binding(2) var<storage, read_write> info: array<u32>;

const THREADS: u32 = {{ workgroup }}u;

var<workgroup> counter: atomic<u32>;
var<workgroup> shared_count: u32;
var<workgroup> dims: vec3<u32>;
var<workgroup> equal_before: array<u32, {{ workgroup }}>;

fn bits_of(v: f32) -> u32 {
    return bitcast<u32>(max(v, 0.0));
}

// How many entries of the row have bits <= limit (all threads get the same answer).
fn count_at_most(base: u32, width: u32, limit: u32, tid: u32) -> u32 {
    if (tid == 0u) {
        atomicStore(&counter, 0u);
    }
    workgroupBarrier();
    var local = 0u;
    for (var j = tid; j < width; j += THREADS) {
        if (bits_of(scores[base + j]) <= limit) {
            local += 1u;
        }
    }
    atomicAdd(&counter, local);
    workgroupBarrier();
    if (tid == 0u) {
        shared_count = atomicLoad(&counter);
    }
    return workgroupUniformLoad(&shared_count);
}

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    if (lid.x == 0u) {
        dims = vec3<u32>(info[0], info[1], info[2]);
    }
    let size = workgroupUniformLoad(&dims);
    let width = size.y;
    let k = size.z;
    let row = wg.x + wg.y * {{ max_groups_x }}u;
    if (row >= size.x) {
        return;
    }
    let base = row * width;
    let tid = lid.x;

    // Smallest bit pattern t with count(bits <= t) >= k: the k-th smallest score.
    var lo = 0u;
    var hi = 0x7f800000u;
    for (var round = 0u; round < 32u; round++) {
        if (lo >= hi) {
            break;
        }
        let mid = lo + (hi - lo) / 2u;
        if (count_at_most(base, width, mid, tid) >= k) {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    let kth = lo;
    var below = 0u;
    if (kth > 0u) {
        below = count_at_most(base, width, kth - 1u, tid);
    }
    let equal_to_prune = k - below;

    // Each thread owns a contiguous chunk; equal entries are ranked in index order.
    let chunk = (width + THREADS - 1u) / THREADS;
    let start = min(tid * chunk, width);
    let end = min(start + chunk, width);
    var equals = 0u;
    for (var j = start; j < end; j++) {
        if (bits_of(scores[base + j]) == kth) {
            equals += 1u;
        }
    }
    equal_before[tid] = equals;
    workgroupBarrier();
    if (tid == 0u) {
        var running = 0u;
        for (var t = 0u; t < THREADS; t++) {
            let c = equal_before[t];
            equal_before[t] = running;
            running += c;
        }
    }
    workgroupBarrier();
    var rank = equal_before[tid];
    for (var j = start; j < end; j++) {
        let b = bits_of(scores[base + j]);
        var kept = 1.0;
        if (b < kth) {
            kept = 0.0;
        } else if (b == kth) {
            if (rank < equal_to_prune) {
                kept = 0.0;
            }
            rank += 1u;
        }
        keep[base + j] = kept;
    }
}
