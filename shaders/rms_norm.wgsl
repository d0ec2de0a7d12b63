// y = x / √(mean(x²) + ε) · γ over each row of D values (HF `LlamaRMSNorm`), in one dispatch
// where burn composes six (square, mean, add, sqrt, divide, scale): the decoder's inference
// forward on a GPU is launch-bound (reports/gpu/README.md).
// One workgroup per row: each thread sums the squares of every WORKGROUP-th value, a tree adds
// the partial sums, and each thread writes its values.
//
// Launched by: crates/kernels/src/wgpu/layer.rs (`LayerBackend::rms_norm`), with
// row_workgroup.wgsl prepended.
// Reference: crates/kernels/src/rms_norm.rs `rms_norm_reference`.
//
// Bindings: x [rows, D]; gamma [D]; out [rows, D]; info = [rows].
// Placeholders: d (D), workgroup (a power of two), epsilon_bits (ε's f32 bits, so ε is exact),
// info_len (1).

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

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
            let v = x[base + i];
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
            out[base + i] = x[base + i] / rms * gamma[i];
        }
    }
}
