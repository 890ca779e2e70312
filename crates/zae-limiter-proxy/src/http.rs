//! Just enough HTTP/1.1 to act per request: a message is a head (start line and headers up to
//! the empty line) followed by exactly `Content-Length` bytes of body.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Largest request or response head the proxy accepts.
const MAX_HEAD: usize = 64 * 1024;
/// Largest body the proxy accepts (DynamoDB's own request limit is 16 MB).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// One HTTP message as read off the wire.
pub(crate) struct Message {
    /// Start line and headers, including the final empty line, exactly as received.
    pub(crate) head: Vec<u8>,
    pub(crate) body: Vec<u8>,
    /// `X-Amz-Target`, if present.
    pub(crate) target: Option<String>,
}

impl Message {
    /// The operation: the part of `X-Amz-Target` after the dot (`UpdateItem`), `-` without one.
    pub(crate) fn operation(&self) -> &str {
        self.target
            .as_deref()
            .map(|t| t.rsplit('.').next().unwrap_or(t))
            .unwrap_or("-")
    }
}

/// Read one message; `None` on a clean end of stream before its first byte.
pub(crate) async fn read_message(r: &mut BufReader<TcpStream>) -> io::Result<Option<Message>> {
    let bad = |m: String| io::Error::new(io::ErrorKind::InvalidData, m);
    let mut head = Vec::new();
    let mut length = None;
    let mut target = None;
    loop {
        let start = head.len();
        if r.read_until(b'\n', &mut head).await? == 0 {
            return if head.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        if head.len() > MAX_HEAD {
            return Err(bad(format!("message head above {MAX_HEAD} bytes")));
        }
        let line = String::from_utf8_lossy(&head[start..]);
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            if start == 0 {
                head.clear(); // tolerate a stray CRLF between messages
                continue;
            }
            break;
        }
        if start == 0 {
            continue; // the start line
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(bad(format!("malformed header line {line:?}")));
        };
        let (name, value) = (name.trim(), value.trim());
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| bad(format!("bad Content-Length {value:?}")))?;
            if n > MAX_BODY {
                return Err(bad(format!("body of {n} bytes is above {MAX_BODY}")));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad(format!("Transfer-Encoding {value:?} is not supported")));
        } else if name.eq_ignore_ascii_case("x-amz-target") {
            target = Some(value.to_string());
        }
    }
    let mut body = vec![0; length.unwrap_or(0)];
    r.read_exact(&mut body).await?;
    Ok(Some(Message { head, body, target }))
}

/// Write `m` in one piece: a head and a body written apart would wait for the peer's delayed
/// ACK of the head (Nagle's algorithm), about 40 ms on Linux, on every message.
pub(crate) async fn write_message(w: &mut TcpStream, m: &Message) -> io::Result<()> {
    let mut bytes = Vec::with_capacity(m.head.len() + m.body.len());
    bytes.extend_from_slice(&m.head);
    bytes.extend_from_slice(&m.body);
    w.write_all(&bytes).await?;
    w.flush().await
}

/// Send `m` upstream on a fresh connection and read the answer.
pub(crate) async fn forward(upstream: SocketAddr, m: &Message) -> io::Result<Message> {
    let up = TcpStream::connect(upstream).await?;
    up.set_nodelay(true)?;
    let mut up = BufReader::new(up);
    write_message(up.get_mut(), m).await?;
    read_message(&mut up)
        .await?
        .ok_or_else(|| io::ErrorKind::UnexpectedEof.into())
}

/// A DynamoDB-style answer made by the proxy: `status`, a request id, the JSON `body`.
pub(crate) fn answer(status: u16, request_id: &str, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Error",
    };
    format!(
        "HTTP/1.1 {status} {reason}\r\nx-amzn-RequestId: {request_id}\r\n\
         Content-Type: application/x-amz-json-1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An injected DynamoDB-style error answer ([`Fault::Status`](crate::Fault::Status),
/// [`Fault::Error`](crate::Fault::Error)).
pub(crate) fn error_response(status: u16, request_id: u64, kind: Option<&str>) -> Vec<u8> {
    let default_kind = match status {
        503 => "ServiceUnavailable",
        400 => "ValidationException",
        _ => "InternalServerError",
    };
    let kind = kind.unwrap_or(default_kind);
    let body =
        format!(r#"{{"__type":"com.amazonaws.dynamodb.v20120810#{kind}","message":"injected"}}"#);
    answer(status, &format!("injected-{request_id}"), &body)
}
