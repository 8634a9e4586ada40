package main

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"
)

func kafkagoClient(o options) *kafka.Client {
	return &kafka.Client{Addr: kafka.TCP(o.bootstrap), Timeout: 10 * time.Second}
}

func kafkagoCreate(ctx context.Context, c *kafka.Client, topic string, partitions int, configs map[string]string) error {
	t := kafka.TopicConfig{Topic: topic, NumPartitions: partitions, ReplicationFactor: 1}
	for k, v := range configs {
		t.ConfigEntries = append(t.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	resp, err := c.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{t}})
	if err != nil {
		return err
	}
	return resp.Errors[topic]
}

func kafkagoDelete(ctx context.Context, c *kafka.Client, topic string) error {
	resp, err := c.DeleteTopics(ctx, &kafka.DeleteTopicsRequest{Topics: []string{topic}})
	if err != nil {
		return err
	}
	return resp.Errors[topic]
}

// kafkagoProduce writes recs with a Writer (acks=all, the sarama-compatible Hash balancer),
// filling in each record's partition and offset from the Completion callback.
func kafkagoProduce(ctx context.Context, o options, recs []Rec, codec kafka.Compression) error {
	index := map[string]int{}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		index[*r.Key] = i
		msgs[i] = kafka.Message{Key: []byte(*r.Key), Value: []byte(*r.Value)}
		for k, v := range r.Headers {
			msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: k, Value: []byte(v)})
		}
	}
	var mu sync.Mutex
	w := &kafka.Writer{
		Addr:         kafka.TCP(o.bootstrap),
		Topic:        o.topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
		Compression:  codec,
		Completion: func(done []kafka.Message, err error) {
			if err != nil {
				return
			}
			mu.Lock()
			defer mu.Unlock()
			for _, m := range done {
				i := index[string(m.Key)]
				recs[i].Partition = m.Partition
				recs[i].Offset = m.Offset
			}
		},
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		w.Close()
		return err
	}
	return w.Close()
}

// kafkagoConsume reads want records of o.topic with a Reader in group (from the first offset
// when the group has none), committing each synchronously, and closes the Reader, which leaves
// the group. Records are ordered by partition and offset.
func kafkagoConsume(ctx context.Context, o options, group string, want int) ([]Rec, error) {
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{o.bootstrap},
		GroupID:           group,
		Topic:             o.topic,
		StartOffset:       kafka.FirstOffset,
		MaxWait:           500 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		ReadBackoffMin:    100 * time.Millisecond,
		ReadBackoffMax:    500 * time.Millisecond,
	})
	got := []Rec{}
	var err error
	for len(got) < want {
		var m kafka.Message
		if m, err = r.FetchMessage(ctx); err != nil {
			err = fmt.Errorf("received %d of %d records: %w", len(got), want, err)
			break
		}
		rec := Rec{Partition: m.Partition, Offset: m.Offset, Key: bytesp(m.Key), Value: bytesp(m.Value), Headers: map[string]string{}}
		for _, h := range m.Headers {
			rec.Headers[h.Key] = string(h.Value)
		}
		got = append(got, rec)
		if err = r.CommitMessages(ctx, m); err != nil {
			err = fmt.Errorf("commit: %w", err)
			break
		}
	}
	if cerr := r.Close(); cerr != nil && err == nil {
		err = cerr
	}
	sortRecs(got)
	return got, err
}

func kafkagoCommitted(ctx context.Context, c *kafka.Client, group, topic string, partitions int) (map[string]int64, error) {
	ps := make([]int, partitions)
	for i := range ps {
		ps[i] = i
	}
	resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: ps}})
	if err != nil {
		return nil, err
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	out := map[string]int64{}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			return nil, fmt.Errorf("partition %d: %w", p.Partition, p.Error)
		}
		out[fmt.Sprint(p.Partition)] = p.CommittedOffset
	}
	return out, nil
}

// kafkagoTopicNames lists the topics over a Conn: the Client's Metadata answers from the
// Transport's cache, which may be older than a deletion.
func kafkagoTopicNames(ctx context.Context, o options) ([]string, error) {
	conn, err := kafka.DialContext(ctx, "tcp", o.bootstrap)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	parts, err := conn.ReadPartitions()
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	names := []string{}
	for _, p := range parts {
		if !seen[p.Topic] {
			seen[p.Topic] = true
			names = append(names, p.Topic)
		}
	}
	sort.Strings(names)
	return names, nil
}

func kafkagoAdmin(ctx context.Context, o options, res result) error {
	c := kafkagoClient(o)
	meta, err := c.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return fail("metadata", err)
	}
	ids := []int{}
	for _, b := range meta.Brokers {
		ids = append(ids, b.ID)
	}
	res["brokers"] = ids
	res["controller"] = meta.Controller.ID
	res["cluster_id"] = meta.ClusterID

	if err := kafkagoCreate(ctx, c, o.topic, 3, map[string]string{"retention.ms": "3600000", "cleanup.policy": "compact"}); err != nil {
		return fail("create", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		parts, err := kafkagoPartitions(ctx, o)
		leaders := []int{}
		for _, p := range parts {
			leaders = append(leaders, p.Leader.ID)
		}
		res["partitions"], res["leaders"] = len(parts), leaders
		return len(parts) == 3, err
	}); err != nil {
		return fail("metadata of the topic", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		configs, err := kafkagoConfigs(ctx, c, o.topic, "retention.ms", "cleanup.policy", "segment.bytes")
		res["configs"] = configs
		return configs["retention.ms"] == "3600000", err
	}); err != nil {
		return fail("describe configs", err)
	}

	res["create_again_error"] = errorName(kafkagoCreate(ctx, c, o.topic, 3, nil))

	if err := kafkagoDelete(ctx, c, o.topic); err != nil {
		return fail("delete", err)
	}
	if err := waitFor(ctx, "topic still listed", func() (bool, error) {
		names, err := kafkagoTopicNames(ctx, o)
		if err != nil {
			return false, err
		}
		res["topics_after_delete"] = names
		return !contains(names, o.topic), nil
	}); err != nil {
		return fail("list after delete", err)
	}
	res["delete_again_error"] = errorName(kafkagoDelete(ctx, c, o.topic))
	return nil
}

func kafkagoGroup(ctx context.Context, o options, res result) error {
	c := kafkagoClient(o)
	if err := kafkagoCreate(ctx, c, o.topic, 3, nil); err != nil {
		return fail("create", err)
	}

	sent := records("first", o.n)
	if err := kafkagoProduce(ctx, o, sent, kafka.Compression(0)); err != nil {
		return fail("produce", err)
	}
	res["produced"] = sent
	got, err := kafkagoConsume(ctx, o, o.group, len(sent))
	res["consumed"] = got
	if err != nil {
		return fail("consume", err)
	}
	if res["committed"], err = kafkagoCommitted(ctx, c, o.group, o.topic, 3); err != nil {
		return fail("committed offsets", err)
	}

	late := records("late", o.more)
	if err := kafkagoProduce(ctx, o, late, kafka.Compression(0)); err != nil {
		return fail("produce more", err)
	}
	res["produced_more"] = late
	again, err := kafkagoConsume(ctx, o, o.group, len(late))
	res["consumed_again"] = again
	if err != nil {
		return fail("consume again", err)
	}
	if res["committed_again"], err = kafkagoCommitted(ctx, c, o.group, o.topic, 3); err != nil {
		return fail("committed offsets again", err)
	}

	groups, err := c.ListGroups(ctx, &kafka.ListGroupsRequest{})
	if err != nil {
		return fail("list groups", err)
	}
	res["group_listed"] = ""
	for _, g := range groups.Groups {
		if g.GroupID == o.group {
			res["group_listed"] = g.ProtocolType
		}
	}
	desc, err := c.DescribeGroups(ctx, &kafka.DescribeGroupsRequest{GroupIDs: []string{o.group}})
	if err != nil {
		return fail("describe group", err)
	}
	if desc.Groups[0].Error != nil {
		return fail("describe group", desc.Groups[0].Error)
	}
	res["group_state"] = desc.Groups[0].GroupState

	if err := kafkagoDelete(ctx, c, o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}

// kafkagoPartitions is topic's partitions as a fresh Conn reads them (the Client's Metadata
// answers from the Transport's cache).
func kafkagoPartitions(ctx context.Context, o options) ([]kafka.Partition, error) {
	conn, err := kafka.DialContext(ctx, "tcp", o.bootstrap)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ReadPartitions(o.topic)
}

func kafkagoConfigs(ctx context.Context, c *kafka.Client, topic string, names ...string) (map[string]string, error) {
	resp, err := c.DescribeConfigs(ctx, &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: names},
	}})
	if err != nil {
		return nil, err
	}
	if resp.Resources[0].Error != nil {
		return nil, resp.Resources[0].Error
	}
	out := map[string]string{}
	for _, e := range resp.Resources[0].ConfigEntries {
		out[e.ConfigName] = e.ConfigValue
	}
	return out, nil
}

// kafkagoOps: partitions added, configs altered both ways, first and last offsets listed, a
// group's offsets committed outside a generation, one of them deleted, then the group.
func kafkagoOps(ctx context.Context, o options, res result) error {
	c := kafkagoClient(o)
	if err := kafkagoCreate(ctx, c, o.topic, 2, nil); err != nil {
		return fail("create", err)
	}

	grow := func(count int32) error {
		resp, err := c.CreatePartitions(ctx, &kafka.CreatePartitionsRequest{Topics: []kafka.TopicPartitionsConfig{{Name: o.topic, Count: count}}})
		if err != nil {
			return err
		}
		return resp.Errors[o.topic]
	}
	if err := grow(4); err != nil {
		return fail("create partitions", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		parts, err := kafkagoPartitions(ctx, o)
		res["partitions"] = len(parts)
		return len(parts) == 4, err
	}); err != nil {
		return fail("read partitions", err)
	}
	res["create_partitions_fewer_error"] = errorName(grow(3))

	names := []string{"retention.ms", "segment.ms"}
	inc, err := c.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: o.topic,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: "retention.ms", Value: "7200000", ConfigOperation: kafka.ConfigOperationSet}},
	}}})
	if err == nil {
		err = inc.Resources[0].Error
	}
	if err != nil {
		return fail("incremental alter configs", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		configs, err := kafkagoConfigs(ctx, c, o.topic, names...)
		res["configs_incremental"] = configs
		return configs["retention.ms"] == "7200000", err
	}); err != nil {
		return fail("describe configs", err)
	}
	// AlterConfigs replaces the topic's whole config: retention.ms goes back to its default.
	alt, err := c.AlterConfigs(ctx, &kafka.AlterConfigsRequest{Resources: []kafka.AlterConfigRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: o.topic,
		Configs: []kafka.AlterConfigRequestConfig{{Name: "segment.ms", Value: "600000"}},
	}}})
	if err == nil {
		for _, e := range alt.Errors {
			if e != nil {
				err = e
			}
		}
	}
	if err != nil {
		return fail("alter configs", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		configs, err := kafkagoConfigs(ctx, c, o.topic, names...)
		res["configs_altered"] = configs
		return configs["segment.ms"] == "600000", err
	}); err != nil {
		return fail("describe configs", err)
	}

	w := &kafka.Writer{
		Addr:         kafka.TCP(o.bootstrap),
		Topic:        o.topic,
		Balancer:     kafka.BalancerFunc(func(kafka.Message, ...int) int { return 0 }),
		RequiredAcks: kafka.RequireAll,
		BatchTimeout: 10 * time.Millisecond,
	}
	for _, r := range records("ops", 10) {
		if err := w.WriteMessages(ctx, kafka.Message{Key: []byte(*r.Key), Value: []byte(*r.Value)}); err != nil {
			w.Close()
			return fail("produce", err)
		}
	}
	if err := w.Close(); err != nil {
		return fail("produce", err)
	}
	lo, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{
		o.topic: {kafka.FirstOffsetOf(0), kafka.LastOffsetOf(0), kafka.FirstOffsetOf(1), kafka.LastOffsetOf(1)},
	}})
	if err != nil {
		return fail("list offsets", err)
	}
	offsets := map[string][2]int64{}
	for _, p := range lo.Topics[o.topic] {
		if p.Error != nil {
			return fail("list offsets", p.Error)
		}
		offsets[fmt.Sprint(p.Partition)] = [2]int64{p.FirstOffset, p.LastOffset}
	}
	res["offsets"] = offsets

	commit, err := c.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: o.group, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{
		o.topic: {{Partition: 0, Offset: 7, Metadata: "meta"}, {Partition: 1, Offset: 0}},
	}})
	if err == nil {
		for _, p := range commit.Topics[o.topic] {
			if p.Error != nil {
				err = p.Error
			}
		}
	}
	if err != nil {
		return fail("commit offsets", err)
	}
	if res["committed"], err = kafkagoCommitted(ctx, c, o.group, o.topic, 2); err != nil {
		return fail("committed offsets", err)
	}
	del, err := c.OffsetDelete(ctx, &kafka.OffsetDeleteRequest{GroupID: o.group, Topics: map[string][]int{o.topic: {0}}})
	if err == nil {
		err = del.Error
		for _, p := range del.Topics[o.topic] {
			if p.Error != nil {
				err = p.Error
			}
		}
	}
	if err != nil {
		return fail("delete group offset", err)
	}
	if res["committed_after_offset_delete"], err = kafkagoCommitted(ctx, c, o.group, o.topic, 2); err != nil {
		return fail("committed offsets", err)
	}
	listed := func() (bool, error) {
		groups, err := c.ListGroups(ctx, &kafka.ListGroupsRequest{})
		if err != nil {
			return false, err
		}
		for _, g := range groups.Groups {
			if g.GroupID == o.group {
				return true, nil
			}
		}
		return false, groups.Error
	}
	if res["group_listed"], err = listed(); err != nil {
		return fail("list groups", err)
	}
	dg, err := c.DeleteGroups(ctx, &kafka.DeleteGroupsRequest{GroupIDs: []string{o.group}})
	if err == nil {
		err = dg.Errors[o.group]
	}
	if err != nil {
		return fail("delete group", err)
	}
	if res["group_listed_after_delete"], err = listed(); err != nil {
		return fail("list groups", err)
	}

	if err := kafkagoDelete(ctx, c, o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}

// kafkagoConn: the Conn API on a partition leader. Writes uncompressed, gzip and snappy
// messages with headers, lists offsets, then reads everything back in batches.
func kafkagoConn(ctx context.Context, o options, res result) error {
	c := kafkagoClient(o)
	if err := kafkagoCreate(ctx, c, o.topic, 1, nil); err != nil {
		return fail("create", err)
	}
	conn, err := kafka.DialLeader(ctx, "tcp", o.bootstrap, o.topic, 0)
	if err != nil {
		return fail("dial leader", err)
	}
	defer conn.Close()
	if deadline, ok := ctx.Deadline(); ok {
		conn.SetDeadline(deadline)
	}
	sent := []Rec{}
	batch := func(prefix string) []kafka.Message {
		recs := records(prefix, 3)
		msgs := make([]kafka.Message, len(recs))
		for i, r := range recs {
			msgs[i] = kafka.Message{Key: []byte(*r.Key), Value: []byte(*r.Value)}
			for k, v := range r.Headers {
				msgs[i].Headers = append(msgs[i].Headers, kafka.Header{Key: k, Value: []byte(v)})
			}
		}
		sent = append(sent, recs...)
		return msgs
	}
	if _, err := conn.WriteMessages(batch("plain")...); err != nil {
		return fail("write", err)
	}
	bases := map[string]int64{}
	for _, codec := range []kafka.Compression{kafka.Gzip, kafka.Snappy} {
		name := codec.String()
		_, _, base, _, err := conn.WriteCompressedMessagesAt(codec.Codec(), batch(name)...)
		if err != nil {
			return fail("write "+name, err)
		}
		bases[name] = base
	}
	res["base_offsets"] = bases
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return fail("read offsets", err)
	}
	res["first"], res["last"] = first, last
	if res["offset_by_time"], err = conn.ReadOffset(time.Now().Add(-time.Hour)); err != nil {
		return fail("read offset by time", err)
	}

	if _, err := conn.Seek(0, kafka.SeekAbsolute); err != nil {
		return fail("seek", err)
	}
	got := []Rec{}
	for len(got) < len(sent) {
		b := conn.ReadBatch(1, 1<<20)
		for {
			m, err := b.ReadMessage()
			if err != nil {
				break
			}
			r := Rec{Partition: m.Partition, Offset: m.Offset, Key: bytesp(m.Key), Value: bytesp(m.Value), Headers: map[string]string{}}
			for _, h := range m.Headers {
				r.Headers[h.Key] = string(h.Value)
			}
			got = append(got, r)
		}
		if err := b.Close(); err != nil {
			res["read"] = got
			return fail("read batch", err)
		}
	}
	res["read"] = got
	conn.Close()

	if err := kafkagoDelete(ctx, c, o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}
