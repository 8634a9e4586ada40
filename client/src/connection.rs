//! One Kafka-protocol connection to a broker's client listener: frames a request, reads its
//! response, and checks the correlation id.

use std::io;
use std::time::Duration;

use bytes::{Buf, BufMut, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, Request, StrBytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

/// A byte stream a connection can run over: TCP, or TLS over TCP.
pub trait Transport: AsyncRead + AsyncWrite + Send + Sync + Unpin {}

impl<S: AsyncRead + AsyncWrite + Send + Sync + Unpin> Transport for S {}

/// Responses larger than this close the connection.
const MAX_RESPONSE: usize = 256 << 20;

/// One connection; requests go one at a time.
pub struct BrokerConnection {
    stream: Box<dyn Transport>,
    client_id: StrBytes,
    correlation_id: i32,
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl BrokerConnection {
    /// Connects to `host:port` within `timeout`.
    pub async fn connect(address: &str, client_id: String, timeout: Duration) -> io::Result<Self> {
        let stream = tcp(address, timeout).await?;
        Ok(Self::over(stream, client_id))
    }

    /// A connection over an established stream (for example TLS set up by the caller).
    pub fn over(stream: impl Transport + 'static, client_id: String) -> Self {
        BrokerConnection {
            stream: Box::new(stream),
            client_id: StrBytes::from_string(client_id),
            correlation_id: 0,
        }
    }

    /// Sends `request` at `version` and decodes its response, all within `timeout`.
    pub async fn send<R>(
        &mut self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> io::Result<R::Response>
    where
        R: Request,
    {
        tokio::time::timeout(timeout, self.exchange(request, version))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "broker did not answer in time"))?
    }

    async fn exchange<R>(&mut self, request: &R, version: i16) -> io::Result<R::Response>
    where
        R: Request,
    {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let api_key = ApiKey::try_from(R::KEY).map_err(|_| invalid("unknown api key"))?;
        let header = RequestHeader::default()
            .with_request_api_key(R::KEY)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(self.client_id.clone()));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, api_key.request_header_version(version))
            .map_err(invalid)?;
        request.encode(&mut body, version).map_err(invalid)?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame).await?;
        self.stream.flush().await?;

        let size = self.stream.read_i32().await?;
        if size < 0 || size as usize > MAX_RESPONSE {
            return Err(invalid(format!("response size {size}")));
        }
        let mut buf = BytesMut::zeroed(size as usize);
        self.stream.read_exact(&mut buf).await?;
        let mut buf = buf.freeze();
        let header = ResponseHeader::decode(&mut buf, api_key.response_header_version(version))
            .map_err(invalid)?;
        if header.correlation_id != self.correlation_id {
            return Err(invalid(format!(
                "correlation id {} does not match {}",
                header.correlation_id, self.correlation_id
            )));
        }
        let response = R::Response::decode(&mut buf, version).map_err(invalid)?;
        if buf.has_remaining() {
            tracing::debug!(bytes = buf.remaining(), "ignoring trailing response bytes");
        }
        Ok(response)
    }
}

/// Opens a TCP connection to `host:port` within `timeout`, with Nagle off.
pub async fn tcp(address: &str, timeout: Duration) -> io::Result<TcpStream> {
    let stream = tokio::time::timeout(timeout, TcpStream::connect(address))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, format!("connect to {address}")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}
