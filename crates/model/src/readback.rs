//! Reading tensors back to the host. Asynchronous because WebGPU cannot block; natively the
//! same futures are driven by [`block_on`].

use burn::prelude::*;

use crate::error::{ModelError, Result};

/// The tensor's values as f32, row-major.
pub async fn to_vec_f32<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    let data = tensor.into_data_async().await.map_err(|e| ModelError::Device(format!("reading a tensor back failed: {e:?}")))?;
    data.convert::<f32>().try_into_vec::<f32>().map_err(|e| ModelError::Device(format!("unexpected tensor data: {e:?}")))
}

/// A boolean tensor's values, row-major (masks).
pub async fn to_vec_bool<const D: usize>(tensor: Tensor<D, Bool>) -> Result<Vec<bool>> {
    let data = tensor.into_data_async().await.map_err(|e| ModelError::Device(format!("reading a tensor back failed: {e:?}")))?;
    data.convert::<bool>().try_into_vec::<bool>().map_err(|e| ModelError::Device(format!("unexpected tensor data: {e:?}")))
}

/// Runs an async computation to completion on the current thread (native builds).
#[cfg(not(target_family = "wasm"))]
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    pollster::block_on(future)
}
