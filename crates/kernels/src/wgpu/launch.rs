//! Launching a WGSL template from `shaders/`: placeholders filled, buffers bound, workgroups
//! counted (2-D when one dimension would pass the 65,535 limit).

use burn::backend::wgpu::{CubeTensor, KernelSource, SourceKernel, SourceTemplate, into_contiguous};
use burn::tensor::{DType, Shape};
use cubecl::prelude::KernelId;
use cubecl::server::{Handle, KernelArguments};
use cubecl::{CubeCount, CubeDim};

/// Most workgroups per grid dimension every WebGPU adapter accepts.
pub const MAX_GROUPS_PER_DIM: u32 = 65_535;
/// Threads of the 1-D kernels.
pub const WORKGROUP: u32 = 256;
/// Threads per side of the blocked-matmul kernels' workgroups (TILE × TILE threads).
pub const TILE: u32 = 16;
/// Logits per side of one workgroup's block in the blocked-matmul kernels: each thread holds a
/// 4 × 4 register tile (four vec4 rows, see `shaders/logit_block.wgsl`).
pub const BLOCK: u32 = TILE * 4;

/// A shader file with its placeholders.
pub struct Template {
    pub name: &'static str,
    pub source: &'static str,
    pub values: Vec<(&'static str, String)>,
}

impl KernelSource for Template {
    fn source(&self) -> SourceTemplate {
        self.values.iter().fold(SourceTemplate::new(self.source), |t, (k, v)| t.register(*k, v.clone()))
    }

    fn id(&self) -> KernelId {
        KernelId::new::<Self>().info((self.name, self.values.clone()))
    }

    fn lang(&self) -> &'static str {
        "wgsl"
    }
}

/// Workgroups for `items` items of `per_group` each, spread over x and y.
pub fn groups_for(items: usize, per_group: u32) -> (u32, u32) {
    let groups = (items as u64).div_ceil(per_group as u64).max(1);
    let x = groups.min(MAX_GROUPS_PER_DIM as u64);
    (x as u32, groups.div_ceil(x) as u32)
}

/// Workgroups for one thread per entry of a `[rows, width]` matrix, `per_group` entries of a row
/// per workgroup: x over the row, y over rows, z where rows pass the per-dimension limit.
pub fn row_grid(rows: usize, width: usize, per_group: u32) -> (u32, u32, u32) {
    let x = (width as u32).div_ceil(per_group).max(1);
    let rows = rows.max(1) as u32;
    let y = rows.min(MAX_GROUPS_PER_DIM);
    (x, y, rows.div_ceil(y))
}

/// A new contiguous f32 tensor on `like`'s device.
pub fn empty_f32(like: &CubeTensor, shape: Shape) -> CubeTensor {
    let handle = like.client.empty(shape.num_elements() * DType::F32.size());
    CubeTensor::new_contiguous(like.client.clone(), like.device.clone(), shape, handle, DType::F32)
}

pub fn u32_buffer(like: &CubeTensor, values: &[u32]) -> Handle {
    like.client.create_from_slice(bytemuck::cast_slice(values))
}

pub fn f32_buffer(like: &CubeTensor, values: &[f32]) -> Handle {
    like.client.create_from_slice(bytemuck::cast_slice(values))
}

/// Contiguous f32 layout, which every shader assumes.
pub fn prepared(tensor: CubeTensor) -> CubeTensor {
    assert_eq!(tensor.dtype, DType::F32, "the WGSL kernels take f32 tensors (cast first)");
    into_contiguous(tensor)
}

/// Template values of a kernel whose only placeholder is its `workgroup` size ([`WORKGROUP`]).
pub fn workgroup_values() -> Vec<(&'static str, String)> {
    vec![("workgroup", WORKGROUP.to_string())]
}

/// The grid of a 1-D kernel: one thread per item, [`WORKGROUP`] a group.
pub fn elementwise_grid(items: usize) -> (u32, u32, u32) {
    let (x, y) = groups_for(items, WORKGROUP);
    (x, y, 1)
}

/// Launches a 1-D kernel over `items` ([`elementwise_grid`], [`WORKGROUP`] threads a group).
pub fn launch_elementwise(like: &CubeTensor, template: Template, items: usize, buffers: Vec<Handle>) {
    launch(like, template, CubeDim::new_1d(WORKGROUP), elementwise_grid(items), buffers);
}

pub fn launch(like: &CubeTensor, template: Template, cube_dim: CubeDim, count: (u32, u32, u32), buffers: Vec<Handle>) {
    let arguments = KernelArguments::new().with_buffers(buffers.into_iter().map(|h| h.binding()).collect());
    like.client.launch(Box::new(SourceKernel::new(template, cube_dim)), CubeCount::Static(count.0, count.1, count.2), arguments);
}
