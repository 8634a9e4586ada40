//! The coordinator's side of WriteTxnMarkers: sends a transaction's markers to the brokers
//! that lead its partitions, over the inter-broker listener, one kept connection per broker.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use strom_client::BrokerConnection;

use crate::metadata::image::MetadataImage;
use crate::security::{login, Outgoing};

/// How long connecting, TLS and SASL to a broker may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a broker may take to write and replicate markers.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections to the brokers markers go to.
pub struct MarkerClient {
    me: i32,
    listener: String,
    security: Outgoing,
    /// One connection per broker, each behind its own lock so brokers are sent to in parallel.
    connections: Mutex<HashMap<i32, Connection>>,
}

type Connection = Arc<tokio::sync::Mutex<Option<BrokerConnection>>>;

impl MarkerClient {
    /// A client for broker `me`, connecting on `listener` with `security`.
    pub fn new(me: i32, listener: String, security: Outgoing) -> Self {
        MarkerClient {
            me,
            listener,
            security,
            connections: Mutex::new(HashMap::new()),
        }
    }

    /// Sends `request` to `broker`; a failed connection is dropped, to be made again next time.
    pub async fn send(
        &self,
        image: &MetadataImage,
        broker: i32,
        request: &WriteTxnMarkersRequest,
    ) -> io::Result<WriteTxnMarkersResponse> {
        let slot = self
            .connections
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(broker)
            .or_default()
            .clone();
        let mut connection = slot.lock().await;
        if connection.is_none() {
            let registration = image
                .brokers
                .get(&broker)
                .ok_or_else(|| io::Error::other(format!("broker {broker} is not registered")))?;
            let (host, port) = registration.endpoint(&self.listener);
            *connection = Some(
                login::connect(
                    host,
                    port,
                    format!("strom-txn-markers-{}", self.me),
                    &self.security,
                    CONNECT_TIMEOUT,
                )
                .await?,
            );
        }
        let response = connection
            .as_mut()
            .expect("connected above")
            .send(request, 1, REQUEST_TIMEOUT)
            .await;
        if response.is_err() {
            *connection = None;
        }
        response
    }
}
