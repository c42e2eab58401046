//! A minimal HTTP/1.1 keep-alive client for the CLI and the load generator:
//! one connection, one request at a time, no hidden pooling or retries, so
//! that what the benchmark measures is the server.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("bad URL {0:?}: expected http://HOST:PORT")]
    BadUrl(String),
    #[error("cannot connect to {addr}: {source}. Is `tsohost serve` running there?")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("HTTP error talking to {addr}: {source}")]
    Http { addr: String, source: hyper::Error },
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

/// A response: status and body.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

/// One keep-alive connection.
pub struct Connection {
    addr: String,
    sender: http1::SendRequest<Full<Bytes>>,
}

impl Connection {
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
