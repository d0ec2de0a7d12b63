//! AdamW's step on wgpu as one WGSL dispatch a tensor (`shaders/adamw.wgsl`); see
//! `crate::adamw` for the formula and the reference.

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, Cube, Dispatch, TensorMetadata, backend_extension};
use burn::prelude::*;

use super::launch::{Template, empty_f32, f32_buffer, launch_elementwise, prepared, u32_buffer, workgroup_values};

// burn 0.22 runs every cubecl runtime as one `Cube` backend; the public API calls this only on
// wgpu devices, where the WGSL template compiles.
#[backend_extension(Cube)]
pub trait AdamWBackend: Backend {
    /// The parameter and both moments after one step; `constants` = `[lr, β1, β2, ε, 1 − lr·λ,
    /// 1 − β1^t, 1 − β2^t]`.
    #[allow(clippy::type_complexity, reason = "three tensors out, as the step makes them")]
    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        constants: [f32; 7],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>);
}

impl AdamWBackend for Cube {
    fn adamw_step(
        param: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        first: FloatTensor<Self>,
        second: FloatTensor<Self>,
        constants: [f32; 7],
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let (param, grad, first, second) = (prepared(param), prepared(grad), prepared(first), prepared(second));
        let shape = param.shape();
        let count = shape.num_elements();
        let [param_out, first_out, second_out] = [(); 3].map(|()| empty_f32(&param, shape.clone()));
        let template = Template { name: "adamw", source: include_str!("../../../../shaders/adamw.wgsl"), values: workgroup_values() };
        let info = u32_buffer(&param, &[count as u32]);
        let hyper = f32_buffer(&param, &constants);
        let buffers = vec![
            param.handle.clone(),
            grad.handle.clone(),
            first.handle.clone(),
            second.handle.clone(),
            param_out.handle.clone(),
            first_out.handle.clone(),
            second_out.handle.clone(),
            info,
            hyper,
        ];
        launch_elementwise(&param, template, count, buffers);
        (param_out, first_out, second_out)
    }
}

/// See [`AdamWBackend::adamw_step`]; the caller checked the shapes, the device and the dtypes.
pub(crate) fn adamw_step<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    first: Tensor<D>,
    second: Tensor<D>,
    constants: [f32; 7],
) -> (Tensor<D>, Tensor<D>, Tensor<D>) {
    let (param, first, second) = <Dispatch as AdamWBackend>::adamw_step(
        param.into_dispatch(),
        grad.into_dispatch(),
        first.into_dispatch(),
        second.into_dispatch(),
        constants,
    );
    (Tensor::from_dispatch(param), Tensor::from_dispatch(first), Tensor::from_dispatch(second))
}
