//! Integration tests: an in-process broker on ephemeral ports, driven over TCP with
//! Kafka-protocol requests.

use std::path::Path;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, CreateTopicsRequest, FetchRequest, ProduceRequest, RequestHeader,
    RequestKind, ResponseHeader, ResponseKind, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::records::{Compression, RecordBatchDecoder};
use strom_broker::config::BrokerConfig;
use strom_broker::log::batch::encode_records;
use strom_broker::server::Server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn start(dir: &Path, extra: &[&str]) -> Server {
    let mut overrides = vec![
        "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0".to_string(),
        "controller.quorum.voters=1@127.0.0.1:0".to_string(),
        "metrics.listener=127.0.0.1:0".to_string(),
        format!("log.dirs={}", dir.display()),
    ];
    overrides.extend(extra.iter().map(|s| s.to_string()));
    let config = BrokerConfig::load(None, Vec::new(), &overrides).expect("config");
    Server::start(config).await.expect("server starts")
}

struct Client {
    stream: TcpStream,
    correlation_id: i32,
}

impl Client {
    async fn connect(server: &Server) -> Client {
        Client {
            stream: TcpStream::connect(server.client_address.unwrap())
                .await
                .unwrap(),
            correlation_id: 0,
        }
    }

    async fn send_raw(&mut self, frame: &[u8]) {
        self.stream.write_all(frame).await.unwrap();
    }

    async fn read_frame(&mut self) -> Option<Bytes> {
        let size = tokio::time::timeout(Duration::from_secs(20), self.stream.read_i32())
            .await
            .expect("a response or a close in time")
            .ok()?;
        let mut buf = vec![0u8; size as usize];
        self.stream.read_exact(&mut buf).await.ok()?;
        Some(Bytes::from(buf))
    }

    async fn request(&mut self, version: i16, request: RequestKind) -> ResponseKind {
        let api_key = api_key_of(&request);
        self.correlation_id += 1;
        let mut buf = BytesMut::new();
        buf.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(api_key as i16)
            .with_request_api_version(version)
            .with_correlation_id(self.correlation_id)
            .with_client_id(Some(StrBytes::from_static_str("it")))
            .encode(&mut buf, api_key.request_header_version(version))
            .unwrap();
        request.encode(&mut buf, version).unwrap();
        let len = (buf.len() - 4) as i32;
        buf[0..4].copy_from_slice(&len.to_be_bytes());
        self.send_raw(&buf).await;
        let mut frame = self.read_frame().await.expect("response");
        let header =
            ResponseHeader::decode(&mut frame, api_key.response_header_version(version)).unwrap();
        assert_eq!(header.correlation_id, self.correlation_id);
        ResponseKind::decode(api_key, &mut frame, version).unwrap()
    }
}

fn api_key_of(request: &RequestKind) -> ApiKey {
    match request {
        RequestKind::ApiVersions(_) => ApiKey::ApiVersions,
        RequestKind::CreateTopics(_) => ApiKey::CreateTopics,
        RequestKind::Produce(_) => ApiKey::Produce,
        RequestKind::Fetch(_) => ApiKey::Fetch,
        other => panic!("add {other:?} to api_key_of"),
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

fn batch(values: &[&str], compression: Compression) -> Bytes {
    // Recent timestamps: records from 1970 would be (rightly) deleted by retention.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let entries = values.iter().enumerate().map(|(i, v)| {
        (
            Some(Bytes::from(format!("k{i}"))),
            Some(Bytes::from(v.to_string())),
        )
    });
    encode_records(entries, now, compression).unwrap().freeze()
}

async fn create_topic(client: &mut Client, topic: &str, configs: &[(&str, &str)]) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(name(topic))
            .with_num_partitions(1)
            .with_replication_factor(1)
            .with_configs(
                configs
                    .iter()
                    .map(|(k, v)| {
                        CreatableTopicConfig::default()
                            .with_name(StrBytes::from_string(k.to_string()))
                            .with_value(Some(StrBytes::from_string(v.to_string())))
                    })
                    .collect(),
            )]);
    let ResponseKind::CreateTopics(r) = client.request(7, RequestKind::CreateTopics(request)).await
    else {
        panic!("wrong response kind")
    };
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

async fn produce(client: &mut Client, topic: &str, records: Bytes) -> (i16, i64) {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(records))])]);
    let ResponseKind::Produce(r) = client.request(9, RequestKind::Produce(request)).await else {
        panic!("wrong response kind")
    };
    let p = &r.responses[0].partition_responses[0];
    (p.error_code, p.base_offset)
}

async fn fetch(
    client: &mut Client,
    topic: &str,
    offset: i64,
    max_wait_ms: i32,
) -> (i16, Vec<String>) {
    let request = FetchRequest::default()
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(name(topic))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])]);
    let ResponseKind::Fetch(r) = client.request(12, RequestKind::Fetch(request)).await else {
        panic!("wrong response kind")
    };
    let p = &r.responses[0].partitions[0];
    let mut values = Vec::new();
    if let Some(mut records) = p.records.clone() {
        while records.has_remaining() {
            let set = RecordBatchDecoder::decode(&mut records).unwrap();
            values.extend(
                set.records
                    .iter()
                    .map(|r| String::from_utf8(r.value.clone().unwrap().to_vec()).unwrap()),
            );
        }
    }
    (p.error_code, values)
}

#[tokio::test]
async fn api_versions_and_unsupported_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let mut client = Client::connect(&server).await;
    let ResponseKind::ApiVersions(r) = client
        .request(3, RequestKind::ApiVersions(ApiVersionsRequest::default()))
        .await
    else {
        panic!("wrong response kind")
    };
    assert_eq!(r.error_code, 0);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16));
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::EndTxn as i16 && k.max_version == 3));
    assert!(!r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::ExpireDelegationToken as i16));

    // ApiVersions v99: a v0-encoded UNSUPPORTED_VERSION with the list.
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_i16(ApiKey::ApiVersions as i16);
    frame.put_i16(99);
    frame.put_i32(77);
    frame.put_i16(-1);
    client.send_raw(&frame).await;
    let mut body = client.read_frame().await.unwrap();
    assert_eq!(body.get_i32(), 77);
    assert_eq!(body.get_i16(), 35);
    assert!(body.get_i32() > 5);
    server.shutdown().await;
}

#[tokio::test]
async fn produce_fetch_and_restart_keep_data() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let mut client = Client::connect(&server).await;
    create_topic(&mut client, "orders", &[("segment.bytes", "1024")]).await;
    let mut expected = Vec::new();
    for (i, codec) in [
        Compression::None,
        Compression::Gzip,
        Compression::Lz4,
        Compression::Zstd,
        Compression::Snappy,
    ]
    .into_iter()
    .enumerate()
    {
        let values: Vec<String> = (0..20)
            .map(|j| format!("{i}-{j}-{}", "x".repeat(30)))
            .collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let (error, base) = produce(&mut client, "orders", batch(&refs, codec)).await;
        assert_eq!((error, base), (0, i as i64 * 20));
        expected.extend(values);
    }
    let mut got = Vec::new();
    while got.len() < expected.len() {
        let (error, values) = fetch(&mut client, "orders", got.len() as i64, 100).await;
        assert_eq!(error, 0);
        assert!(!values.is_empty());
        got.extend(values);
    }
    assert_eq!(got, expected);
    assert_eq!(
        fetch(&mut client, "orders", 101, 0).await.0,
        1,
        "OFFSET_OUT_OF_RANGE"
    );
    server.shutdown().await;

    let server = start(dir.path(), &[]).await;
    let mut client = Client::connect(&server).await;
    let (_, after_restart) = fetch(&mut client, "orders", 0, 100).await;
    assert_eq!(after_restart[0], expected[0]);
    let (error, base) = produce(&mut client, "orders", batch(&["next"], Compression::None)).await;
    assert_eq!((error, base), (0, 100));
    server.shutdown().await;
}

#[tokio::test]
async fn bad_batches_get_errors_and_the_connection_stays_open() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let mut client = Client::connect(&server).await;
    create_topic(&mut client, "strict", &[("max.message.bytes", "200")]).await;
    let good = batch(&["ok"], Compression::None);
    let mut corrupt = BytesMut::from(&good[..]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0xff;
    assert_eq!(
        produce(&mut client, "strict", corrupt.freeze()).await.0,
        2,
        "CORRUPT_MESSAGE"
    );
    let big = "y".repeat(500);
    assert_eq!(
        produce(&mut client, "strict", batch(&[&big], Compression::None))
            .await
            .0,
        10,
        "MESSAGE_TOO_LARGE"
    );
    assert_eq!(
        produce(&mut client, "nope", good.clone()).await.0,
        3,
        "UNKNOWN_TOPIC"
    );
    assert_eq!(produce(&mut client, "strict", good).await, (0, 0));
    server.shutdown().await;
}

#[tokio::test]
async fn malformed_frame_closes_only_its_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &["socket.request.max.bytes=1000"]).await;
    let mut other = Client::connect(&server).await;
    let mut bad = Client::connect(&server).await;
    bad.send_raw(&5000i32.to_be_bytes()).await;
    assert!(
        bad.read_frame().await.is_none(),
        "oversized frame closes the connection"
    );
    let mut garbage = Client::connect(&server).await;
    garbage
        .send_raw(&[0, 0, 0, 12, 0, 3, 0, 12, 0, 0, 0, 1, 0xff, 0xff, 0xff, 0xff])
        .await;
    assert!(
        garbage.read_frame().await.is_none(),
        "undecodable frame closes the connection"
    );
    assert_eq!(server.malformed_requests(), 2);
    let response = other
        .request(0, RequestKind::ApiVersions(ApiVersionsRequest::default()))
        .await;
    assert!(matches!(response, ResponseKind::ApiVersions(r) if r.error_code == 0));
    server.shutdown().await;
}

#[tokio::test]
async fn long_poll_fetch_wakes_on_produce() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &[]).await;
    let mut consumer = Client::connect(&server).await;
    let mut producer = Client::connect(&server).await;
    create_topic(&mut producer, "events", &[]).await;
    let waiting = tokio::spawn(async move {
        let result = fetch(&mut consumer, "events", 0, 20_000).await;
        (result, consumer)
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        produce(&mut producer, "events", batch(&["wake"], Compression::None))
            .await
            .0,
        0
    );
    let ((error, values), _consumer) = waiting.await.unwrap();
    assert_eq!((error, values), (0, vec!["wake".to_string()]));
    server.shutdown().await;
}
