//! The transaction admin APIs over the wire, where no Python or Node client sends them:
//! DescribeProducers, ListTransactions and DescribeTransactions, and Kafka's way to end a
//! hanging transaction (a producer that wrote without adding its partition to the transaction):
//! a WriteTxnMarkers abort sent straight to the partition's leader, as `kafka-transactions
//! abort` does.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use strom_broker::config::BrokerConfig;
use strom_broker::server::Server;
use strom_client::BrokerConnection;

const TIMEOUT: Duration = Duration::from_secs(20);

async fn start(dir: &Path) -> Server {
    let overrides = [
        "listeners=PLAINTEXT://127.0.0.1:0,CONTROLLER://127.0.0.1:0".to_string(),
        "controller.quorum.voters=1@127.0.0.1:0".to_string(),
        "metrics.listener=127.0.0.1:0".to_string(),
        "offsets.topic.num.partitions=1".to_string(),
        "transaction.state.log.num.partitions=1".to_string(),
        format!("log.dirs={}", dir.display()),
    ];
    let config = BrokerConfig::load(None, Vec::new(), &overrides).expect("config");
    Server::start(config).await.expect("server starts")
}

fn s(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}

fn txn_id(text: &str) -> TransactionalId {
    TransactionalId(s(text))
}

/// One transactional record batch of `producer_id` at `epoch`, starting at sequence `sequence`.
fn txn_batch(producer_id: i64, epoch: i16, sequence: i32, value: &str) -> Bytes {
    let record = Record {
        transactional: true,
        control: false,
        delete_horizon: false,
        partition_leader_epoch: 0,
        producer_id,
        producer_epoch: epoch,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence,
        timestamp: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        key: None,
        value: Some(Bytes::from(value.to_string())),
        headers: Default::default(),
    };
    let mut buf = bytes::BytesMut::new();
    let options = RecordEncodeOptions {
        version: 2,
        compression: Compression::None,
    };
    RecordBatchEncoder::encode(&mut buf, [&record], &options).unwrap();
    buf.freeze()
}

async fn produce(c: &mut BrokerConnection, txn: &str, batch: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_transactional_id(Some(txn_id(txn)))
        .with_acks(-1)
        .with_timeout_ms(10_000)
        .with_topic_data(vec![TopicProduceData::default()
            .with_name(TopicName(s("t")))
            .with_partition_data(vec![PartitionProduceData::default()
                .with_index(0)
                .with_records(Some(batch))])]);
    let response = c.send(&request, 9, TIMEOUT).await.unwrap();
    response.responses[0].partition_responses[0].error_code
}

/// The latest offset a consumer at `isolation_level` may read.
async fn latest(c: &mut BrokerConnection, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![ListOffsetsTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![ListOffsetsPartition::default()
                .with_partition_index(0)
                .with_timestamp(-1)])]);
    let response = c.send(&request, 7, TIMEOUT).await.unwrap();
    let p = &response.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

async fn describe(
    c: &mut BrokerConnection,
    txn: &str,
) -> describe_transactions_response::TransactionState {
    let request = DescribeTransactionsRequest::default().with_transactional_ids(vec![txn_id(txn)]);
    let mut response = c.send(&request, 0, TIMEOUT).await.unwrap();
    response.transaction_states.remove(0)
}

/// InitProducerId for `txn`, retried while the transaction topic is being created.
async fn init(c: &mut BrokerConnection, txn: &str) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(txn_id(txn)))
        .with_transaction_timeout_ms(60_000);
    for _ in 0..100 {
        let response = c.send(&request, 4, TIMEOUT).await.unwrap();
        if response.error_code == 0 {
            return (response.producer_id.0, response.producer_epoch);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("InitProducerId did not succeed in 10 s");
}

#[tokio::test]
async fn admin_apis_show_transactions_and_an_abort_marker_ends_a_hanging_one() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path()).await;
    let address = server.client_address.unwrap().to_string();
    let mut c = BrokerConnection::connect(&address, "it".into(), TIMEOUT)
        .await
        .unwrap();
    let create = CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(s("t")))
            .with_num_partitions(1)
            .with_replication_factor(1)]);
    assert_eq!(
        c.send(&create, 7, TIMEOUT).await.unwrap().topics[0].error_code,
        0
    );

    // A producer writes in a transaction without telling the coordinator (a hanging one).
    let (pid, epoch) = init(&mut c, "hanging").await;
    assert_eq!(
        produce(&mut c, "hanging", txn_batch(pid, epoch, 0, "h0")).await,
        0
    );
    assert_eq!(latest(&mut c, 0).await, 1, "read_uncommitted sees it");
    assert_eq!(latest(&mut c, 1).await, 0, "read_committed stops before it");

    let request = DescribeProducersRequest::default().with_topics(vec![TopicRequest::default()
        .with_name(TopicName(s("t")))
        .with_partition_indexes(vec![0])]);
    let producers = c.send(&request, 0, TIMEOUT).await.unwrap();
    let partition = &producers.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    let producer = &partition.active_producers[0];
    assert_eq!(
        (
            producer.producer_id.0,
            producer.producer_epoch,
            producer.last_sequence
        ),
        (pid, epoch.into(), 0)
    );
    assert_eq!(producer.current_txn_start_offset, 0);
    assert_eq!(producer.coordinator_epoch, -1, "no marker yet");

    // The coordinator knows the id but no partition: its transaction is Empty there.
    let hanging = describe(&mut c, "hanging").await;
    assert_eq!(
        (hanging.error_code, hanging.transaction_state.as_str()),
        (0, "Empty")
    );
    assert_eq!(hanging.producer_id.0, pid);

    // `kafka-transactions abort`: an abort marker straight to the partition's leader.
    let abort = WriteTxnMarkersRequest::default().with_markers(vec![WritableTxnMarker::default()
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_transaction_result(false)
        .with_coordinator_epoch(producer.coordinator_epoch)
        .with_topics(vec![WritableTxnMarkerTopic::default()
            .with_name(TopicName(s("t")))
            .with_partition_indexes(vec![0])])]);
    let written = c.send(&abort, 1, TIMEOUT).await.unwrap();
    assert_eq!(written.markers[0].topics[0].partitions[0].error_code, 0);
    assert_eq!(
        latest(&mut c, 1).await,
        2,
        "the marker ends the hanging transaction"
    );
    let fetch = FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_isolation_level(1)
        .with_topics(vec![FetchTopic::default()
            .with_topic(TopicName(s("t")))
            .with_partitions(vec![FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(0)
                .with_partition_max_bytes(1 << 20)])]);
    let fetched = c.send(&fetch, 11, TIMEOUT).await.unwrap();
    let p = &fetched.responses[0].partitions[0];
    assert_eq!(p.last_stable_offset, 2);
    let aborted = p.aborted_transactions.as_ref().unwrap();
    assert_eq!(aborted.len(), 1);
    assert_eq!(
        (aborted[0].producer_id.0, aborted[0].first_offset),
        (pid, 0)
    );

    // A proper transaction shows its partitions while it is open, then its outcome.
    let (pid, epoch) = init(&mut c, "proper").await;
    let add = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(txn_id("proper"))
        .with_v3_and_below_producer_id(ProducerId(pid))
        .with_v3_and_below_producer_epoch(epoch)
        .with_v3_and_below_topics(vec![AddPartitionsToTxnTopic::default()
            .with_name(TopicName(s("t")))
            .with_partitions(vec![0])]);
    let added = c.send(&add, 3, TIMEOUT).await.unwrap();
    assert_eq!(
        added.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code,
        0
    );
    assert_eq!(
        produce(&mut c, "proper", txn_batch(pid, epoch, 0, "p0")).await,
        0
    );
    let open = describe(&mut c, "proper").await;
    assert_eq!(open.transaction_state.as_str(), "Ongoing");
    assert_eq!(open.topics[0].topic.0.as_str(), "t");
    assert_eq!(open.topics[0].partitions, vec![0]);
    assert!(open.transaction_start_time_ms > 0);
    let list =
        ListTransactionsRequest::default().with_state_filters(vec![s("Ongoing"), s("NoSuchState")]);
    let listed = c.send(&list, 1, TIMEOUT).await.unwrap();
    assert_eq!(listed.unknown_state_filters, vec![s("NoSuchState")]);
    let ids: Vec<&str> = listed
        .transaction_states
        .iter()
        .map(|t| t.transactional_id.0.as_str())
        .collect();
    assert_eq!(ids, vec!["proper"]);

    let end = EndTxnRequest::default()
        .with_transactional_id(txn_id("proper"))
        .with_producer_id(ProducerId(pid))
        .with_producer_epoch(epoch)
        .with_committed(true);
    assert_eq!(c.send(&end, 3, TIMEOUT).await.unwrap().error_code, 0);
    assert_eq!(
        describe(&mut c, "proper").await.transaction_state.as_str(),
        "CompleteCommit"
    );
    assert_eq!(
        latest(&mut c, 1).await,
        4,
        "the commit marker makes p0 stable"
    );

    // An id the coordinator never saw.
    let unknown = describe(&mut c, "never-used").await;
    assert_eq!(
        unknown.error_code,
        kafka_protocol::ResponseError::TransactionalIdNotFound.code()
    );
    server.shutdown().await;
}
