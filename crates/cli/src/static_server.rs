//! A small static file server for `rosetta lab`: GET/HEAD of files under one directory on
//! 127.0.0.1, with the lab's Content-Security-Policy (nothing but this origin; wasm may compile),
//! cross-origin isolation (COOP + COEP: the page may use `SharedArrayBuffer`, which a threaded wasm
//! build needs) and no caching. Not a general web server: any static host serves the same directory as well.
//!
//! Guarded, because the site holds the visitor's model and any web page they open can make
//! their browser talk to 127.0.0.1: the `Host` (and `Origin`, when sent) must name the address
//! the server is bound to — a DNS-rebinding page arrives under its own host name and is refused;
//! requests have a read timeout and a size limit; at most [`MAX_CONNECTIONS`] are served at once;
//! files are served only if their real path (links resolved) lies inside the site.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};

/// Sent with every page; `index.html` carries the same policy in a meta tag for other hosts.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; \
     img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'none'";

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "json" => "application/json",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        _ => "application/octet-stream",
    }
}

/// Connections served at once; more wait in the kernel's backlog... or get a 503.
pub const MAX_CONNECTIONS: usize = 32;
/// The request line and headers together.
pub const MAX_REQUEST_BYTES: u64 = 16 * 1024;
/// How long a client may take to send its request.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one write to a client may block (a stalled download frees its slot).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// The file a request path names, if it stays inside `root` (no `..`, no absolute parts, and no
/// link that leads out: the real path must lie under the real root).
fn resolve(root: &Path, request_path: &str) -> Option<PathBuf> {
    let path = request_path.split(['?', '#']).next().unwrap_or("/");
    let mut out = root.to_path_buf();
    for component in Path::new(path.trim_start_matches('/')).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return None,
        }
    }
    if out.is_dir() {
        out.push("index.html");
    }
    let (real, real_root) = (std::fs::canonicalize(&out).ok()?, std::fs::canonicalize(root).ok()?);
    (real.starts_with(&real_root) && real.is_file()).then_some(out)
}

/// Whether a request's `Host` and `Origin` name this server (`127.0.0.1:port` or
/// `localhost:port`). A browser always sends `Host`; a page on another site that rebinds its DNS
/// name to 127.0.0.1 sends its own name there.
fn addressed_to_us(headers: &[(String, String)], port: u16) -> bool {
    let ours = |host: &str| host == format!("127.0.0.1:{port}") || host == format!("localhost:{port}");
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str());
    let host_ok = header("Host").is_some_and(ours);
    let origin_ok = match header("Origin") {
        None => true,
        Some(origin) => origin.strip_prefix("http://").is_some_and(ours),
    };
    host_ok && origin_ok
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: Option<&mut dyn Read>) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Security-Policy: {CONTENT_SECURITY_POLICY}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nCross-Origin-Opener-Policy: same-origin\r\nCross-Origin-Embedder-Policy: require-corp\r\n"
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    if let Some(body) = body {
        std::io::copy(body, stream)?;
    }
    stream.flush()
}

fn plain(stream: &mut TcpStream, status: &str, text: &str) -> std::io::Result<()> {
    respond(
        stream,
        status,
        &[("Content-Type", "text/plain; charset=utf-8".into()), ("Content-Length", text.len().to_string())],
        Some(&mut text.as_bytes()),
    )
}

fn handle(mut stream: TcpStream, root: &Path, port: u16) -> std::io::Result<()> {
    stream.set_read_timeout(Some(READ_TIMEOUT))?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    // The whole request head within MAX_REQUEST_BYTES: a longer one reads as cut off.
    let mut reader = BufReader::new(stream.try_clone()?.take(MAX_REQUEST_BYTES));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    let mut complete = false;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        if line == "\r\n" || line == "\n" {
            complete = true;
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    if !complete {
        return plain(&mut stream, "431 Request Header Fields Too Large", "the request head is too long or was cut off\n");
    }
    if !addressed_to_us(&headers, port) {
        return plain(&mut stream, "421 Misdirected Request", "this server answers only requests addressed to 127.0.0.1 or localhost\n");
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or("/"));
    if method != "GET" && method != "HEAD" {
        let text = b"only GET and HEAD\n";
        return respond(
            &mut stream,
            "405 Method Not Allowed",
            &[("Allow", "GET, HEAD".into()), ("Content-Length", text.len().to_string())],
            Some(&mut &text[..]),
        );
    }
    let Some(file) = resolve(root, path) else {
        return plain(&mut stream, "404 Not Found", &format!("{path} is not part of the lab\n"));
    };
    let mut body = std::fs::File::open(&file)?;
    let length = body.metadata()?.len();
    let headers = [("Content-Type", content_type(&file).to_string()), ("Content-Length", length.to_string())];
    respond(&mut stream, "200 OK", &headers, if method == "GET" { Some(&mut body) } else { None })
}

/// Binds 127.0.0.1:`port` (0 = any free port) and returns the listener and its URL.
pub fn bind(port: u16) -> Result<(TcpListener, String)> {
    let listener = TcpListener::bind(("127.0.0.1", port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{port} (in use? pass --port 0 for any free port)"))?;
    let url = format!("http://{}/", listener.local_addr()?);
    Ok((listener, url))
}

/// Serves `root` until the process is stopped.
pub fn serve(listener: TcpListener, root: PathBuf) -> Result<()> {
    let port = listener.local_addr()?.port();
    let active = Arc::new(AtomicUsize::new(0));
    for stream in listener.incoming() {
        let Ok(mut stream) = stream else { continue };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let _ = plain(&mut stream, "503 Service Unavailable", "too many connections; try again\n");
            continue;
        }
        let (root, active) = (root.clone(), Arc::clone(&active));
        std::thread::spawn(move || {
            // A visitor closing the tab mid-download is not an error worth reporting.
            let _ = handle(stream, &root, port);
            active.fetch_sub(1, Ordering::SeqCst);
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside_the_site() {
        let root = std::env::temp_dir().join(format!("rosetta-static-{}", std::process::id()));
        std::fs::create_dir_all(root.join("data")).unwrap();
        std::fs::write(root.join("index.html"), "<p>").unwrap();
        std::fs::write(root.join("data/m.json"), "{}").unwrap();
        assert_eq!(resolve(&root, "/"), Some(root.join("index.html")));
        assert_eq!(resolve(&root, "/data/m.json?x=1"), Some(root.join("data/m.json")));
        assert_eq!(resolve(&root, "/../etc/passwd"), None);
        assert_eq!(resolve(&root, "/data/../../x"), None);
        assert_eq!(resolve(&root, "/missing.js"), None);
        assert_eq!(content_type(Path::new("a.wasm")), "application/wasm");
        // A link inside the site that leads out of it is not followed.
        let outside = std::env::temp_dir().join(format!("rosetta-static-outside-{}", std::process::id()));
        std::fs::write(&outside, "secret").unwrap();
        let _ = std::fs::remove_file(root.join("data/leak.txt"));
        std::os::unix::fs::symlink(&outside, root.join("data/leak.txt")).unwrap();
        assert_eq!(resolve(&root, "/data/leak.txt"), None);
    }

    /// The status line the server answers `request` with.
    fn status(port: u16, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.write_all(request).unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer.lines().next().unwrap_or("").to_string()
    }

    fn get(port: u16, host: &str, extra: &str) -> String {
        status(port, format!("GET / HTTP/1.1\r\nHost: {host}\r\n{extra}\r\n").as_bytes())
    }

    #[test]
    fn foreign_hosts_and_oversized_requests_are_refused() {
        let root = std::env::temp_dir().join(format!("rosetta-static-guard-{}", std::process::id()));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("index.html"), "<p>").unwrap();
        let (listener, _) = bind(0).unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || serve(listener, root));
        assert_eq!(get(port, &format!("127.0.0.1:{port}"), ""), "HTTP/1.1 200 OK");
        assert_eq!(get(port, &format!("localhost:{port}"), &format!("Origin: http://localhost:{port}\r\n")), "HTTP/1.1 200 OK");
        // DNS rebinding: the attacker's name in Host, or its page as Origin.
        assert_eq!(get(port, &format!("evil.example:{port}"), ""), "HTTP/1.1 421 Misdirected Request");
        assert_eq!(get(port, &format!("127.0.0.1:{port}"), "Origin: http://evil.example\r\n"), "HTTP/1.1 421 Misdirected Request");
        // A head that never ends within the limit (exactly the limit is sent, so the server has
        // read all of it when it answers and the answer is not lost to a connection reset).
        let mut endless = format!("GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Junk: ").into_bytes();
        endless.resize(MAX_REQUEST_BYTES as usize, b'a');
        assert_eq!(status(port, &endless), "HTTP/1.1 431 Request Header Fields Too Large");
    }
}
