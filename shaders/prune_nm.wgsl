// N:M semi-structured pruning mask: in every group of M consecutive entries of a row, the M − N
// of smallest score are pruned (ties: lower index first). One thread per group ranks each entry
// against the others of its group.
//
// Launched by: crates/kernels/src/wgpu/masking.rs (`prune_mask`, N:M).
// Reference: crates/kernels/src/masking.rs `prune_mask_reference`.
//
// Bindings: scores [groups · M]; keep [groups · M]; info = [groups, M, M − N].

@group(0) @binding(0) var<storage, read_write> scores: array<f32>;
@group(0) @binding(1) var<storage, read_write> keep: array<f32>;
@group(0) @binding(2) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let group = gid.x + gid.y * groups.x * {{ workgroup }}u;
    let m = info[1];
    let pruned = info[2];
    if (group >= info[0]) {
        return;
    }
    let base = group * m;
    for (var e = 0u; e < m; e++) {
        let v = scores[base + e];
        var rank = 0u;
        for (var f = 0u; f < m; f++) {
            let w = scores[base + f];
            if (w < v || (w == v && f < e)) {
                rank += 1u;
            }
        }
        keep[base + e] = select(1.0, 0.0, rank < pruned);
    }
}
