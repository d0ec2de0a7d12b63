// Wanda score S_ij = |W_ij| · ‖X_j‖₂: the weight magnitude times the L2 norm of its input feature
// over the calibration tokens (Sun et al. 2024; Kim et al. 2024 with translation calibration).
//
// Launched by: crates/kernels/src/wgpu/masking.rs (`wanda_scores`).
// Reference: crates/kernels/src/masking.rs `wanda_scores_reference`.
//
// Bindings: weight [rows, width]; norms [width]; scores [rows, width]; info = [rows, width].

@group(0) @binding(0) var<storage, read_write> weight: array<f32>;
@group(0) @binding(1) var<storage, read_write> norms: array<f32>;
@group(0) @binding(2) var<storage, read_write> scores: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let width = info[1];
    let total = info[0] * width;
    let i = gid.x + gid.y * groups.x * {{ workgroup }}u;
    if (i < total) {
        scores[i] = abs(weight[i]) * norms[i % width];
    }
}
