//! The CLI's client for a running daemon's API (`tidemark task …`):
//! HTTP/1.1, over TLS for an `https://` address, one request per
//! connection, to the address of `daemon.api.listen` (loopback by default).

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Where the daemon's API is, and its token.
#[derive(Clone)]
pub struct Client {
    host: String,
    port: u16,
    token: String,
    /// For `https://`: the TLS settings (the API's CA).
    tls: Option<std::sync::Arc<rustls::ClientConfig>>,
}

/// A reply: status and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

impl Client {
    /// `api`: `http://host:port` (or `host:port`), or `https://host:port`
    /// with the CA that signed the API's certificate in `ca_file` (the
    /// public roots when absent).
    pub fn new(
        api: &str,
        token: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Client, String> {
        let (rest, https) = match api.strip_prefix("https://") {
            Some(r) => (r, true),
            None => (api.strip_prefix("http://").unwrap_or(api), false),
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{api}: expected http(s)://host:port"))?;
        let port = port
            .parse()
            .map_err(|_| format!("{api}: {port:?} is not a port"))?;
        if token.is_empty() {
            return Err(
                "no API token: pass --token or set TIDEMARK_API_TOKEN (the daemon.api.token)"
                    .into(),
            );
        }
        let tls = if https {
            let cfg = crate::config::TlsConfig {
                mode: crate::config::TlsMode::Required,
                ca_file: ca_file.map(std::path::Path::to_path_buf),
                skip_hostname_check: false,
            };
            let c = crate::source::postgres::connect::client_config(&cfg)
                .map_err(|e| crate::error::chain(&e))?;
            Some(std::sync::Arc::new(c))
        } else {
            None
        };
        Ok(Client {
            host: host.trim_matches(['[', ']']).to_string(),
            port,
            token: token.to_string(),
            tls,
        })
    }

    pub async fn call(&self, method: &str, path: &str, body: &str) -> Result<Reply, String> {
        let addr = format!("{}:{}", self.host, self.port);
        let s = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        .map_err(|_| format!("connecting to the API at {addr}: timed out"))?
        .map_err(|e| {
            format!(
                "connecting to the API at {addr}: {e} (is the daemon running with [daemon.api]?)"
            )
        })?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.token,
            body.len()
        );
        let raw = match &self.tls {
            None => exchange(s, &req, &addr).await?,
            Some(cfg) => {
                let name = rustls::pki_types::ServerName::try_from(self.host.clone())
                    .map_err(|e| format!("{}: {e}", self.host))?;
                let tls = tokio_rustls::TlsConnector::from(cfg.clone())
                    .connect(name, s)
                    .await
                    .map_err(|e| {
                        format!("TLS to the API at {addr}: {e} (pass --ca-file with the CA that signed its certificate)")
                    })?;
                exchange(tls, &req, &addr).await?
            }
        };
        parse(&raw)
    }
}

async fn exchange<S>(mut s: S, req: &str, addr: &str) -> Result<Vec<u8>, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("sending to the API at {addr}: {e}"))?;
    let mut raw = Vec::new();
    // Requests that drain a task wait for it: up to the daemon's shutdown
    // timeout, and some.
    let read = tokio::time::timeout(std::time::Duration::from_secs(600), s.read_to_end(&mut raw))
        .await
        .map_err(|_| format!("the API at {addr} didn't answer in 600 s"))?;
    // A TLS peer that closes without close_notify still sent everything.
    if let Err(e) = read
        && raw.is_empty()
    {
        return Err(format!("reading the API's answer: {e}"));
    }
    Ok(raw)
}

fn parse(raw: &[u8]) -> Result<Reply, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or("the API's answer has no header")?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("the API's answer has no status")?;
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    let body = if chunked {
        let mut out = String::new();
        let mut rest = body;
        while let Some((size, tail)) = rest.split_once("\r\n") {
            let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
            if n == 0 || tail.len() < n {
                break;
            }
            out.push_str(&tail[..n]);
            rest = tail.get(n + 2..).unwrap_or("");
        }
        out
    } else {
        body.to_string()
    };
    Ok(Reply { status, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_answers() {
        assert!(Client::new("http://127.0.0.1:7070", "t", None).is_ok());
        assert!(Client::new("127.0.0.1:7070/", "t", None).is_ok());
        assert!(Client::new("https://h:1", "t", None).is_ok_and(|c| c.tls.is_some()));
        assert!(Client::new("http://h", "t", None).is_err());
        assert!(
            Client::new("http://h:1", "", None)
                .err()
                .is_some_and(|e| e.contains("TIDEMARK_API_TOKEN"))
        );
        let r = parse(b"HTTP/1.1 409 Conflict\r\ncontent-length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_str()), (409, "{}"));
        let r = parse(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap();
        assert_eq!(r.body, "abcde");
    }
}
