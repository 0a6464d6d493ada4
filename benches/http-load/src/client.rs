//! A minimal HTTP/1.1 keep-alive client over `std::net::TcpStream`: one
//! connection, requests written whole, responses read whole (Content-Length
//! or chunked). Enough for a load generator; nothing more.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// One response: status and body.
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One keep-alive connection; reconnects when the server closes it.
pub struct Conn {
    addr: SocketAddr,
    reader: Option<BufReader<TcpStream>>,
    pub reconnects: u64,
}

impl Conn {
    pub fn new(addr: SocketAddr) -> Self {
        Conn {
            addr,
            reader: None,
            reconnects: 0,
        }
    }

    fn stream(&mut self) -> Res<&mut BufReader<TcpStream>> {
        if self.reader.is_none() {
            let s = TcpStream::connect(self.addr)?;
            s.set_nodelay(true)?;
            self.reader = Some(BufReader::with_capacity(64 * 1024, s));
            self.reconnects += 1;
        }
        Ok(self.reader.as_mut().expect("just connected"))
    }

    /// Send a complete request (head and body, already formatted) and read
    /// the whole response.
    pub fn send(&mut self, request: &[u8]) -> Res<Response> {
        let r = self.stream()?;
        r.get_mut().write_all(request)?;
        let (response, close) = read_response(r)?;
        if close {
            self.reader = None;
        }
        Ok(response)
    }
}

/// The head of a request, `Connection` left to HTTP/1.1's keep-alive default.
pub fn head(
    method: &str,
    target: &str,
    host: &SocketAddr,
    token: &str,
    body: Option<(&str, usize)>,
) -> String {
    let mut h = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n"
    );
    if let Some((content_type, len)) = body {
        h.push_str(&format!(
            "Content-Type: {content_type}\r\nContent-Length: {len}\r\n"
        ));
    }
    h.push_str("\r\n");
    h
}

fn read_line(r: &mut impl BufRead, line: &mut String) -> Res<()> {
    line.clear();
    if r.read_line(line)? == 0 {
        return Err("the server closed the connection".into());
    }
    Ok(())
}

/// Read one response; also whether the server will close the connection.
fn read_response(r: &mut BufReader<TcpStream>) -> Res<(Response, bool)> {
    let mut line = String::new();
    read_line(r, &mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {line:?}"))?;
    let (mut length, mut chunked, mut close) = (None, false, false);
    loop {
        read_line(r, &mut line)?;
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((name, value)) = l.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>()?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.to_ascii_lowercase().contains("chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    let mut body = Vec::new();
    if chunked {
        loop {
            read_line(r, &mut line)?;
            let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("").trim(), 16)?;
            if size == 0 {
                // Trailers, up to the blank line.
                loop {
                    read_line(r, &mut line)?;
                    if line.trim_end().is_empty() {
                        break;
                    }
                }
                break;
            }
            let at = body.len();
            body.resize(at + size, 0);
            r.read_exact(&mut body[at..])?;
            read_line(r, &mut line)?;
        }
    } else if let Some(n) = length {
        body.resize(n, 0);
        r.read_exact(&mut body)?;
    } else {
        // No length: the body runs to the end of the connection.
        r.read_to_end(&mut body)?;
        close = true;
    }
    Ok((Response { status, body }, close))
}
