//! RMSNorm of the decoder. burn's `RmsNorm` module holds the weight (so parameter paths and
//! records never change); the forward runs through `rosetta_kernels::rms_norm`, fused when
//! training on the CPU backend and burn's own formula elsewhere.

use burn::nn::RmsNorm;
use burn::prelude::*;

use crate::error::ModelError;
use crate::intervention::Trace;

/// `norm(x)`. A failure (shapes are checked at load, so none is expected) is recorded in the
/// pass's trace like a projection's, and zeros stand in.
pub(crate) fn rms_norm(norm: &RmsNorm, x: Tensor<3>, trace: &mut Trace) -> Tensor<3> {
    let (dims, device) = (x.dims(), x.device());
    match rosetta_kernels::rms_norm::rms_norm(x, norm.gamma.val(), norm.epsilon) {
        Ok(y) => y,
        Err(e) => {
            trace.record_failure(ModelError::invalid(e.to_string()));
            Tensor::zeros(dims, &device)
        }
    }
}

/// `(x + delta, norm(x + delta))`: a residual connection and the norm after it, one dispatch on
/// wgpu (`rosetta_kernels::rms_norm::add_rms_norm`). A failure is recorded as in [`rms_norm`];
/// the sum is still returned and zeros stand in for the norm.
pub(crate) fn add_rms_norm(norm: &RmsNorm, x: Tensor<3>, delta: Tensor<3>, trace: &mut Trace) -> (Tensor<3>, Tensor<3>) {
    let (dims, device) = (x.dims(), x.device());
    match rosetta_kernels::rms_norm::add_rms_norm(x.clone(), delta.clone(), norm.gamma.val(), norm.epsilon) {
        Ok(pair) => pair,
        Err(e) => {
            trace.record_failure(ModelError::invalid(e.to_string()));
            (x + delta, Tensor::zeros(dims, &device))
        }
    }
}
