// Bindings of rms_norm.wgsl for a plain RMSNorm: x [rows, D]; gamma [D]; out [rows, D];
// info = [rows].

@group(0) @binding(0) var<storage, read_write> x: array<f32>;
@group(0) @binding(1) var<storage, read_write> gamma: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> info: array<u32>;

fn row_value(i: u32) -> f32 {
    return x[i];
}

fn keep_row_value(i: u32, v: f32) {}
