//! A loopback HTTP proxy in front of moto that answers chosen AWS actions with an AWS error
//! (access denied, throttling) and forwards every other request unchanged. moto checks no IAM
//! and never throttles; this is how tests see what a user sees when AWS refuses.
#![allow(dead_code)] // Shared by several test binaries; each uses a part.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// An AWS error to answer with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// `AccessDeniedException` (HTTP 400), as IAM or a resource policy answers.
    AccessDenied,
    /// `ThrottlingException` (HTTP 400), which the SDK retries before giving up.
    Throttling,
    /// `LimitExceededException` (HTTP 400): Secrets Manager's answer to writes to one secret
    /// that come too fast or make too many versions.
    LimitExceeded,
}

impl Fault {
    fn code(self) -> &'static str {
        match self {
            Fault::AccessDenied => "AccessDeniedException",
            Fault::Throttling => "ThrottlingException",
            Fault::LimitExceeded => "LimitExceededException",
        }
    }
}

#[derive(Default)]
struct Rules {
    faults: Mutex<HashMap<String, Fault>>,
    refused: AtomicU64,
}

/// The running proxy; its thread ends with the test process.
pub struct FaultProxy {
    pub port: u16,
    rules: Arc<Rules>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let rules = Arc::new(Rules::default());
        let shared = rules.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let rules = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, upstream_port, &rules);
                });
            }
        });
        FaultProxy { port, rules }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Answer every later call of `action` (e.g. `PutSecretValue`) with `fault`.
    pub fn fail(&self, action: &str, fault: Fault) {
        self.rules.faults.lock().unwrap().insert(action.to_string(), fault);
    }

    /// Forward everything again.
    pub fn heal(&self) {
        self.rules.faults.lock().unwrap().clear();
    }

    /// How many requests were answered with a fault.
    pub fn refused(&self) -> u64 {
        self.rules.refused.load(Ordering::SeqCst)
    }
}

/// One request per connection: read it, answer it with a fault or forward it, then close.
fn serve(client: TcpStream, upstream_port: u16, rules: &Rules) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut target = String::new();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let lower = line.to_ascii_lowercase();
        if let Some(value) = lower.strip_prefix("x-amz-target:") {
            target = value.trim().to_string();
        }
        if let Some(value) = lower.strip_prefix("content-length:") {
            length = value.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        if line == "\r\n" {
            head.extend_from_slice(b"Connection: close\r\n\r\n");
            break;
        }
        head.extend_from_slice(line.as_bytes());
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let action = target.rsplit('.').next().unwrap_or_default();
    let fault = rules.faults.lock().unwrap().iter().find(|(a, _)| a.eq_ignore_ascii_case(action)).map(|(_, f)| *f);
    let mut client = client;
    if let Some(fault) = fault {
        rules.refused.fetch_add(1, Ordering::SeqCst);
        let body = format!(r#"{{"__type":"{}","message":"injected by the test proxy"}}"#, fault.code());
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return client.write_all(response.as_bytes());
    }
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    upstream.write_all(&head)?;
    upstream.write_all(&body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    client.write_all(&closing(&response))
}

/// `response` with its `Connection` header replaced by `Connection: close`, so the client never
/// reuses a connection this proxy closes.
fn closing(response: &[u8]) -> Vec<u8> {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return response.to_vec() };
    let head = String::from_utf8_lossy(&response[..end]);
    let mut out: Vec<u8> = head
        .split("\r\n")
        .filter(|line| !line.to_ascii_lowercase().starts_with("connection:"))
        .flat_map(|line| [line.as_bytes(), b"\r\n"].concat())
        .collect();
    out.extend_from_slice(b"Connection: close\r\n\r\n");
    out.extend_from_slice(&response[end + 4..]);
    out
}
