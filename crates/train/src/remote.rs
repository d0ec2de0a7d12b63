//! Devices on other hosts (multi-node): noticing that one stopped answering.
//!
//! A `ws://HOST:PORT` entry of `model.devices` is burn's remote backend: the shard's operations
//! run on that host (`rosetta serve-device`), the autodiff graph stays here. burn's client has
//! no time-outs or health calls of its own: operations sent to a server that died are dropped,
//! the next read fails, and a read through the infallible API (`into_data`) panics. So the
//! trainer reads its scalars through [`read_scalar`], checks every remote device once a step
//! before anything is written ([`RemoteDevices::check`]), and turns a panic of a run that has
//! remote devices into [`TrainError::DeviceLost`] ([`RemoteDevices::after_panic`]). Nothing
//! already written is lost: checkpoints are written whole or not at all, so `--resume` goes on
//! from the last one once the server is back.

use burn::prelude::*;

use crate::error::{Result, TrainError};

/// The remote entries of a run's device list, with their specs for messages.
pub struct RemoteDevices {
    devices: Vec<(String, Device)>,
}

/// Whether a device spec names a device on another host.
pub fn is_remote_spec(spec: &str) -> bool {
    spec.starts_with("ws://") || spec.starts_with("wss://")
}

/// A run with remote devices keeps its first device on its own host: that device holds the
/// model, the optimizer and the gradient sum, so every transfer is between this host and one
/// server. (A remote first device would make burn move tensors server to server, and burn 0.22's
/// servers keep their connection to a peer after the peer restarts: the first transfer after a
/// lost host came back would fail, and the run could not resume.)
pub fn check_device_order(specs: &[String]) -> std::result::Result<(), String> {
    match specs.first() {
        Some(first) if is_remote_spec(first) => Err(format!(
            "model.devices starts with the remote device `{first}`; the first device holds the model, the optimizer and \
             the checkpoints' tensors and must be this host's (cpu, cuda:N, wgpu:N): list remote devices after it, as in \
             devices = [\"cpu\", \"{first}\"]"
        )),
        _ => Ok(()),
    }
}

impl RemoteDevices {
    /// The remote devices among `specs` (parsed in the same order as `devices`).
    pub fn of(specs: &[String], devices: &[Device]) -> Self {
        let devices = specs.iter().zip(devices).filter(|(spec, _)| is_remote_spec(spec)).map(|(s, d)| (s.clone(), d.clone())).collect();
        Self { devices }
    }

    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Waits for every remote device's queued operations; the first that fails stops the run.
    pub fn check(&self, when: &str, checkpoint: impl Fn() -> String) -> Result<()> {
        for (spec, device) in &self.devices {
            if let Err(e) = device.sync() {
                return Err(TrainError::DeviceLost { device: spec.clone(), reason: format!("{when}: {e}"), checkpoint: checkpoint() });
            }
        }
        Ok(())
    }

    /// The error for a panic inside a step: the remote device that no longer answers, if one
    /// does not (the panic was a read from it), else the panic's own message.
    pub fn after_panic(&self, payload: &(dyn std::any::Any + Send), checkpoint: impl Fn() -> String) -> TrainError {
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("a panic without a message");
        match self.check(&format!("after a panic: {message}"), &checkpoint) {
            Err(lost) => lost,
            Ok(()) => TrainError::Invalid(format!("a device's shard panicked ({message}); the last checkpoint is {}", checkpoint())),
        }
    }
}

/// A one-value tensor on the device `spec` names, read back as f64; a failed read is an error
/// naming that device.
pub fn read_scalar<const D: usize>(tensor: Tensor<D>, spec: &str, what: &str, step: usize, checkpoint: impl Fn() -> String) -> Result<f64> {
    tensor.try_into_scalar::<f32>().map(f64::from).map_err(|e| TrainError::DeviceLost {
        device: spec.to_string(),
        reason: format!("step {step}, reading the {what}: {e}"),
        checkpoint: checkpoint(),
    })
}
