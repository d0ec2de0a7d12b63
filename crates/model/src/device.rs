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

/// Parses `cpu`, `wgpu`, `wgpu:N` (N-th discrete GPU), `cuda` or `cuda:N` into a device — or
/// `ws://HOST:PORT` / `ws://HOST:PORT#N`, device 0 (or N) of a `rosetta serve-device` on another
/// host (see [`remote_device`]).
pub fn device_from_spec(spec: &str) -> Result<Device> {
    if is_remote_spec(spec) {
        return remote_device(spec);
    }
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

/// The environment variable that holds the token a `rosetta serve-device` started with
/// `--token-env` checks; unset, the client presents none.
pub const REMOTE_TOKEN_ENV: &str = "ROSETTA_REMOTE_TOKEN";

/// Whether a device spec names a device on another host (`ws://…`; `wss://` too, to refuse it
/// by name).
pub fn is_remote_spec(spec: &str) -> bool {
    spec.starts_with("ws://") || spec.starts_with("wss://")
}

/// Splits `ws://HOST:PORT#N` into the server's address and the device index (0 without `#N`).
pub fn parse_remote_spec(spec: &str) -> Result<(&str, usize)> {
    if spec.starts_with("wss://") {
        // burn 0.22's WebSocket transport has no TLS, on either side.
        return Err(ModelError::invalid(format!(
            "device `{spec}`: `rosetta serve-device` speaks plain WebSocket (burn's transport has no TLS): use ws://, on a \
             trusted network or through a tunnel (ssh -L, WireGuard)"
        )));
    }
    let (url, index) = match spec.rsplit_once('#') {
        Some((url, i)) => {
            let i: usize = i.parse().map_err(|_| ModelError::invalid(format!("device `{spec}`: `#{i}` is not a device index")))?;
            (url, i)
        }
        None => (spec, 0),
    };
    let host = url.split_once("://").map(|(_, rest)| rest).unwrap_or_default();
    let port = host.rsplit_once(':').map(|(_, p)| p);
    if host.is_empty() || port.is_none_or(|p| p.parse::<u16>().is_err()) || host.contains('/') {
        return Err(ModelError::invalid(format!(
            "device `{spec}`: a remote device is `ws://HOST:PORT` or `ws://HOST:PORT#N` (device N of that server)"
        )));
    }
    Ok((url, index))
}

/// Device `#N` of the `rosetta serve-device` at `ws://HOST:PORT`: burn's remote backend, whose
/// operations run on that host while the autodiff graph stays here. Connecting retries for
/// about 16 s (burn's own schedule), then fails with the address and what to check.
#[cfg(all(feature = "remote", not(target_family = "wasm")))]
pub fn remote_device(spec: &str) -> Result<Device> {
    use burn::remote::RemoteHost;
    let (url, index) = parse_remote_spec(spec)?;
    let mut host = RemoteHost::websocket(url);
    if let Ok(token) = std::env::var(REMOTE_TOKEN_ENV) {
        host = host.with_credential(token);
    }
    Device::remote_options(&host).device_index(index).init().map_err(|e| {
        ModelError::Device(format!(
            "`{spec}`: {e} — is `rosetta serve-device` running there, reachable from this host, and (if it was started with \
             --token-env) is {REMOTE_TOKEN_ENV} set to its token here?"
        ))
    })
}

/// Without the `remote` feature a remote device is an error that says how to get it.
#[cfg(not(all(feature = "remote", not(target_family = "wasm"))))]
pub fn remote_device(spec: &str) -> Result<Device> {
    parse_remote_spec(spec)?;
    Err(ModelError::Device(format!("`{spec}`: this build has no remote devices; rebuild with `--features remote` (native builds only)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_specs_name_a_server_and_a_device() {
        assert_eq!(parse_remote_spec("ws://10.0.0.2:3000").unwrap(), ("ws://10.0.0.2:3000", 0));
        assert_eq!(parse_remote_spec("ws://gpu-a:3000#1").unwrap(), ("ws://gpu-a:3000", 1));
        for bad in ["ws://", "ws://host", "ws://host:port", "ws://host:3000/session"] {
            let err = parse_remote_spec(bad).unwrap_err().to_string();
            assert!(err.contains(bad) && err.contains("ws://HOST:PORT"), "{bad}: {err}");
        }
        let err = parse_remote_spec("ws://host:3000#x").unwrap_err().to_string();
        assert!(err.contains("`#x` is not a device index"), "{err}");
        let err = parse_remote_spec("wss://host:3000").unwrap_err().to_string();
        assert!(err.contains("no TLS") && err.contains("use ws://"), "{err}");
        assert!(is_remote_spec("ws://h:1") && is_remote_spec("wss://h:1") && !is_remote_spec("cuda:0"));
    }
}
