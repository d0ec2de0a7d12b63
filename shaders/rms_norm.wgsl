// y = x / √(mean(x²) + ε) · γ over each row of D values (HF `LlamaRMSNorm`), in one dispatch
// where burn composes six (square, mean, add, sqrt, divide, scale): the decoder's inference
// forward on a GPU is launch-bound (reports/gpu/README.md).
// One workgroup per row: each thread sums the squares of every WORKGROUP-th value, a tree adds
// the partial sums, and each thread writes its values.
//
// The row's values come from `row_value`, defined by the bindings file prepended:
// - rms_norm_bindings.wgsl: the row is x;
// - add_rms_norm_bindings.wgsl: the row is x + delta (a residual connection), which the kernel
//   also writes out, so the add costs no launch of its own.
//
// Launched by: crates/kernels/src/wgpu/layer.rs (`LayerBackend::rms_norm`, `add_rms_norm`),
// after row_workgroup.wgsl and one of the bindings files.
// Reference: crates/kernels/src/rms_norm.rs `rms_norm_reference` (`add_rms_norm_reference`).
//
// Placeholders: d (D), workgroup (a power of two), epsilon_bits (ε's f32 bits, so ε is exact),
// info_len (1).

const D: u32 = {{ d }}u;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let rows = uniform_info(lane)[0];
    let row = group.x + group.y * groups.x;
    if (row >= rows) {
        return;
    }
    let base = row * D;
    var s = 0.0;
    for (var chunk = 0u; chunk < D; chunk += WORKGROUP) {
        let i = chunk + lane;
        if (i < D) {
            let v = row_value(base + i);
            keep_row_value(base + i, v);
            s += v * v;
        }
    }
    partial[lane] = s;
    workgroupBarrier();
    tree_sum(lane);
    let rms = sqrt(partial[0] / f32(D) + bitcast<f32>({{ epsilon_bits }}u));
    for (var chunk = 0u; chunk < D; chunk += WORKGROUP) {
        let i = chunk + lane;
        if (i < D) {
            out[base + i] = row_value(base + i) / rms * gamma[i];
        }
    }
}
