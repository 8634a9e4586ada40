//! DescribeLogDirs: each directory of `log.dirs` with the partitions it holds, their sizes and
//! the directory's capacity, as `kafka-log-dirs` and Cruise Control read them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{DescribeLogDirsRequest, DescribeLogDirsResponse};
use kafka_protocol::protocol::StrBytes;

use super::{topic_name, Context};

/// (total, usable) bytes of the file system holding `dir`; -1 each when it cannot be read, as
/// Kafka answers for an unknown size.
fn capacity(dir: &Path) -> (i64, i64) {
    match rustix::fs::statvfs(dir) {
        Ok(fs) => {
            let block = fs.f_frsize as i64;
            (fs.f_blocks as i64 * block, fs.f_bavail as i64 * block)
        }
        Err(_) => (-1, -1),
    }
}

/// Answers with every log directory; partition data lives in the first (the others are
/// stamped but hold none until JBOD placement exists).
pub fn handle(ctx: &Context, request: DescribeLogDirsRequest) -> DescribeLogDirsResponse {
    let wanted: Option<HashMap<&str, HashSet<i32>>> = request.topics.as_ref().map(|topics| {
        let mut wanted: HashMap<&str, HashSet<i32>> = HashMap::new();
        for t in topics {
            wanted
                .entry(t.topic.0.as_str())
                .or_default()
                .extend(t.partitions.iter().copied());
        }
        wanted
    });
    let mut held: BTreeMap<String, Vec<DescribeLogDirsPartition>> = BTreeMap::new();
    for ((topic, partition), log) in ctx.logs.all() {
        let asked = wanted.as_ref().is_none_or(|wanted| {
            wanted
                .get(topic.as_str())
                .is_some_and(|partitions| partitions.contains(&partition))
        });
        if !asked {
            continue;
        }
        held.entry(topic).or_default().push(
            DescribeLogDirsPartition::default()
                .with_partition_index(partition)
                .with_partition_size(log.size_bytes() as i64)
                // How far this replica's log end is behind the high watermark: 0 on a leader,
                // and on a follower, which never takes a high watermark past its log end.
                .with_offset_lag((log.high_watermark() - log.log_end_offset()).max(0))
                .with_is_future_key(false),
        );
    }
    let mut topics: Vec<DescribeLogDirsTopic> = held
        .into_iter()
        .map(|(topic, mut partitions)| {
            partitions.sort_by_key(|p| p.partition_index);
            DescribeLogDirsTopic::default()
                .with_name(topic_name(&topic))
                .with_partitions(partitions)
        })
        .collect();
    let results = ctx
        .config
        .log_dirs
        .iter()
        .map(|dir| {
            let (total, usable) = capacity(dir);
            let path = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
            DescribeLogDirsResult::default()
                .with_log_dir(StrBytes::from_string(path.display().to_string()))
                .with_topics(std::mem::take(&mut topics))
                .with_total_bytes(total)
                .with_usable_bytes(usable)
        })
        .collect();
    DescribeLogDirsResponse::default().with_results(results)
}
