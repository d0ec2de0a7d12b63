// One AdamW step (Loshchilov & Hutter 2019, decoupled weight decay; burn's `AdamW` without
// AMSGrad or cautious decay) over every value of one parameter tensor, in one dispatch where burn
// composes about fifteen (the moments' scalings and sums, the square, the bias corrections, the
// square root, ε, the division, the decay and the learning rate): a training step on a GPU is
// bound by launches, and the optimizer's were 40 % of them (reports/training/README.md).
//
//   m' = β1·m + (1 − β1)·g        v' = β2·v + (1 − β2)·g²
//   θ' = θ·(1 − lr·λ) − lr · (m' / c1) / (√(v' / c2) + ε),   c1 = 1 − β1^t, c2 = 1 − β2^t
//
// Launched by: crates/kernels/src/wgpu/adamw.rs (`AdamWBackend::adamw_step`).
// Reference: crates/kernels/src/adamw.rs `adamw_step_reference` (burn's formula, op for op).
//
// Bindings: param, grad, m, v (the moments before the step; zeros at the first), param_out,
// m_out, v_out [count]; info = [count]; hyper = [lr, β1, β2, ε, 1 − lr·λ, c1, c2].

@group(0) @binding(0) var<storage, read_write> param: array<f32>;
@group(0) @binding(1) var<storage, read_write> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> m: array<f32>;
@group(0) @binding(3) var<storage, read_write> v: array<f32>;
@group(0) @binding(4) var<storage, read_write> param_out: array<f32>;
@group(0) @binding(5) var<storage, read_write> m_out: array<f32>;
@group(0) @binding(6) var<storage, read_write> v_out: array<f32>;
@group(0) @binding(7) var<storage, read_write> info: array<u32>;
@group(0) @binding(8) var<storage, read_write> hyper: array<f32>;

@compute @workgroup_size({{ workgroup }}, 1, 1)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * {{ workgroup }}u;
    if (i < info[0]) {
        let g = grad[i];
        let first = hyper[1] * m[i] + (1.0 - hyper[1]) * g;
        let second = hyper[2] * v[i] + (1.0 - hyper[2]) * (g * g);
        let delta = (first / hyper[5]) / (sqrt(second / hyper[6]) + hyper[3]);
        param_out[i] = param[i] * hyper[4] - hyper[0] * delta;
        m_out[i] = first;
        v_out[i] = second;
    }
}
