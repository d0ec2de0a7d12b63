//! The fused CPU kernels (`crate::cpu`) registered with burn's CPU backend (Flex) and its
//! autodiff: each op is a `#[backend_extension(Autodiff, Flex)]` trait whose autodiff
//! implementation hands burn a backward of our own, the way `crate::wgpu` does for the
//! contrastive loss. Only the public functions of `crate::attention` and `crate::cross_entropy`
//! call in here, after validating their inputs on the host, so the ops themselves cannot fail.

pub(crate) mod attention;
pub(crate) mod cross_entropy;
pub(crate) mod linear;
pub(crate) mod rms_norm;
pub(crate) mod rotary;
pub(crate) mod swiglu;

use burn::backend::flex::FlexTensor;
use burn::prelude::*;

/// The tensor's values, row-major (copied only when its layout is not already dense).
pub(crate) fn dense(t: &FlexTensor) -> FlexTensor {
    if t.layout().is_contiguous() && t.layout().start_offset() == 0 { t.clone() } else { t.to_contiguous() }
}

/// The f32 values of a dense tensor (see [`dense`]); the public functions checked the dtype.
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().unwrap_or_else(|| unreachable!("the public functions pass dense f32 tensors"))
}

pub(crate) fn tensor(values: Vec<f32>, shape: &[usize]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape.to_vec()))
}

/// Whether `device` is burn's CPU backend (with or without autodiff).
pub(crate) fn is_flex(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    matches!(device.clone().without_autodiff().as_dispatch(), DispatchDevice::Flex(_))
}
