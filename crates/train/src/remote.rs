//! Devices on other hosts (multi-node): noticing that one stopped answering.
//!
//! A `ws://HOST:PORT` entry of `model.devices` is burn's remote backend: the shard's operations
//! run on that host (`rosetta serve-device`), the autodiff graph stays here. burn's client has
//! no health calls and no deadlines of its own: operations sent to a server whose connection
//! closed are dropped, the next read fails, and a read through the infallible API (`into_data`,
//! tensor transfers) panics. A host that vanishes without closing its connections is noticed
//! only by TCP (burn's keepalive on an idle connection, or the retransmission time-out, minutes,
//! with data in flight). So the trainer reads its scalars through [`read_scalar`], checks every
//! remote device at the start of each step ([`RemoteDevices::check`]), and turns a panic of a
//! run that has remote devices into [`TrainError::DeviceLost`] ([`RemoteDevices::after_panic`],
//! the panic's report kept out of the terminal by [`QuietPanics`]). Nothing already written is
//! lost: checkpoints are written whole or not at all, so `--resume` goes on from the last one
//! once the server is back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

use burn::prelude::*;
use rosetta_model::is_remote_spec;

use crate::error::{Result, TrainError};

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

/// The remote entries of a run's device list, with their specs for messages.
pub struct RemoteDevices {
    devices: Vec<(String, Device)>,
}

impl RemoteDevices {
    /// The remote devices among `specs` (parsed in the same order as `devices`).
    pub fn of(specs: &[String], devices: &[Device]) -> Self {
        let devices = specs.iter().zip(devices).filter(|(spec, _)| is_remote_spec(spec)).map(|(s, d)| (s.clone(), d.clone())).collect();
        Self { devices }
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

    /// The error for a panic while training: the remote device that no longer answers, if one
    /// does not (the panic was a read from it), else the panic's own message and place.
    pub fn after_panic(&self, payload: &(dyn std::any::Any + Send), checkpoint: impl Fn() -> String) -> TrainError {
        let message = panic_message(payload);
        let place = QuietPanics::last_location().map(|at| format!(" at {at}")).unwrap_or_default();
        match self.check(&format!("after a panic{place}: {message}"), &checkpoint) {
            Err(lost) => lost,
            Ok(()) => TrainError::Invalid(format!("training panicked{place} ({message}); the last checkpoint is {}", checkpoint())),
        }
    }
}

/// A panic's message, as `panic!` formatted it.
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("a panic without a message")
}

/// A one-value tensor on the device `spec` names, read back as f64. A failed read from a remote
/// device is [`TrainError::DeviceLost`]; from a local one, an error naming the device.
pub fn read_scalar<const D: usize>(tensor: Tensor<D>, spec: &str, what: &str, step: usize, checkpoint: impl Fn() -> String) -> Result<f64> {
    tensor.try_into_scalar::<f32>().map(f64::from).map_err(|e| {
        if is_remote_spec(spec) {
            TrainError::DeviceLost {
                device: spec.to_string(),
                reason: format!("step {step}, reading the {what}: {e}"),
                checkpoint: checkpoint(),
            }
        } else {
            TrainError::Invalid(format!(
                "step {step}: reading the {what} from `{spec}` failed: {e}; the last checkpoint is {}",
                checkpoint()
            ))
        }
    })
}

/// While a guard lives, panics are not reported by the process's panic hook: a run with remote
/// devices reports them itself, as [`TrainError::DeviceLost`] or with their message and place
/// ([`RemoteDevices::after_panic`]). The hook is installed once, wraps the one before it, and
/// counts the guards alive, so runs that overlap in one process leave it as it was.
pub struct QuietPanics(());

static QUIET_GUARDS: AtomicUsize = AtomicUsize::new(0);
static INSTALL_HOOK: Once = Once::new();
static LAST_LOCATION: Mutex<Option<String>> = Mutex::new(None);

impl QuietPanics {
    pub fn new() -> Self {
        INSTALL_HOOK.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if QUIET_GUARDS.load(Ordering::SeqCst) == 0 {
                    previous(info);
                } else if let Ok(mut last) = LAST_LOCATION.lock() {
                    *last = info.location().map(|l| format!("{}:{}", l.file(), l.line()));
                }
            }));
        });
        QUIET_GUARDS.fetch_add(1, Ordering::SeqCst);
        QuietPanics(())
    }

    /// Where the last panic kept quiet happened.
    fn last_location() -> Option<String> {
        LAST_LOCATION.lock().ok().and_then(|last| last.clone())
    }
}

impl Default for QuietPanics {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for QuietPanics {
    fn drop(&mut self) {
        QUIET_GUARDS.fetch_sub(1, Ordering::SeqCst);
    }
}
