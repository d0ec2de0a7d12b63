//! Choosing the compute device from a user's flag. Backends are compile-time features; asking
//! for one this build lacks is an error that says how to get it.

use burn::prelude::*;

use crate::error::{ModelError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// burn's pure-Rust CPU backend (flex).
    #[default]
    Cpu,
    /// wgpu: Vulkan, Metal, DX12, or WebGPU in the browser.
    Wgpu,
    Cuda,
}

impl std::str::FromStr for DeviceKind {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "cpu" | "flex" => Ok(DeviceKind::Cpu),
            "wgpu" | "gpu" | "vulkan" | "metal" => Ok(DeviceKind::Wgpu),
            "cuda" => Ok(DeviceKind::Cuda),
            other => Err(ModelError::invalid(format!("unknown device `{other}` (use cpu, wgpu or cuda)"))),
        }
    }
}

impl std::fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            DeviceKind::Cpu => "cpu",
            DeviceKind::Wgpu => "wgpu",
            DeviceKind::Cuda => "cuda",
        })
    }
}

impl DeviceKind {
    /// The device, synchronously initialised (native builds; the browser uses
    /// `Device::wgpu_options().init_async()`).
    pub fn device(self) -> Result<Device> {
        match self {
            #[cfg(feature = "flex")]
            DeviceKind::Cpu => Ok(Device::flex()),
            #[cfg(feature = "wgpu")]
            DeviceKind::Wgpu => Ok(Device::wgpu(Default::default())),
            #[cfg(feature = "cuda")]
            DeviceKind::Cuda => Ok(Device::cuda(0)),
            #[allow(unreachable_patterns)]
            other => Err(ModelError::Device(format!(
                "this build has no `{other}` backend; rebuild with `--features {}`",
                match other {
                    DeviceKind::Cpu => "flex",
                    DeviceKind::Wgpu => "wgpu",
                    DeviceKind::Cuda => "cuda",
                }
            ))),
        }
    }
}

/// Parses `cpu`, `wgpu`, `wgpu:N` (N-th discrete GPU), `cuda` or `cuda:N` into a device.
pub fn device_from_spec(spec: &str) -> Result<Device> {
    let (kind, index) = match spec.split_once(':') {
        Some((k, i)) => {
            let i: usize = i.parse().map_err(|_| ModelError::invalid(format!("device `{spec}`: `{i}` is not a device index")))?;
            (k.parse::<DeviceKind>()?, Some(i))
        }
        None => (spec.parse::<DeviceKind>()?, None),
    };
    match (kind, index) {
        (_, None) => kind.device(),
        (DeviceKind::Cpu, Some(_)) => Err(ModelError::invalid(format!("device `{spec}`: the CPU has no index"))),
        #[cfg(feature = "wgpu")]
        (DeviceKind::Wgpu, Some(i)) => Ok(Device::wgpu(burn::tensor::DeviceKind::DiscreteGpu(i))),
        #[cfg(feature = "cuda")]
        (DeviceKind::Cuda, Some(i)) => Ok(Device::cuda(i)),
        #[allow(unreachable_patterns)]
        (other, Some(_)) => other.device(),
    }
}
