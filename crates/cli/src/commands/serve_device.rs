//! `rosetta serve-device`: this host's devices, for training runs on other hosts.
//!
//! burn's remote backend over WebSocket: a run that lists `ws://HOST:PORT` in `model.devices`
//! sends each tensor operation of its shard here, where it runs on the served device; the
//! autodiff graph, the optimizer and the checkpoints stay with the run, and tensors move between
//! the run's host and this one. The server runs until it is stopped (Ctrl+C, SIGTERM), or with
//! `--exit-when-stdin-closes` until the process that started it goes away.

use std::net::{SocketAddr, TcpListener};

use anyhow::{Context, Result, bail};
use burn::prelude::Device;
use burn::server::{RemoteServer, TokenAuthorizer, WebSocketTransport};
use clap::Args as ClapArgs;
use rosetta_model::{DeviceKind, REMOTE_TOKEN_ENV, device_from_spec, is_remote_spec};

#[derive(ClapArgs)]
pub struct Args {
    /// Address to listen on. The default answers this host only; `0.0.0.0:3000` answers the
    /// network (then set --token-env too). Port 0 picks a free port; the line printed at start
    /// names the address clients use.
    #[arg(long, default_value = "127.0.0.1:3000")]
    listen: String,
    /// Devices to serve, one backend for all (`cpu`, or `wgpu:0,wgpu:1`, `cuda:0,cuda:1`): a run
    /// addresses the N-th as `ws://HOST:PORT#N`.
    #[arg(long, value_delimiter = ',', default_value = "cpu")]
    devices: Vec<String>,
    /// Serve only clients that present the token held in this environment variable; the runs
    /// set ROSETTA_REMOTE_TOKEN to the same token. WebSocket is unencrypted: the token keeps
    /// stray clients of a trusted network out, not someone reading its traffic.
    #[arg(long, value_name = "VARIABLE")]
    token_env: Option<String>,
    /// Stop when standard input closes: a supervisor (or a test) that holds the pipe takes the
    /// server down with it, even when it is killed.
    #[arg(long)]
    exit_when_stdin_closes: bool,
}

pub fn run(args: Args) -> Result<()> {
    if args.devices.iter().any(|d| is_remote_spec(d)) {
        bail!("--devices lists a remote device; a server serves this host's own devices (cpu, wgpu:N, cuda:N)");
    }
    // burn serves one backend per server.
    let backend = |spec: &str| spec.split(':').next().unwrap_or_default().parse::<DeviceKind>();
    let kinds: Vec<DeviceKind> = args.devices.iter().map(|d| backend(d)).collect::<rosetta_model::Result<_>>()?;
    if kinds.windows(2).any(|pair| pair[0] != pair[1]) {
        bail!("--devices {}: one server serves one backend; start a server per backend (on another port)", args.devices.join(","));
    }
    let devices: Vec<Device> = args.devices.iter().map(|spec| device_from_spec(spec)).collect::<rosetta_model::Result<_>>()?;
    let mut server = RemoteServer::new(devices);
    let token = match &args.token_env {
        Some(variable) => Some(std::env::var(variable).with_context(|| {
            format!("--token-env {variable}: the environment variable is not set (export {variable}=<a long random token> first)")
        })?),
        None => None,
    };
    if let Some(token) = &token {
        server = server.with_authorizer(
            TokenAuthorizer::new(token.as_str())
                .map_err(|e| anyhow::anyhow!("--token-env {}: {e}", args.token_env.as_deref().unwrap_or_default()))?,
        );
    }
    let listener = TcpListener::bind(&args.listen)
        .with_context(|| format!("cannot listen on {} (is the port in use? pick another with --listen HOST:PORT)", args.listen))?;
    let address: SocketAddr = listener.local_addr().context("the listening socket has no address")?;
    if !address.ip().is_loopback() && token.is_none() {
        eprintln!(
            "warning: serving {address} to the network without a token: any host that reaches it can run tensor operations here \
             (start with --token-env VARIABLE)"
        );
    }
    for (index, spec) in args.devices.iter().enumerate() {
        println!("serving {spec} as ws://{address}#{index}");
    }
    if address.ip().is_unspecified() {
        println!("({} answers on every interface: clients use this host's name or address with port {})", address.ip(), address.port());
    }
    if token.is_some() {
        println!("clients present the token: set {REMOTE_TOKEN_ENV} where the run starts");
    }
    // A test or a supervisor reads the address above before the server blocks.
    use std::io::Write;
    std::io::stdout().flush().ok();
    if args.exit_when_stdin_closes {
        std::thread::spawn(|| {
            // Read to the end; whatever is written is ignored.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            println!("standard input closed: stopping");
            std::process::exit(0);
        });
    }
    server.serve(WebSocketTransport::from_listener(listener)).map_err(|e| anyhow::anyhow!("serving on {address}: {e:?}"))?;
    println!("stopped");
    Ok(())
}
