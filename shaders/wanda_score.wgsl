// Wanda score S_ij = |W_ij| · ‖X_j‖₂: the weight magnitude times the L2 norm of its input feature
// over the calibration tokens (Sun et al. 2024; Kim et al. 2024 with translation calibration).
//
// Launched by: crates/kernels/src/wgpu/masking.rs (`wanda_scores`).
// Reference: crates/kernels/src/masking.rs `wanda_scores_reference`.
//
// Bindings: weight [rows, width]; norms [width]; scores [rows, width]; info = [rows, width].
// Elements (the `elem` placeholder) are vec4<f32> (four columns) when the width is a multiple of 4, else
// f32; width is in elements.

@group(0) @binding(0) var<storage, read_write> weight: array<{{ elem }}>;
@group(0) @binding(1) var<storage, read_write> norms: array<{{ elem }}>;
@group(0) @binding(2) var<storage, read_write> scores: array<{{ elem }}>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

// One thread per entry on a grid of (column blocks, rows): the row and column come from the grid,
// with no integer division (which software adapters emulate lane by lane). Rows past the 65,535
// groups one grid dimension allows continue along z.
@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(workgroup_id) wg: vec3<u32>) {
    let rows = info[0];
    let width = info[1];
    let row = wg.y + wg.z * {{ max_groups }}u;
    let col = gid.x;
    if (row < rows && col < width) {
        let i = row * width + col;
        scores[i] = abs(weight[i]) * norms[col];
    }
}
