//! A minimal HTTP/1.1 keep-alive client for the CLI and the load generator:
//! one connection, one request at a time, no hidden pooling or retries, so
//! that what the benchmark measures is the server.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

/// Why a request on a [`Connection`] failed. Nothing is retried here: the
/// caller decides whether to open a new connection and try again.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://HOST:PORT[/...]` (there is no TLS).
    #[error("bad URL {0:?}: expected http://HOST:PORT")]
    BadUrl(String),
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}. Is `tsohost serve` running there?")]
    Connect {
        /// The `HOST:PORT` dialed.
        addr: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The connection broke or the server's answer was not valid HTTP/1.1;
    /// the connection is unusable afterwards.
    #[error("HTTP error talking to {addr}: {source}")]
    Http {
        /// The `HOST:PORT` of the connection.
        addr: String,
        /// What hyper reported.
        source: hyper::Error,
    },
}

/// `http://host:port[/...]` → `host:port`.
pub fn authority(url: &str) -> Result<String, ClientError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ClientError::BadUrl(url.to_string()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    Ok(authority.to_string())
}

/// A response, read in full. Any status is an answer (a 307 or a 503 is
/// not an error at this level): interpreting it is the caller's job.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The response headers (`Location` of a redirect, `Retry-After`).
    pub headers: hyper::HeaderMap,
    /// The whole body; the server's answers are small JSON documents.
    pub body: Bytes,
}

/// One keep-alive connection. Requests on it are sequential (`&mut self`);
/// open several connections for concurrency.
pub struct Connection {
    addr: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
    /// Connect to the node at `url` (only its `HOST:PORT` is used) with
    /// Nagle's algorithm off, so that small requests are not delayed. Needs a
    /// Tokio runtime: the connection's I/O runs in a task of its own.
    pub async fn open(url: &str) -> Result<Connection, ClientError> {
        let addr = authority(url)?;
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| ClientError::Http {
                addr: addr.clone(),
                source,
            })?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection { addr, sender })
    }

    /// Send one request and read the whole answer. A body starting with
    /// `{` or `[` is sent as JSON, any other non-empty body as bytes (a
    /// driver component).
    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
    ) -> Result<Answer, ClientError> {
        self.send_with(method, path, body, None).await
    }

    /// As [`Connection::send`], with `Authorization: Bearer <token>`.
    pub async fn send_with(
        &mut self,
        method: Method,
        path: &str,
        body: Bytes,
        bearer: Option<&str>,
    ) -> Result<Answer, ClientError> {
        let http = |source| ClientError::Http {
            addr: self.addr.clone(),
            source,
        };
        self.sender.ready().await.map_err(http)?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &self.addr);
        if !body.is_empty() {
            let json = matches!(body.first(), Some(b'{' | b'['));
            let kind = if json {
                "application/json"
            } else {
                "application/octet-stream"
            };
            request = request.header(hyper::header::CONTENT_TYPE, kind);
        }
        if let Some(token) = bearer {
            request = request.header(hyper::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request.body(Full::new(body)).expect("valid request");
        let response = self.sender.send_request(request).await.map_err(http)?;
        let (parts, body) = response.into_parts();
        let body = body.collect().await.map_err(http)?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// One request on a fresh connection.
pub async fn once(
    url: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Answer, ClientError> {
    Connection::open(url).await?.send(method, path, body).await
}
