// Rotary position embeddings in HF's "rotate half" convention, y = x · cos + rotate_half(x) · sin
// with rotate_half([a, b]) = [−b, a], in one dispatch where burn composes six (two slices, a
// negation, a concatenation, two products and a sum) — and reading the heads where the
// projection left them: x is the `[batch, heads, seq, head_dim]` view of a `[batch, seq, heads ·
// head_dim]` projection, strided, which the kernel reads in place instead of copying it first.
//
// Launched by: crates/kernels/src/wgpu/layer.rs (`LayerBackend::rotary`).
// Reference: crates/kernels/src/rotary.rs `rotary_reference`.
//
// Bindings: x (strided, unit stride along head_dim); cos, sin [batch, 1, seq, head_dim]; out
// [batch, heads, seq, head_dim] contiguous; info = [count, heads, seq, head_dim, x's strides of
// batch, heads and seq].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> cos_table: array<f32>;
@group(0) @binding(2) var<storage, read_write> sin_table: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * {{ workgroup }}u;
    if (i >= info[0]) {
        return;
    }
    let heads = info[1];
    let seq = info[2];
    let dim = info[3];
    let half = dim / 2u;
    let j = i % dim;
    let position = (i / dim) % seq;
    let head = (i / (dim * seq)) % heads;
    let batch = i / (dim * seq * heads);
    let row = batch * info[4] + head * info[5] + position * info[6];
    var rotated: f32;
    if (j < half) {
        rotated = -x[row + j + half];
    } else {
        rotated = x[row + j - half];
    }
    let table = (batch * seq + position) * dim + j;
    out[i] = x[row + j] * cos_table[table] + rotated * sin_table[table];
}
