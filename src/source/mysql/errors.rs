//! Classing MySQL/MariaDB errors: transient (reconnect) or definite (stop
//! the task with a message naming the fix).

use crate::event::Connector;
use crate::source::SourceError;

pub(super) fn grant_hint(connector: Connector) -> &'static str {
    match connector {
        Connector::Mariadb => "REPLICATION SLAVE, BINLOG MONITOR, SELECT",
        _ => "REPLICATION SLAVE, REPLICATION CLIENT, SELECT",
    }
}

/// Classes a driver error: I/O and lost connections are transient.
pub(super) fn classify(context: &str, e: mysql_async::Error) -> SourceError {
    match &e {
        mysql_async::Error::Server(s) => match s.code {
            // Access denied, unknown user/db: the operator must act.
            1044 | 1045 | 1227 | 1142 | 1143 | 1698 => SourceError::Definite(format!(
                "{context}: access denied: {} (error {})",
                s.message, s.code
            )),
            // Too many connections, server shutting down, lock wait: retry.
            1040 | 1053 | 1205 | 2006 | 2013 => SourceError::Transient(format!("{context}: {e}")),
            _ => SourceError::Definite(format!("{context}: {} (error {})", s.message, s.code)),
        },
        mysql_async::Error::Url(_) => SourceError::Definite(format!("{context}: {e}")),
        // A certificate that doesn't verify won't verify on the next try.
        mysql_async::Error::Io(io) if is_tls_failure(io) => SourceError::Definite(format!(
            "{context}: TLS handshake failed: {e}. Check source.tls: ca_file must hold the CA that signed the server's certificate, whose names must include the host in the URL (or set skip_hostname_check)"
        )),
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            SourceError::Definite(format!(
                "{context}: source.tls.mode requires TLS but the server doesn't offer it: configure ssl_cert/ssl_key on the server, or set tls.mode = \"disabled\""
            ))
        }
        _ => SourceError::Transient(format!("{context}: {e}")),
    }
}

/// A TLS failure (rustls reports it through the I/O error it wraps).
fn is_tls_failure(e: &mysql_async::IoError) -> bool {
    match e {
        mysql_async::IoError::Tls(_) => true,
        mysql_async::IoError::Io(io) => io
            .get_ref()
            .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some()),
    }
}

/// Errors of the binlog dump itself.
pub(super) fn dump_error(e: mysql_async::Error, connector: Connector) -> SourceError {
    if let mysql_async::Error::Server(s) = &e {
        match s.code {
            1227 | 1045 => {
                return SourceError::Definite(format!(
                    "the server refused the binlog dump: {} — GRANT {} ON *.* TO the tidemark user",
                    s.message,
                    grant_hint(connector)
                ));
            }
            1236 => {
                return SourceError::Definite(format!(
                    "the server can't send the binlog from the requested position: {} (error 1236). If the binlog was purged, reset the task with `tidemark offsets reset` and re-copy the tables",
                    s.message
                ));
            }
            _ => {}
        }
    }
    classify("reading the binlog", e)
}
