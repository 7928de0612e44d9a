//! A loopback HTTP proxy in front of moto that answers chosen AWS actions with an AWS error
//! (access denied, throttling, 503), never answers them (a blackhole), or delays every request
//! (latency), and forwards the rest unchanged. moto checks no IAM and never throttles; this is
//! how tests see what a user sees when AWS refuses or is down. It counts requests per action.
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
    /// `ServiceUnavailable` (HTTP 503).
    Unavailable,
    /// `InvalidKeyId` (HTTP 400): Parameter Store's answer when the parameter's KMS key is
    /// disabled or deleted.
    InvalidKeyId,
    /// `TooManyUpdatesException` (HTTP 400): Secrets Manager's answer to a write while another
    /// write of the same secret is in progress.
    TooManyUpdates,
    /// Any other AWS error code (HTTP 400), e.g. `ExpiredTokenException`.
    Code(&'static str),
    /// The request is read and never answered (the connection stays open until healed).
    Blackhole,
}

impl Fault {
    fn code(self) -> &'static str {
        match self {
            Fault::AccessDenied => "AccessDeniedException",
            Fault::Throttling => "ThrottlingException",
            Fault::LimitExceeded => "LimitExceededException",
            Fault::Unavailable => "ServiceUnavailable",
            Fault::InvalidKeyId => "InvalidKeyId",
            Fault::TooManyUpdates => "TooManyUpdatesException",
            Fault::Code(code) => code,
            Fault::Blackhole => "",
        }
    }

    fn status(self) -> &'static str {
        match self {
            Fault::Unavailable => "503 Service Unavailable",
            _ => "400 Bad Request",
        }
    }
}

/// Matches every action in [`FaultProxy::fail`].
pub const ALL_ACTIONS: &str = "*";

#[derive(Default)]
struct Rules {
    faults: Mutex<HashMap<String, Fault>>,
    /// Faults for only the next few calls of an action: (fault, calls left).
    next: Mutex<HashMap<String, (Fault, u32)>>,
    /// Faults for a share of the calls of an action: (fault, percent, calls so far), spread
    /// evenly (30 % fails calls 3, 6, 10, 13, ...).
    share: Mutex<HashMap<String, (Fault, u64, u64)>>,
    refused: AtomicU64,
    latency_ms: AtomicU64,
    /// Most DescribeParameters items a page (0: moto's 10).
    describe_page: AtomicU64,
    seen: Mutex<HashMap<String, u64>>,
    user_agents: Mutex<std::collections::BTreeSet<String>>,
    form_bodies: Mutex<Vec<String>>,
}

impl Rules {
    /// The fault for one arriving call of `action`, using up a `fail_next` allowance.
    fn take_fault(&self, action: &str) -> Option<Fault> {
        let mut next = self.next.lock().unwrap();
        if let Some((fault, left)) = next.get_mut(action).filter(|(_, left)| *left > 0) {
            *left -= 1;
            return Some(*fault);
        }
        drop(next);
        let mut share = self.share.lock().unwrap();
        if let Some((fault, percent, calls)) = share.get_mut(action) {
            *calls += 1;
            if *calls * *percent / 100 != (*calls - 1) * *percent / 100 {
                return Some(*fault);
            }
        }
        drop(share);
        self.fault_for(action)
    }

    fn fault_for(&self, action: &str) -> Option<Fault> {
        let faults = self.faults.lock().unwrap();
        faults
            .iter()
            .find(|(a, _)| a.eq_ignore_ascii_case(action))
            .or_else(|| faults.get_key_value(ALL_ACTIONS))
            .map(|(_, f)| *f)
    }
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

    /// Answer every later call of `action` (e.g. `PutSecretValue`, or [`ALL_ACTIONS`]) with
    /// `fault`.
    pub fn fail(&self, action: &str, fault: Fault) {
        self.rules.faults.lock().unwrap().insert(action.to_string(), fault);
    }

    /// Answer only the next `calls` calls of `action` with `fault`.
    pub fn fail_next(&self, action: &str, fault: Fault, calls: u32) {
        self.rules.next.lock().unwrap().insert(action.to_string(), (fault, calls));
    }

    /// Answer `percent` of the later calls of `action` with `fault`, spread evenly.
    pub fn fail_share(&self, action: &str, fault: Fault, percent: u64) {
        self.rules.share.lock().unwrap().insert(action.to_string(), (fault, percent, 0));
    }

    /// Forward everything again.
    pub fn heal(&self) {
        self.rules.faults.lock().unwrap().clear();
        self.rules.share.lock().unwrap().clear();
    }

    /// How many requests were answered with a fault.
    pub fn refused(&self) -> u64 {
        self.rules.refused.load(Ordering::SeqCst)
    }

    /// Delay every later request by `latency` before forwarding it.
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.rules.latency_ms.store(latency.as_millis() as u64, Ordering::SeqCst);
    }

    /// Answer DescribeParameters with up to its `MaxResults` items a page, at most `most`, as
    /// AWS does (up to 50; moto always answers 10): the proxy asks moto for its pages in turn
    /// and joins them into one answer. Counted and delayed as one request.
    pub fn set_describe_page(&self, most: u64) {
        self.rules.describe_page.store(most, Ordering::SeqCst);
    }

    /// How many requests of `action` arrived (answered, refused or held).
    pub fn seen(&self, action: &str) -> u64 {
        self.rules.seen.lock().unwrap().get(action).copied().unwrap_or(0)
    }

    /// Requests per action so far.
    pub fn seen_all(&self) -> HashMap<String, u64> {
        self.rules.seen.lock().unwrap().clone()
    }

    /// The form bodies of query-protocol requests (STS) seen so far.
    pub fn form_bodies(&self) -> Vec<String> {
        self.rules.form_bodies.lock().unwrap().clone()
    }

    /// Every User-Agent header seen so far.
    pub fn user_agents(&self) -> Vec<String> {
        self.rules.user_agents.lock().unwrap().iter().cloned().collect()
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
        if lower.starts_with("user-agent:") {
            rules.user_agents.lock().unwrap().insert(line["user-agent:".len()..].trim().to_string());
        }
        if lower.starts_with("x-amz-target:") {
            target = line["x-amz-target:".len()..].trim().to_string();
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
    let action = match target.rsplit('.').next() {
        Some(action) if !action.is_empty() => action.to_string(),
        // Query-protocol services (STS) name the action in the form body.
        _ => {
            let form = String::from_utf8_lossy(&body).into_owned();
            rules.form_bodies.lock().unwrap().push(form.clone());
            form.split('&').find_map(|pair| pair.strip_prefix("Action=").map(str::to_string)).unwrap_or_default()
        }
    };
    *rules.seen.lock().unwrap().entry(action.clone()).or_insert(0) += 1;
    let latency = rules.latency_ms.load(Ordering::SeqCst);
    if latency > 0 {
        std::thread::sleep(std::time::Duration::from_millis(latency));
    }
    let mut client = client;
    if let Some(fault) = rules.take_fault(&action) {
        rules.refused.fetch_add(1, Ordering::SeqCst);
        if fault == Fault::Blackhole {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
            while rules.fault_for(&action) == Some(Fault::Blackhole) && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            return Ok(());
        }
        let body = format!(r#"{{"__type":"{}","message":"injected by the test proxy"}}"#, fault.code());
        let response = format!(
            "HTTP/1.1 {}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            fault.status(),
            body.len()
        );
        return client.write_all(response.as_bytes());
    }
    let page = rules.describe_page.load(Ordering::SeqCst) as usize;
    if action == "DescribeParameters" && page > 0 {
        return client.write_all(&joined_describe_pages(&head, &body, upstream_port, page)?);
    }
    client.write_all(&closing(&forward(&head, &body, upstream_port)?))
}

/// moto's response to the request `head` + `body`.
fn forward(head: &[u8], body: &[u8], upstream_port: u16) -> std::io::Result<Vec<u8>> {
    let mut upstream = TcpStream::connect(("127.0.0.1", upstream_port))?;
    upstream.write_all(head)?;
    upstream.write_all(body)?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    Ok(response)
}

/// One DescribeParameters answer of up to `MaxResults` (at most `most`) items, joined from
/// moto's pages of 10 asked in turn; moto's own answer when one of them is not a success.
fn joined_describe_pages(head: &[u8], body: &[u8], upstream_port: u16, most: usize) -> std::io::Result<Vec<u8>> {
    let head = String::from_utf8_lossy(head);
    let head: String =
        head.split_inclusive("\r\n").filter(|line| !line.to_ascii_lowercase().starts_with("content-length:")).collect();
    let head = head.strip_suffix("\r\n").unwrap_or(&head);
    let mut request: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let wanted = request["MaxResults"].as_u64().map_or(10, |n| n as usize).min(most);
    let mut joined: Vec<serde_json::Value> = Vec::new();
    loop {
        let body = request.to_string();
        let asked = format!("{head}Content-Length: {}\r\n\r\n", body.len());
        let response = forward(asked.as_bytes(), body.as_bytes(), upstream_port)?;
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(response) };
        let page: serde_json::Value = serde_json::from_slice(&response[end + 4..]).unwrap_or_default();
        if !response.starts_with(b"HTTP/1.1 200") || !page["Parameters"].is_array() {
            return Ok(closing(&response));
        }
        joined.extend(page["Parameters"].as_array().unwrap().iter().cloned());
        let next = page.get("NextToken").filter(|token| token.is_string()).cloned();
        match next {
            Some(token) if joined.len() + 10 <= wanted => request["NextToken"] = token,
            _ => {
                let mut answer = serde_json::json!({ "Parameters": joined });
                if let Some(token) = next {
                    answer["NextToken"] = token;
                }
                let answer = answer.to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
                return Ok(response.into_bytes());
            }
        }
    }
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
