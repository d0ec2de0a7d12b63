// Forward of ShifCon's symmetric InfoNCE, pass 2 of 2: the per-block (max, sum) partials of
// contrastive_partials.wgsl folded into lse [2, n] — row 0 the log-sum-exp of every logit row,
// row 1 of every column. One thread per row or column.
//
// Launched by: crates/kernels/src/wgpu/contrastive.rs (`logsumexp_both_ways`).
// Reference: crates/kernels/src/contrastive.rs `contrastive_loss_reference`.
//
// Bindings: partials [4, n, blocks]; lse [2, n]; info = [n, blocks].

@group(0) @binding(0) var<storage, read_write> partials: array<f32>;
@group(0) @binding(1) var<storage, read_write> lse: array<f32>;
@group(0) @binding(2) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let n = info[0];
    let blocks = info[1];
    let id = gid.x;
    if (id >= 2u * n) {
        return;
    }
    // id < n: row id (partials 0 and 1); else column id − n (partials 2 and 3).
    let maxes = (id / n) * 2u * n * blocks + (id % n) * blocks;
    let sums = maxes + n * blocks;
    var m = -3.402823e38;
    for (var b = 0u; b < blocks; b++) {
        m = max(m, partials[maxes + b]);
    }
    var s = 0.0;
    for (var b = 0u; b < blocks; b++) {
        s += partials[sums + b] * exp(partials[maxes + b] - m);
    }
    lse[id] = m + log(s);
}
