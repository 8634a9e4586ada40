//! DescribeTopicPartitions (KIP-966): topics and their partitions in name order, paged by a
//! partition limit and a cursor, as Kafka 3.8+ admin clients describe topics.

use std::collections::BTreeSet;

use kafka_protocol::messages::describe_topic_partitions_response::{
    Cursor, DescribeTopicPartitionsResponsePartition, DescribeTopicPartitionsResponseTopic,
};
use kafka_protocol::messages::{
    BrokerId, DescribeTopicPartitionsRequest, DescribeTopicPartitionsResponse,
};
use kafka_protocol::ResponseError;

use super::metadata::is_internal;
use super::topics::validate_topic_name;
use super::{topic_name, Access, Context, RequestInfo};
use crate::metadata::image::{MetadataImage, TopicImage};
use crate::security::acl::operation::DESCRIBE;
use crate::security::acl::resource;

fn brokers(ids: &[i32]) -> Vec<BrokerId> {
    ids.iter().copied().map(BrokerId).collect()
}

/// Partitions `first..` of `topic`, at most `limit` of them.
fn partitions(
    image: &MetadataImage,
    topic: &TopicImage,
    first: usize,
    limit: usize,
) -> Vec<DescribeTopicPartitionsResponsePartition> {
    let offline = |id: &i32| image.brokers.get(id).is_none_or(|b| b.fenced);
    topic
        .partitions
        .iter()
        .enumerate()
        .skip(first)
        .take(limit)
        .map(|(i, p)| {
            let offline: Vec<i32> = p.replicas.iter().copied().filter(offline).collect();
            DescribeTopicPartitionsResponsePartition::default()
                .with_partition_index(i as i32)
                .with_leader_id(BrokerId(p.leader))
                .with_leader_epoch(p.leader_epoch)
                .with_replica_nodes(brokers(&p.replicas))
                .with_isr_nodes(brokers(&p.isr))
                .with_offline_replicas(brokers(&offline))
                // Strom elects from the ISR only: no eligible leader replicas (KIP-966).
                .with_eligible_leader_replicas(Some(Vec::new()))
                .with_last_known_elr(Some(Vec::new()))
        })
        .collect()
}

fn refused(name: &str, error: ResponseError) -> DescribeTopicPartitionsResponseTopic {
    DescribeTopicPartitionsResponseTopic::default()
        .with_name(Some(topic_name(name)))
        .with_error_code(error.code())
}

/// One page of a describe: the topics named (or all), in name order from the cursor on.
struct Page<'a> {
    image: &'a MetadataImage,
    /// Every topic, rather than the ones named: unknown and refused topics are left out.
    all: bool,
    /// Where the page starts: the cursor's topic and partition, ("", 0) without one.
    cursor: (&'a str, usize),
    /// At most this many partitions, at least 1.
    limit: usize,
}

impl Page<'_> {
    /// The topics described from `names` (in name order) from the cursor's topic on, then the
    /// refused ones, and the cursor of the next page when partitions were left out. `allowed` says whether the principal may describe a topic,
    /// `operations` gives its authorized operations.
    fn describe<'n>(
        &self,
        names: impl IntoIterator<Item = &'n str>,
        allowed: impl Fn(&str) -> bool,
        operations: impl Fn(&str) -> i32,
    ) -> (Vec<DescribeTopicPartitionsResponseTopic>, Option<Cursor>) {
        let mut remaining = self.limit;
        let mut topics = Vec::new();
        let mut unauthorized = Vec::new();
        let mut next_cursor = None;
        for name in names.into_iter().filter(|n| *n >= self.cursor.0) {
            if !allowed(name) {
                if !self.all {
                    unauthorized.push(refused(name, ResponseError::TopicAuthorizationFailed));
                }
                continue;
            }
            if remaining == 0 {
                next_cursor = Some(Cursor::default().with_topic_name(topic_name(name)));
                break;
            }
            let Some(topic) = self.image.topics.get(name) else {
                if !self.all {
                    let error = match validate_topic_name(name) {
                        Ok(()) => ResponseError::UnknownTopicOrPartition,
                        Err(e) => e.error,
                    };
                    topics.push(refused(name, error).with_is_internal(is_internal(name)));
                }
                continue;
            };
            let first = if name == self.cursor.0 {
                self.cursor.1
            } else {
                0
            };
            let described = partitions(self.image, topic, first, remaining);
            let end = first + described.len();
            remaining -= described.len();
            topics.push(
                DescribeTopicPartitionsResponseTopic::default()
                    .with_name(Some(topic_name(name)))
                    .with_topic_id(topic.id)
                    .with_is_internal(is_internal(name))
                    .with_partitions(described)
                    .with_topic_authorized_operations(operations(name)),
            );
            if end < topic.partitions.len() {
                next_cursor = Some(
                    Cursor::default()
                        .with_topic_name(topic_name(name))
                        .with_partition_index(end as i32),
                );
                break;
            }
        }
        topics.extend(unauthorized);
        (topics, next_cursor)
    }
}

/// The named topics (or all the principal may describe) from the cursor on, at most
/// `min(response_partition_limit, max.request.partition.size.limit)` partitions, and the cursor
/// of the next page when partitions were left out.
pub fn handle(
    ctx: &Context,
    info: &RequestInfo,
    request: DescribeTopicPartitionsRequest,
) -> DescribeTopicPartitionsResponse {
    let all = request.topics.is_empty();
    let (cursor_topic, cursor_partition) = request
        .cursor
        .as_ref()
        .map_or(("", 0), |c| (c.topic_name.0.as_str(), c.partition_index));
    let image = ctx.controller.image();
    let names: BTreeSet<&str> = if all {
        image.topics.keys().map(String::as_str).collect()
    } else {
        request.topics.iter().map(|t| t.name.0.as_str()).collect()
    };
    if request.cursor.is_some() && (cursor_partition < 0 || !names.contains(cursor_topic)) {
        // Kafka answers an invalid cursor as a failed request: every named topic gets the error.
        return DescribeTopicPartitionsResponse::default().with_topics(
            request
                .topics
                .iter()
                .map(|t| refused(&t.name.0, ResponseError::InvalidRequest))
                .collect(),
        );
    }
    let access = Access::new(ctx, info, &image);
    let page = Page {
        image: &image,
        all,
        cursor: (cursor_topic, cursor_partition as usize),
        limit: request
            .response_partition_limit
            .min(ctx.config.int("max.request.partition.size.limit"))
            .max(1) as usize,
    };
    let (topics, next_cursor) = page.describe(
        names,
        |name| access.allows(DESCRIBE, resource::TOPIC, name),
        |name| access.operations(true, resource::TOPIC, name),
    );
    DescribeTopicPartitionsResponse::default()
        .with_topics(topics)
        .with_next_cursor(next_cursor)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::metadata::image::{BrokerRegistration, MetadataRecord};

    /// Brokers 1 (serving) and 2 (fenced); topic `a` with 3 partitions on both, `b` with 2 on 1.
    fn image() -> MetadataImage {
        let mut image = MetadataImage::default();
        for id in [1, 2] {
            image
                .apply(&MetadataRecord::RegisterBroker(BrokerRegistration {
                    id,
                    host: "localhost".into(),
                    port: 9092,
                    rack: None,
                    incarnation: uuid::Uuid::new_v4(),
                    fenced: true,
                    registered_at: 0,
                    unresponsive: false,
                    endpoints: Vec::new(),
                }))
                .unwrap();
        }
        image
            .apply(&MetadataRecord::UnfenceBroker { id: 1 })
            .unwrap();
        for (name, assignments) in [("a", vec![vec![1, 2]; 3]), ("b", vec![vec![1]; 2])] {
            image
                .apply(&MetadataRecord::CreateTopic {
                    name: name.into(),
                    id: uuid::Uuid::new_v4(),
                    assignments,
                    configs: BTreeMap::new(),
                })
                .unwrap();
        }
        image
    }

    /// (topic, error code, partition indexes) of each topic, and the next cursor.
    type Described = (Vec<(String, i16, Vec<i32>)>, Option<(String, i32)>);

    fn describe(
        image: &MetadataImage,
        names: &[&str],
        cursor: (&str, usize),
        limit: usize,
    ) -> Described {
        let all = names.is_empty();
        let listed: Vec<&str> = if all {
            image.topics.keys().map(String::as_str).collect()
        } else {
            names.to_vec()
        };
        let page = Page {
            image,
            all,
            cursor,
            limit,
        };
        let (topics, next) = page.describe(listed, |name| name != "b" || all, |_| 8);
        let topics = topics
            .into_iter()
            .map(|t| {
                let partitions = t.partitions.iter().map(|p| p.partition_index).collect();
                (t.name.unwrap().0.to_string(), t.error_code, partitions)
            })
            .collect();
        (
            topics,
            next.map(|c| (c.topic_name.0.to_string(), c.partition_index)),
        )
    }

    fn topic(name: &str, error: i16, partitions: &[i32]) -> (String, i16, Vec<i32>) {
        (name.to_string(), error, partitions.to_vec())
    }

    #[test]
    fn pages_end_inside_a_topic_or_at_the_next_one() {
        let image = image();
        assert_eq!(
            describe(&image, &[], ("", 0), 2),
            (vec![topic("a", 0, &[0, 1])], Some(("a".into(), 2)))
        );
        assert_eq!(
            describe(&image, &[], ("a", 2), 2),
            (
                vec![topic("a", 0, &[2]), topic("b", 0, &[0])],
                Some(("b".into(), 1))
            )
        );
        assert_eq!(
            describe(&image, &[], ("", 0), 3),
            (vec![topic("a", 0, &[0, 1, 2])], Some(("b".into(), 0)))
        );
        assert_eq!(
            describe(&image, &[], ("b", 1), 3),
            (vec![topic("b", 0, &[1])], None)
        );
    }

    #[test]
    fn named_topics_answer_unknown_invalid_and_refused_in_name_order_refused_last() {
        let image = image();
        let unknown = ResponseError::UnknownTopicOrPartition.code();
        let invalid = ResponseError::InvalidTopicException.code();
        let denied = ResponseError::TopicAuthorizationFailed.code();
        assert_eq!(
            describe(&image, &["a", "b", "bad name!", "zz"], ("", 0), 10),
            (
                vec![
                    topic("a", 0, &[0, 1, 2]),
                    topic("bad name!", invalid, &[]),
                    topic("zz", unknown, &[]),
                    topic("b", denied, &[]),
                ],
                None
            )
        );
    }

    #[test]
    fn replicas_on_fenced_brokers_are_offline_and_no_replica_is_an_eligible_leader() {
        let image = image();
        let described = partitions(&image, &image.topics["a"], 0, 10);
        assert_eq!(described.len(), 3);
        for p in described {
            assert_eq!(p.replica_nodes, vec![BrokerId(1), BrokerId(2)]);
            assert_eq!(p.offline_replicas, vec![BrokerId(2)]);
            assert_eq!(p.eligible_leader_replicas, Some(Vec::new()));
        }
    }
}
