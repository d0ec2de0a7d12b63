// The gated MLP's activation, silu(gate) · up = gate / (1 + e^(−gate)) · up, in one dispatch
// where burn launches two (silu, then the product).
//
// Launched by: crates/kernels/src/wgpu/layer.rs (`LayerBackend::swiglu`).
// Reference: crates/kernels/src/swiglu.rs `swiglu_reference`.
//
// Bindings: gate, up, out [count] (contiguous); info = [count].

@group(0) @binding(0) var<storage, read_write> gate: array<f32>;
@group(0) @binding(1) var<storage, read_write> up: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * {{ workgroup }}u;
    if (i < info[0]) {
        let g = gate[i];
        out[i] = g / (1.0 + exp(-g)) * up[i];
    }
}
