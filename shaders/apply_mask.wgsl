// Zeroes pruned weights: out = weight where keep is 1, else 0. The in-place variant writes into
// the weight's own buffer (used when no other tensor shares it).
//
// Launched by: crates/kernels/src/wgpu/masking.rs (`apply_mask`).
// Reference: crates/kernels/src/masking.rs `apply_mask_reference`.
//
// Bindings (out of place): weight; keep; out; info = [count].
// Bindings (in place):     weight (read_write); keep; info = [count].
// Elements (the `elem` placeholder) are vec4<f32> when the count is a multiple of 4 (one 16-byte load per
// thread and buffer, which software adapters vectorise), else f32; count is in elements.

{{ bindings }}

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * {{ workgroup }}u;
    if (i < info[0]) {
        {{ store }} = select({{ elem }}(0.0), weight[i], keep[i] > {{ elem }}(0.5));
    }
}
