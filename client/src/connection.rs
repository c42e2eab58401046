//! A minimal HTTP/1.1 keep-alive client for the CLI and the load generator:
//! one connection, one request at a time, no hidden pooling or retries, so
//! that what the benchmark measures is the server. `https://` URLs are
//! spoken over TLS with a [`TlsConfig`] (the CA to trust, and a client
//! certificate for mutual TLS).

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::task::Poll;

use crate::tls::TlsConfig;

/// Why a request on a [`Connection`] failed. Nothing is retried here: the
/// caller decides whether to open a new connection and try again.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The URL is not `http://HOST:PORT[/...]` or `https://HOST:PORT[/...]`.
    #[error("bad URL {0:?}: expected http://HOST:PORT or https://HOST:PORT")]
    BadUrl(String),
    /// An `https://` URL, but no [`TlsConfig`] says which CA to trust.
    #[error(
        "{0} is https:// but no CA to trust was given: pass --ca-file FILE (or set \
         TSOHOST_CA_FILE), or give the client a TlsConfig"
    )]
    NoCa(String),
    /// The TCP connection could not be opened.
    #[error("cannot connect to {addr}: {source}. Is `tsohost serve` running there?")]
    Connect {
        /// The `HOST:PORT` dialed.
        addr: String,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The TLS handshake failed: the node's certificate is not signed by
    /// the CA trusted, names another host, has expired, or the node wants
    /// a client certificate that was not given (or refused it).
    #[error(
        "TLS handshake with {addr} failed: {source}. Check --ca-file (the CA that signed the \
         node's certificate) and, if the node requires client certificates, --client-cert and \
         --client-key"
    )]
    Tls {
        /// The `HOST:PORT` dialed.
        addr: String,
        /// What rustls reported.
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
    /// The server closed the connection (a keep-alive connection left idle
    /// too long, or a node shutting down); open a new one.
    #[error("{0} closed the connection")]
    Closed(String),
}

/// `http://host:port[/...]` or `https://...` → `host:port`.
pub fn authority(url: &str) -> Result<String, ClientError> {
    Ok(parse(url)?.1)
}

/// `http://host:port[/...]` → `http://host:port` (and the same for
/// `https://`): the node a URL points at, scheme kept.
pub fn base_url(url: &str) -> Result<String, ClientError> {
    let (secure, authority) = parse(url)?;
    let scheme = if secure { "https" } else { "http" };
    Ok(format!("{scheme}://{authority}"))
}

/// Whether `url` is `https://`, and its `host:port`.
fn parse(url: &str) -> Result<(bool, String), ClientError> {
    let (secure, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => return Err(ClientError::BadUrl(url.to_string())),
    };
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(ClientError::BadUrl(url.to_string()));
    }
    Ok((secure, authority.to_string()))
}

/// The name a node's certificate must carry: the host of `authority`
/// (a DNS name or an IP address, IPv6 without its brackets).
fn server_name(url: &str, authority: &str) -> Result<ServerName<'static>, ClientError> {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|_| ClientError::BadUrl(url.to_string()))
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
///
/// The connection's I/O is driven by the task that sends on it, inside
/// [`Connection::send_with`], not by a task of its own: a request crosses
/// no tasks on its way out or back, so a call costs no wake-up of another
/// task (on a busy runtime each one is a wait for a worker). Between
/// requests nothing reads the socket; a connection the server closed
/// meanwhile fails its next request.
pub struct Connection {
    addr: String,
    sender: http1::SendRequest<Full<Bytes>>,
    /// hyper's state machine of the connection, which reads and writes the
    /// socket when polled; `None` once it ended (the connection closed).
    io: Option<Io>,
}

/// What [`http1::handshake`] returns to be polled, for either transport.
type Io = Pin<Box<dyn Future<Output = hyper::Result<()>> + Send>>;

impl Connection {
    /// Connect to the node at `url` (only its scheme and `HOST:PORT` are
    /// used) with Nagle's algorithm off, so that small requests are not
    /// delayed. Needs a Tokio runtime (for the socket). An `https://` URL
    /// needs [`Connection::open_with`].
    pub async fn open(url: &str) -> Result<Connection, ClientError> {
        Connection::open_with(url, None).await
    }

    /// As [`Connection::open`]; an `https://` URL is spoken over TLS with
    /// `tls` (an `http://` URL ignores it).
    pub async fn open_with(url: &str, tls: Option<&TlsConfig>) -> Result<Connection, ClientError> {
        let (secure, addr) = parse(url)?;
        let tls = match (secure, tls) {
            (false, _) => None,
            (true, Some(tls)) => Some((tls, server_name(url, &addr)?)),
            (true, None) => return Err(ClientError::NoCa(url.to_string())),
        };
        let stream = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let http = |source| ClientError::Http {
            addr: addr.clone(),
            source,
        };
        let (sender, io): (_, Io) = match tls {
            None => {
                let (sender, io) = http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
                (sender, Box::pin(io))
            }
            Some((tls, name)) => {
                let stream = tokio_rustls::TlsConnector::from(tls.client_config())
                    .connect(name, stream)
                    .await
                    .map_err(|source| ClientError::Tls {
                        addr: addr.clone(),
                        source,
                    })?;
                let (sender, io) = http1::handshake(TokioIo::new(stream)).await.map_err(http)?;
                (sender, Box::pin(io))
            }
        };
        Ok(Connection {
            addr,
            sender,
            io: Some(io),
        })
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
        let Connection { addr, sender, io } = self;
        drive(io, addr, sender.ready()).await?;
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, addr.as_str());
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
        let response = drive(io, addr, sender.send_request(request)).await?;
        let (parts, body) = response.into_parts();
        let body = drive(io, addr, body.collect()).await?.to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
}

/// Await `step` of a request on the connection to `addr` while driving
/// its `io`, which `step` waits on. `io` ending before `step` is done (the
/// connection closed or broke) fails the request, as
/// [`ClientError::Closed`] or with `io`'s own error; a connection that
/// ended stays ended, and fails every request after (`io` is `None`).
async fn drive<T>(
    io: &mut Option<Io>,
    addr: &str,
    step: impl Future<Output = hyper::Result<T>>,
) -> Result<T, ClientError> {
    let mut step = pin!(step);
    let outcome = poll_fn(|cx| {
        // The I/O first: it moves what `step` waits for (the request out,
        // the answer in) before `step` looks.
        let polled = io.as_mut().map(|running| running.as_mut().poll(cx));
        let ended = match polled {
            Some(Poll::Pending) => None,
            Some(Poll::Ready(end)) => {
                *io = None;
                Some(end.err())
            }
            None => Some(None),
        };
        match (step.as_mut().poll(cx), ended) {
            (Poll::Ready(Ok(done)), _) => Poll::Ready(Ok(done)),
            // `step` failed because the connection is gone ("channel
            // closed"): name why it went instead.
            (Poll::Ready(Err(_)), Some(why)) => Poll::Ready(Err(why)),
            (Poll::Ready(Err(e)), None) => Poll::Ready(Err(Some(e))),
            (Poll::Pending, None) => Poll::Pending,
            (Poll::Pending, Some(why)) => Poll::Ready(Err(why)),
        }
    })
    .await;
    outcome.map_err(|why| match why {
        Some(source) => ClientError::Http {
            addr: addr.to_string(),
            source,
        },
        None => ClientError::Closed(addr.to_string()),
    })
}

/// One request on a fresh connection.
pub async fn once(
    url: &str,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Answer, ClientError> {
    once_with(url, None, method, path, body).await
}

/// As [`once`], over TLS with `tls` for an `https://` URL.
pub async fn once_with(
    url: &str,
    tls: Option<&TlsConfig>,
    method: Method,
    path: &str,
    body: Bytes,
) -> Result<Answer, ClientError> {
    Connection::open_with(url, tls)
        .await?
        .send(method, path, body)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept-alive connection the server closed while it sat idle fails
    /// its next request as `Closed`, naming the server, and keeps failing
    /// so (its I/O is not polled again after it ended).
    #[tokio::test]
    async fn a_connection_the_server_closed_fails_as_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await.unwrap();
            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            socket.write_all(answer).await.unwrap();
            // Closed without `connection: close`, as an idle timeout does.
        });
        let mut conn = Connection::open(&url).await.unwrap();
        let answer = conn.send(Method::GET, "/", Bytes::new()).await.unwrap();
        assert_eq!(answer.body, Bytes::from_static(b"ok"));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        let authority = authority(&url).unwrap();
        for _ in 0..2 {
            match conn.send(Method::GET, "/", Bytes::new()).await {
                Err(ClientError::Closed(addr)) => assert_eq!(addr, authority),
                other => panic!("{other:?}"),
            }
        }
    }

    #[test]
    fn urls_keep_their_scheme_and_name_their_host() {
        assert_eq!(base_url("https://n1:7373/v1/x").unwrap(), "https://n1:7373");
        assert_eq!(authority("http://n1:7373").unwrap(), "n1:7373");
        assert!(matches!(base_url("ftp://n1"), Err(ClientError::BadUrl(_))));
        assert!(matches!(base_url("https://"), Err(ClientError::BadUrl(_))));
        let name = |a| server_name("u", a).unwrap().to_str().into_owned();
        assert_eq!(name("127.0.0.1:7373"), "127.0.0.1");
        assert_eq!(name("[::1]:7373"), "::1");
        assert_eq!(name("localhost:7373"), "localhost");
    }
}
