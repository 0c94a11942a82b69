//! Classing MySQL/MariaDB errors: transient (reconnect) or definite (stop
//! the task with a message naming the fix).

use crate::event::Connector;
use crate::source::SourceError;

pub(crate) fn grant_hint(connector: Connector) -> &'static str {
    match connector {
        Connector::Mariadb => "REPLICATION SLAVE, BINLOG MONITOR, SELECT",
        _ => "REPLICATION SLAVE, REPLICATION CLIENT, SELECT",
    }
}

/// Classes a driver error: I/O and lost connections are transient; the
/// driver's error stays the cause.
pub(crate) fn classify(context: &str, e: mysql_async::Error) -> SourceError {
    let err = match &e {
        mysql_async::Error::Server(s) => match s.code {
            // Access denied, unknown user/db: the operator must act.
            1044 | 1045 | 1227 | 1142 | 1143 | 1698 => {
                SourceError::definite(format!("{context}: access denied"))
            }
            // Too many connections, server shutting down, lock wait: retry.
            1040 | 1053 | 1205 | 2006 | 2013 => SourceError::transient(context),
            _ => SourceError::definite(context),
        },
        mysql_async::Error::Url(_) => SourceError::definite(format!(
            "{context}: the URL is invalid (expected mysql://user:password@host:port)"
        )),
        // A certificate that doesn't verify won't verify on the next try.
        mysql_async::Error::Io(io) if is_tls_failure(io) => SourceError::definite(format!(
            "{context}: TLS handshake failed. Check source.tls: ca_file must hold the CA that signed the server's certificate, whose names must include the host in the URL (or set skip_hostname_check)"
        )),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) if is_packet_too_large(io) => {
            SourceError::definite(format!(
                "{context}: the server sent a packet larger than 1 GiB, the most a MySQL/MariaDB connection carries (max_allowed_packet's limit), so no replica can read this event; the binlog can't be read past it"
            ))
        }
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => {
            SourceError::definite(format!(
                "{context}: source.tls.mode requires TLS but the server doesn't offer it: configure ssl_cert/ssl_key on the server, or set tls.mode = \"disabled\""
            ))
        }
        _ => SourceError::transient(context),
    };
    err.caused_by(e)
}

/// The client codec refused a packet over its max_allowed_packet.
fn is_packet_too_large(e: &std::io::Error) -> bool {
    use mysql_common::proto::codec::error::PacketCodecError;
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<PacketCodecError>())
        .is_some_and(|c| matches!(c, PacketCodecError::PacketTooLarge))
}

/// A TLS failure (rustls reports it through the I/O error it wraps).
pub(crate) fn is_tls_failure(e: &mysql_async::IoError) -> bool {
    match e {
        mysql_async::IoError::Tls(_) => true,
        mysql_async::IoError::Io(io) => crate::error::is_tls_failure(io),
    }
}

/// Errors of the binlog dump itself.
pub(super) fn dump_error(e: mysql_async::Error, connector: Connector) -> SourceError {
    if let mysql_async::Error::Server(s) = &e {
        match s.code {
            1227 | 1045 => {
                let msg = format!(
                    "the server refused the binlog dump: GRANT {} ON *.* TO the tidemark user",
                    grant_hint(connector)
                );
                return SourceError::definite(msg).caused_by(e);
            }
            1236 => {
                return SourceError::definite(
                    "the server can't send the binlog from the requested position. If the binlog was purged, reset the task with `tidemark offsets reset` and re-copy the tables",
                )
                .caused_by(e);
            }
            _ => {}
        }
    }
    classify("reading the binlog", e)
}
