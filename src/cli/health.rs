//! `catgate health`: one plain HTTP/1.1 GET of `/readyz` over a TCP socket, for Docker's
//! HEALTHCHECK. No HTTP client or runtime is needed for one request to ourselves.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// The whole probe, connect to last byte. Docker's default HEALTHCHECK timeout is 30 s.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Enough for `/readyz`'s answer; a larger one is cut, never waited for.
const MAX_ANSWER: u64 = 64 * 1024;

/// The URL probed when no `--url` is given: where this config's server listens.
pub fn local_url(listen: SocketAddr) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/readyz", SocketAddr::new(ip, listen.port()))
}

/// The URL probed when `url` answers 200; else that URL and why not, on one line.
pub fn probe(url: &str) -> Result<String, String> {
    let (authority, path) = split(url).map_err(|why| format!("{url}: {why}"))?;
    let probed = format!("http://{authority}{path}");
    match get(&authority, &path) {
        Ok(()) => Ok(probed),
        Err(why) => Err(format!("{probed}: {why}")),
    }
}

fn get(authority: &str, path: &str) -> Result<(), String> {
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = connect(authority, deadline)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: catgate-health\r\n\
         Connection: close\r\n\r\n"
    );
    stream
        .set_write_timeout(Some(left(deadline)?))
        .and_then(|()| stream.write_all(request.as_bytes()))
        .map_err(|e| format!("cannot send the request: {e}"))?;
    let answer = read_answer(&mut stream, deadline)?;
    let text = String::from_utf8_lossy(&answer);
    let status_line = text.lines().next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    match status {
        "200" => Ok(()),
        "" => Err("the answer is not HTTP".into()),
        _ => Err(match reason(&text) {
            Some(reason) => format!("{}: {reason}", status_text(status_line)),
            None => status_text(status_line).to_string(),
        }),
    }
}

/// `http://host:port[/path]` → (`host:port`, path); a bare base URL probes `/readyz`.
fn split(url: &str) -> Result<(String, String), String> {
    let rest = match url.strip_prefix("http://") {
        Some(rest) => rest,
        None if url.starts_with("https://") => {
            return Err("catgate serves plain HTTP: probe it with an http:// URL".into())
        }
        None => return Err("the URL must start with http://".into()),
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    if authority.is_empty() {
        return Err("the URL names no host".into());
    }
    let path = match path {
        "" | "/" => "/readyz",
        p => p,
    };
    Ok((authority.to_string(), path.to_string()))
}

fn connect(authority: &str, deadline: Instant) -> Result<TcpStream, String> {
    let with_port = match authority.rsplit_once(':') {
        Some((_, port)) if !port.contains(']') => authority.to_string(),
        _ => format!("{authority}:80"),
    };
    let addrs: Vec<SocketAddr> = with_port
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .collect();
    let mut last = format!("{authority} resolves to no address");
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(s) => return Ok(s),
            Err(e) => last = format!("cannot connect to {addr}: {e}"),
        }
    }
    Err(last)
}

/// Reads until the server closes (the request said `Connection: close`) or the deadline.
fn read_answer(stream: &mut TcpStream, deadline: Instant) -> Result<Vec<u8>, String> {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        stream
            .set_read_timeout(Some(left(deadline)?))
            .map_err(|e| e.to_string())?;
        match stream.read(&mut buf) {
            Ok(0) => return Ok(answer),
            Ok(n) => {
                answer.extend_from_slice(&buf[..n]);
                if answer.len() as u64 >= MAX_ANSWER {
                    return Ok(answer);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if is_timeout(&e) => return Err(no_answer()),
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        }
    }
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Time left before `deadline`, or the timeout error.
fn left(deadline: Instant) -> Result<Duration, String> {
    let left = deadline.saturating_duration_since(Instant::now());
    match left.is_zero() {
        true => Err(no_answer()),
        false => Ok(left),
    }
}

fn no_answer() -> String {
    format!("no answer within {} s", TIMEOUT.as_secs())
}

/// `HTTP/1.1 503 Service Unavailable` → `503 Service Unavailable`.
fn status_text(line: &str) -> &str {
    line.split_once(' ').map_or(line, |(_, s)| s).trim()
}

/// `/readyz`'s `reason` field, when the body is its JSON.
fn reason(answer: &str) -> Option<String> {
    let (_, body) = answer.split_once("\r\n\r\n")?;
    let json: serde_json::Value = serde_json::from_str(body.trim()).ok()?;
    json.get("reason")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_url_never_names_a_wildcard_address() {
        let url = |a: &str| local_url(a.parse().unwrap());
        assert_eq!(url("0.0.0.0:8080"), "http://127.0.0.1:8080/readyz");
        assert_eq!(url("[::]:9000"), "http://[::1]:9000/readyz");
        assert_eq!(url("10.1.2.3:80"), "http://10.1.2.3:80/readyz");
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        let s = |u: &str| split(u).map(|(a, p)| format!("{a} {p}"));
        assert_eq!(s("http://h:1"), Ok("h:1 /readyz".into()));
        assert_eq!(s("http://h:1/"), Ok("h:1 /readyz".into()));
        assert_eq!(s("http://[::1]:1/healthz"), Ok("[::1]:1 /healthz".into()));
        assert!(s("https://h").unwrap_err().contains("plain HTTP"));
        assert!(s("h:1").is_err());
        assert!(s("http:///x").is_err());
    }

    #[test]
    fn a_refusal_names_its_status_and_reason() {
        let answer = "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n\
                      {\"status\":\"unavailable\",\"reason\":\"database unavailable: gone\"}";
        assert_eq!(
            status_text(answer.lines().next().unwrap()),
            "503 Service Unavailable"
        );
        assert_eq!(
            reason(answer).as_deref(),
            Some("database unavailable: gone")
        );
    }
}
