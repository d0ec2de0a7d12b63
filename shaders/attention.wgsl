// Causal scaled dot-product attention with grouped key/value heads, for inference, in one
// dispatch where burn launches about seventeen (the causal mask built and applied, the scaled
// scores, a softmax of five ops, two matmuls, the heads repeated): the decoder's forward on a GPU
// is launch-bound (reports/gpu/README.md).
// One workgroup per query row (batch, head, position): the threads split the visible keys for
// the scores and the softmax sums (kept in a scratch row of `scores`), then the head dimensions
// for the weighted sum of the values.
//
// Launched by: crates/kernels/src/wgpu/layer.rs (`LayerBackend::attention`), with
// row_workgroup.wgsl prepended.
// Reference: crates/kernels/src/attention.rs `attention_reference` (mask None: causal, queries
// at the end of the keys).
//
// Bindings: q [batch, heads, seq, dim], k and v [batch, kv_heads, keys, dim] (each strided, unit
// stride along dim); scores [batch · heads · seq, keys] scratch; out [batch, heads, seq, dim];
// info = [rows, heads, seq, keys, dim, heads per kv head, q's strides of batch, head and
// position, k's, v's].

@group(0) @binding(0) var<storage, read_write> q: array<f32>;
@group(0) @binding(1) var<storage, read_write> k: array<f32>;
@group(0) @binding(2) var<storage, read_write> v: array<f32>;
@group(0) @binding(3) var<storage, read_write> scores: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;
@group(0) @binding(5) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(workgroup_id) group: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let sizes = uniform_info(lane);
    let row = group.x + group.y * groups.x;
    if (row >= sizes[0]) {
        return;
    }
    let heads = sizes[1];
    let seq = sizes[2];
    let keys = sizes[3];
    let dim = sizes[4];
    let position = row % seq;
    let head = (row / seq) % heads;
    let batch = row / (seq * heads);
    let kv_head = head / sizes[5];
    let q_at = batch * sizes[6] + head * sizes[7] + position * sizes[8];
    let k_at = batch * sizes[9] + kv_head * sizes[10];
    let v_at = batch * sizes[12] + kv_head * sizes[13];
    // Causal, the queries being the last `seq` of the keys.
    let visible = keys - seq + position + 1u;
    let scale = 1.0 / sqrt(f32(dim));
    let base = row * keys;

    // The lowest finite f32 to 7 digits: a larger literal is out of f32's range, which Tint refuses.
    var m = -3.402823e38;
    for (var chunk = 0u; chunk < visible; chunk += WORKGROUP) {
        let j = chunk + lane;
        if (j < visible) {
            var product = 0.0;
            let key = k_at + j * sizes[11];
            for (var c = 0u; c < dim; c++) {
                product += q[q_at + c] * k[key + c];
            }
            let s = product * scale;
            scores[base + j] = s;
            m = max(m, s);
        }
    }
    partial[lane] = m;
    workgroupBarrier();
    tree_max(lane);
    let row_max = partial[0];
    workgroupBarrier();

    var l = 0.0;
    for (var chunk = 0u; chunk < visible; chunk += WORKGROUP) {
        let j = chunk + lane;
        if (j < visible) {
            let p = exp(scores[base + j] - row_max);
            scores[base + j] = p;
            l += p;
        }
    }
    partial[lane] = l;
    // The probabilities each thread wrote are read by the others below.
    storageBarrier();
    workgroupBarrier();
    tree_sum(lane);
    let total = partial[0];

    for (var chunk = 0u; chunk < dim; chunk += WORKGROUP) {
        let c = chunk + lane;
        if (c < dim) {
            var acc = 0.0;
            for (var j = 0u; j < visible; j++) {
                acc += scores[base + j] * v[v_at + j * sizes[14] + c];
            }
            out[row * dim + c] = acc / total;
        }
    }
}
