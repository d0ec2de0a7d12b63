//! A small static file server for `rosetta lab`: GET/HEAD of files under one directory on
//! 127.0.0.1, with the lab's Content-Security-Policy (nothing but this origin; wasm may compile)
//! and no caching, one thread per connection. Not a general web server: any static host serves the
//! same directory as well.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Component, Path, PathBuf};

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

/// The file a request path names, if it stays inside `root` (no `..`, no absolute parts).
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
    out.is_file().then_some(out)
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: Option<&mut dyn Read>) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nConnection: close\r\nContent-Security-Policy: {CONTENT_SECURITY_POLICY}\r\nX-Content-Type-Options: nosniff\r\nCache-Control: no-cache\r\nCross-Origin-Opener-Policy: same-origin\r\n"
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

fn handle(mut stream: TcpStream, root: &Path) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Drain the headers; nothing in them changes the answer.
    let mut line = String::new();
    while reader.read_line(&mut line)? > 2 {
        line.clear();
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
        let text = format!("{path} is not part of the lab\n");
        return respond(
            &mut stream,
            "404 Not Found",
            &[("Content-Type", "text/plain; charset=utf-8".into()), ("Content-Length", text.len().to_string())],
            Some(&mut text.as_bytes()),
        );
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
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let root = root.clone();
        std::thread::spawn(move || {
            // A visitor closing the tab mid-download is not an error worth reporting.
            let _ = handle(stream, &root);
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
    }
}
