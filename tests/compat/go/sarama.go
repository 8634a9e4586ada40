package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
)

func saramaConfig(o options) (*sarama.Config, error) {
	cfg := sarama.NewConfig()
	cfg.ClientID = "strom-compat-sarama"
	if o.kafkaVersion != "" {
		v, err := sarama.ParseKafkaVersion(o.kafkaVersion)
		if err != nil {
			return nil, err
		}
		cfg.Version = v
	}
	cfg.Metadata.Retry.Backoff = 100 * time.Millisecond
	cfg.Admin.Timeout = 10 * time.Second
	return cfg, nil
}

func newSaramaAdmin(o options) (sarama.ClusterAdmin, error) {
	cfg, err := saramaConfig(o)
	if err != nil {
		return nil, err
	}
	return sarama.NewClusterAdmin([]string{o.bootstrap}, cfg)
}

func saramaCreate(admin sarama.ClusterAdmin, topic string, partitions int32, configs map[string]string) error {
	entries := map[string]*string{}
	for k, v := range configs {
		entries[k] = strp(v)
	}
	return admin.CreateTopic(topic, &sarama.TopicDetail{NumPartitions: partitions, ReplicationFactor: 1, ConfigEntries: entries}, false)
}

// saramaProduce sends recs with an idempotent SyncProducer (acks=all) and the default hash
// partitioner, filling in each record's partition and offset.
func saramaProduce(o options, recs []Rec, codec sarama.CompressionCodec) error {
	cfg, err := saramaConfig(o)
	if err != nil {
		return err
	}
	cfg.Producer.Idempotent = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Producer.Retry.Max = 5
	cfg.Producer.Compression = codec
	cfg.Net.MaxOpenRequests = 1
	producer, err := sarama.NewSyncProducer([]string{o.bootstrap}, cfg)
	if err != nil {
		return err
	}
	msgs := make([]*sarama.ProducerMessage, len(recs))
	for i, r := range recs {
		msgs[i] = &sarama.ProducerMessage{Topic: o.topic, Key: sarama.StringEncoder(*r.Key), Value: sarama.StringEncoder(*r.Value)}
		for k, v := range r.Headers {
			msgs[i].Headers = append(msgs[i].Headers, sarama.RecordHeader{Key: []byte(k), Value: []byte(v)})
		}
	}
	if err := producer.SendMessages(msgs); err != nil {
		producer.Close()
		return err
	}
	for i, m := range msgs {
		recs[i].Partition = int(m.Partition)
		recs[i].Offset = m.Offset
	}
	return producer.Close()
}

type saramaHandler struct {
	mu   sync.Mutex
	want int
	got  []Rec
	done chan struct{}
	// sessions: the generation, member id and claims of each session, as Setup saw them.
	sessions []saramaSession
}

type saramaSession struct {
	Generation int32              `json:"generation"`
	MemberID   string             `json:"member_id"`
	Claims     map[string][]int32 `json:"claims"`
}

func (h *saramaHandler) Setup(sess sarama.ConsumerGroupSession) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sessions = append(h.sessions, saramaSession{sess.GenerationID(), sess.MemberID(), sess.Claims()})
	return nil
}

func (h *saramaHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

// ConsumeClaim records and marks each message; the one that completes the count commits the
// marked offsets (auto-commit is off). Committing each message would wait behind the long-poll
// fetch that sarama pipelines on the same connection.
func (h *saramaHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			r := Rec{Partition: int(msg.Partition), Offset: msg.Offset, Key: bytesp(msg.Key), Value: bytesp(msg.Value), Headers: map[string]string{}}
			for _, hd := range msg.Headers {
				r.Headers[string(hd.Key)] = string(hd.Value)
			}
			sess.MarkMessage(msg, "")
			h.mu.Lock()
			h.got = append(h.got, r)
			if len(h.got) == h.want {
				sess.Commit()
				close(h.done)
			}
			h.mu.Unlock()
		case <-sess.Context().Done():
			return nil
		}
	}
}

// saramaConsume joins group on o.topic (from the oldest offset when the group has none) and
// returns the first want records, ordered by partition and offset, after leaving the group.
func saramaConsume(ctx context.Context, o options, group string, want int) ([]Rec, error) {
	got, _, err := saramaConsumeWith(ctx, o, group, want, "")
	return got, err
}

// saramaConsumeWith is saramaConsume as a static member when instance is not empty; it also
// returns the sessions the member had.
func saramaConsumeWith(ctx context.Context, o options, group string, want int, instance string) ([]Rec, []saramaSession, error) {
	cfg, err := saramaConfig(o)
	if err != nil {
		return nil, nil, err
	}
	cfg.Consumer.Group.InstanceId = instance
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Enable = false
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	cfg.Consumer.MaxWaitTime = 500 * time.Millisecond
	cg, err := sarama.NewConsumerGroup([]string{o.bootstrap}, group, cfg)
	if err != nil {
		return nil, nil, err
	}
	h := &saramaHandler{want: want, done: make(chan struct{})}
	cctx, cancel := context.WithCancel(ctx)
	consumeErr := make(chan error, 1)
	go func() {
		for cctx.Err() == nil {
			if err := cg.Consume(cctx, []string{o.topic}, h); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				consumeErr <- err
				return
			}
		}
		consumeErr <- nil
	}()
	var waitErr error
	select {
	case <-h.done:
	case <-ctx.Done():
		waitErr = fmt.Errorf("received %d of %d records: %w", len(h.got), want, ctx.Err())
	case err := <-consumeErr:
		waitErr = err
	}
	cancel()
	if waitErr == nil {
		waitErr = <-consumeErr
	}
	if err := cg.Close(); err != nil && waitErr == nil {
		waitErr = err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	sortRecs(h.got)
	return h.got, h.sessions, waitErr
}

func sortRecs(recs []Rec) {
	sort.Slice(recs, func(i, j int) bool {
		if recs[i].Partition != recs[j].Partition {
			return recs[i].Partition < recs[j].Partition
		}
		return recs[i].Offset < recs[j].Offset
	})
}

// saramaCommitted is the group's committed offset per partition of topic ("0": 12, ...).
func saramaCommitted(admin sarama.ClusterAdmin, group, topic string, partitions int32) (map[string]int64, error) {
	ps := make([]int32, partitions)
	for i := range ps {
		ps[i] = int32(i)
	}
	resp, err := admin.ListConsumerGroupOffsets(group, map[string][]int32{topic: ps})
	if err != nil {
		return nil, err
	}
	if resp.Err != sarama.ErrNoError {
		return nil, resp.Err
	}
	out := map[string]int64{}
	for p, b := range resp.Blocks[topic] {
		if b.Err != sarama.ErrNoError {
			return nil, fmt.Errorf("partition %d: %w", p, b.Err)
		}
		out[fmt.Sprint(p)] = b.Offset
	}
	return out, nil
}

func saramaTopicNames(admin sarama.ClusterAdmin) ([]string, error) {
	topics, err := admin.ListTopics()
	if err != nil {
		return nil, err
	}
	names := []string{}
	for name := range topics {
		names = append(names, name)
	}
	sort.Strings(names)
	return names, nil
}

func saramaAdmin(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("connect", err)
	}
	defer admin.Close()

	brokers, controller, err := admin.DescribeCluster()
	if err != nil {
		return fail("describe cluster", err)
	}
	ids := []int32{}
	for _, b := range brokers {
		ids = append(ids, b.ID())
	}
	res["brokers"] = ids
	res["controller"] = controller

	if err := saramaCreate(admin, o.topic, 3, map[string]string{"retention.ms": "3600000", "cleanup.policy": "compact"}); err != nil {
		return fail("create", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		n, err := saramaPartitions(admin, o.topic)
		res["partitions"] = n
		return n == 3, err
	}); err != nil {
		return fail("describe topics", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		topics, err := admin.ListTopics()
		detail := topics[o.topic]
		res["listed_partitions"] = detail.NumPartitions
		res["listed_replication_factor"] = detail.ReplicationFactor
		return detail.NumPartitions == 3, err
	}); err != nil {
		return fail("list topics", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		configs, err := saramaConfigs(admin, o.topic, "retention.ms", "cleanup.policy", "segment.bytes")
		res["configs"] = configs
		return configs["retention.ms"] == "3600000", err
	}); err != nil {
		return fail("describe config", err)
	}

	err = saramaCreate(admin, o.topic, 3, nil)
	res["create_again_error"] = errorName(err)

	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	if err := waitFor(ctx, "topic still listed", func() (bool, error) {
		names, err := saramaTopicNames(admin)
		if err != nil {
			return false, err
		}
		res["topics_after_delete"] = names
		return !contains(names, o.topic), nil
	}); err != nil {
		return fail("list after delete", err)
	}
	err = admin.DeleteTopic(o.topic)
	res["delete_again_error"] = errorName(err)
	return nil
}

// errorName is the Kafka error name of err ("TOPIC_ALREADY_EXISTS"), its text when it is not
// a Kafka error code, or null for no error.
func errorName(err error) any {
	if err == nil {
		return nil
	}
	var te *sarama.TopicError
	if errors.As(err, &te) {
		return codeName(int(te.Err))
	}
	var ke sarama.KError
	if errors.As(err, &ke) {
		return codeName(int(ke))
	}
	var kge kafka.Error
	if errors.As(err, &kge) {
		return codeName(int(kge))
	}
	return err.Error()
}

func codeName(code int) string {
	names := map[int]string{
		3:  "UNKNOWN_TOPIC_OR_PARTITION",
		36: "TOPIC_ALREADY_EXISTS",
		37: "INVALID_PARTITIONS",
		40: "INVALID_CONFIG",
	}
	if n, ok := names[code]; ok {
		return n
	}
	return fmt.Sprintf("error code %d", code)
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

func saramaGroup(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("connect", err)
	}
	defer admin.Close()
	if err := saramaCreate(admin, o.topic, 3, nil); err != nil {
		return fail("create", err)
	}

	sent := records("first", o.n)
	if err := saramaProduce(o, sent, sarama.CompressionNone); err != nil {
		return fail("produce", err)
	}
	res["produced"] = sent
	got, err := saramaConsume(ctx, o, o.group, len(sent))
	res["consumed"] = got
	if err != nil {
		return fail("consume", err)
	}
	if res["committed"], err = saramaCommitted(admin, o.group, o.topic, 3); err != nil {
		return fail("committed offsets", err)
	}

	late := records("late", o.more)
	if err := saramaProduce(o, late, sarama.CompressionNone); err != nil {
		return fail("produce more", err)
	}
	res["produced_more"] = late
	again, err := saramaConsume(ctx, o, o.group, len(late))
	res["consumed_again"] = again
	if err != nil {
		return fail("consume again", err)
	}
	if res["committed_again"], err = saramaCommitted(admin, o.group, o.topic, 3); err != nil {
		return fail("committed offsets again", err)
	}

	groups, err := admin.ListConsumerGroups()
	if err != nil {
		return fail("list groups", err)
	}
	res["group_listed"] = groups[o.group]
	desc, err := admin.DescribeConsumerGroups([]string{o.group})
	if err != nil {
		return fail("describe group", err)
	}
	res["group_state"] = desc[0].State
	res["group_protocol_type"] = desc[0].ProtocolType

	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}

// saramaPartitions is the number of partitions of topic in the metadata.
func saramaPartitions(admin sarama.ClusterAdmin, topic string) (int, error) {
	meta, err := admin.DescribeTopics([]string{topic})
	if err != nil {
		return 0, err
	}
	if meta[0].Err != sarama.ErrNoError {
		return 0, meta[0].Err
	}
	return len(meta[0].Partitions), nil
}

// saramaConfigs is the topic's value of each of names.
func saramaConfigs(admin sarama.ClusterAdmin, topic string, names ...string) (map[string]string, error) {
	entries, err := admin.DescribeConfig(sarama.ConfigResource{Type: sarama.TopicResource, Name: topic, ConfigNames: names})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, e := range entries {
		out[e.Name] = e.Value
	}
	return out, nil
}

// saramaOps: partitions added, configs altered both ways, records deleted, log dirs described,
// a group's offsets committed outside a generation, one of them deleted, then the group.
func saramaOps(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("connect", err)
	}
	defer admin.Close()
	if err := saramaCreate(admin, o.topic, 2, nil); err != nil {
		return fail("create", err)
	}

	if err := admin.CreatePartitions(o.topic, 4, nil, false); err != nil {
		return fail("create partitions", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		n, err := saramaPartitions(admin, o.topic)
		res["partitions"] = n
		return n == 4, err
	}); err != nil {
		return fail("describe topics", err)
	}
	res["create_partitions_fewer_error"] = errorName(admin.CreatePartitions(o.topic, 3, nil, false))

	names := []string{"retention.ms", "segment.ms"}
	if err := admin.IncrementalAlterConfig(sarama.TopicResource, o.topic, map[string]sarama.IncrementalAlterConfigsEntry{
		"retention.ms": {Operation: sarama.IncrementalAlterConfigsOperationSet, Value: strp("7200000")},
	}, false); err != nil {
		return fail("incremental alter configs", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		configs, err := saramaConfigs(admin, o.topic, names...)
		res["configs_incremental"] = configs
		return configs["retention.ms"] == "7200000", err
	}); err != nil {
		return fail("describe configs", err)
	}
	// AlterConfigs replaces the topic's whole config: retention.ms goes back to its default.
	if err := admin.AlterConfig(sarama.TopicResource, o.topic, map[string]*string{"segment.ms": strp("600000")}, false); err != nil {
		return fail("alter configs", err)
	}
	if err := eventually(ctx, func() (bool, error) {
		configs, err := saramaConfigs(admin, o.topic, names...)
		res["configs_altered"] = configs
		return configs["segment.ms"] == "600000", err
	}); err != nil {
		return fail("describe configs", err)
	}

	recs := records("ops", 10)
	cfg, err := saramaConfig(o)
	if err != nil {
		return fail("config", err)
	}
	cfg.Producer.Partitioner = sarama.NewManualPartitioner
	cfg.Producer.Return.Successes = true
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	client, err := sarama.NewClient([]string{o.bootstrap}, cfg)
	if err != nil {
		return fail("client", err)
	}
	defer client.Close()
	producer, err := sarama.NewSyncProducerFromClient(client)
	if err != nil {
		return fail("producer", err)
	}
	for _, r := range recs {
		msg := &sarama.ProducerMessage{Topic: o.topic, Partition: 0, Key: sarama.StringEncoder(*r.Key), Value: sarama.StringEncoder(*r.Value)}
		if _, _, err := producer.SendMessage(msg); err != nil {
			return fail("produce", err)
		}
	}
	if err := producer.Close(); err != nil {
		return fail("produce", err)
	}
	if err := admin.DeleteRecords(o.topic, map[int32]int64{0: 4}); err != nil {
		return fail("delete records", err)
	}
	offsets := map[string]int64{}
	for name, which := range map[string]int64{"oldest": sarama.OffsetOldest, "newest": sarama.OffsetNewest} {
		if offsets[name], err = client.GetOffset(o.topic, 0, which); err != nil {
			return fail("list offsets", err)
		}
	}
	res["offsets_after_delete_records"] = offsets

	dirs, err := admin.DescribeLogDirs([]int32{1})
	if err != nil {
		return fail("describe log dirs", err)
	}
	sizes := map[string]int64{}
	for _, d := range dirs[1] {
		if d.ErrorCode != sarama.ErrNoError {
			return fail("describe log dirs", d.ErrorCode)
		}
		for _, t := range d.Topics {
			if t.Topic == o.topic {
				for _, p := range t.Partitions {
					sizes[fmt.Sprint(p.PartitionID)] = p.Size
				}
			}
		}
	}
	res["log_dir_sizes"] = sizes

	om, err := sarama.NewOffsetManagerFromClient(o.group, client)
	if err != nil {
		return fail("offset manager", err)
	}
	for p, off := range map[int32]int64{0: 7, 1: 0} {
		pom, err := om.ManagePartition(o.topic, p)
		if err != nil {
			return fail("offset manager", err)
		}
		pom.MarkOffset(off, "meta")
		defer pom.Close()
	}
	om.Commit()
	if res["committed"], err = saramaCommitted(admin, o.group, o.topic, 2); err != nil {
		return fail("committed offsets", err)
	}
	if err := admin.DeleteConsumerGroupOffset(o.group, o.topic, 0); err != nil {
		return fail("delete group offset", err)
	}
	if res["committed_after_offset_delete"], err = saramaCommitted(admin, o.group, o.topic, 2); err != nil {
		return fail("committed offsets", err)
	}
	groups, err := admin.ListConsumerGroups()
	if err != nil {
		return fail("list groups", err)
	}
	_, res["group_listed"] = groups[o.group]
	if err := admin.DeleteConsumerGroup(o.group); err != nil {
		return fail("delete group", err)
	}
	if groups, err = admin.ListConsumerGroups(); err != nil {
		return fail("list groups", err)
	}
	_, res["group_listed_after_delete"] = groups[o.group]

	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}

// saramaRead reads partition 0 of topic from the start at isolation level, up to and including
// the record at offset last, and returns the values read.
func saramaRead(ctx context.Context, o options, topic string, level sarama.IsolationLevel, last int64) ([]string, error) {
	cfg, err := saramaConfig(o)
	if err != nil {
		return nil, err
	}
	cfg.Consumer.IsolationLevel = level
	cfg.Consumer.MaxWaitTime = 200 * time.Millisecond
	consumer, err := sarama.NewConsumer([]string{o.bootstrap}, cfg)
	if err != nil {
		return nil, err
	}
	defer consumer.Close()
	pc, err := consumer.ConsumePartition(topic, 0, sarama.OffsetOldest)
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	values := []string{}
	for {
		select {
		case msg := <-pc.Messages():
			values = append(values, string(msg.Value))
			if msg.Offset >= last {
				return values, nil
			}
		case err := <-pc.Errors():
			return values, err
		case <-ctx.Done():
			return values, fmt.Errorf("read %v before offset %d: %w", values, last, ctx.Err())
		}
	}
}

// saramaTxn: a transactional producer commits c0 c1, aborts a0 a1, then commits c2 together
// with the offset 8 for a group (AddOffsetsToTxn); readers at both isolation levels read the log.
func saramaTxn(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("connect", err)
	}
	defer admin.Close()
	if err := saramaCreate(admin, o.topic, 1, nil); err != nil {
		return fail("create", err)
	}
	cfg, err := saramaConfig(o)
	if err != nil {
		return fail("config", err)
	}
	cfg.Producer.Idempotent = true
	cfg.Producer.Transaction.ID = o.topic + "-txn"
	cfg.Producer.RequiredAcks = sarama.WaitForAll
	cfg.Producer.Return.Successes = true
	cfg.Net.MaxOpenRequests = 1
	producer, err := sarama.NewSyncProducer([]string{o.bootstrap}, cfg)
	if err != nil {
		return fail("transactional producer", err)
	}
	defer producer.Close()
	offsets := map[string]int64{}
	send := func(values ...string) error {
		for _, v := range values {
			_, off, err := producer.SendMessage(&sarama.ProducerMessage{Topic: o.topic, Value: sarama.StringEncoder(v)})
			if err != nil {
				return err
			}
			offsets[v] = off
		}
		return nil
	}
	steps := []struct {
		name string
		fn   func() error
	}{
		{"begin", producer.BeginTxn},
		{"send c0 c1", func() error { return send("c0", "c1") }},
		{"commit", producer.CommitTxn},
		{"begin", producer.BeginTxn},
		{"send a0 a1", func() error { return send("a0", "a1") }},
		{"abort", producer.AbortTxn},
		{"begin", producer.BeginTxn},
		{"send c2", func() error { return send("c2") }},
		{"add offsets", func() error {
			return producer.AddOffsetsToTxn(map[string][]*sarama.PartitionOffsetMetadata{
				o.topic: {{Partition: 0, Offset: 8, LeaderEpoch: -1}},
			}, o.group)
		}},
		{"commit", producer.CommitTxn},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return fail(s.name, err)
		}
	}
	res["offsets"] = offsets
	if res["read_committed"], err = saramaRead(ctx, o, o.topic, sarama.ReadCommitted, offsets["c2"]); err != nil {
		return fail("read committed", err)
	}
	if res["read_uncommitted"], err = saramaRead(ctx, o, o.topic, sarama.ReadUncommitted, offsets["c2"]); err != nil {
		return fail("read uncommitted", err)
	}
	// The offsets land with the commit markers, which Kafka may write after answering EndTxn.
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_ = waitFor(wait, "the transaction's offset", func() (bool, error) {
		committed, err := saramaCommitted(admin, o.group, o.topic, 1)
		res["committed"] = committed
		return committed["0"] == 8, err
	})
	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}

// saramaStatic: a static member (group.instance.id) consumes, closes without leaving, then
// restarts with the same instance id and consumes what was produced meanwhile.
func saramaStatic(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("connect", err)
	}
	defer admin.Close()
	if err := saramaCreate(admin, o.topic, 2, nil); err != nil {
		return fail("create", err)
	}
	instance := o.topic + "-instance"
	for i, prefix := range []string{"first", "second"} {
		sent := records(prefix, o.more)
		if err := saramaProduce(o, sent, sarama.CompressionNone); err != nil {
			return fail("produce "+prefix, err)
		}
		got, sessions, err := saramaConsumeWith(ctx, o, o.group, len(sent), instance)
		res[prefix] = map[string]any{"produced": sent, "consumed": got, "sessions": sessions}
		if err != nil {
			return fail("consume "+prefix, err)
		}
		desc, err := admin.DescribeConsumerGroups([]string{o.group})
		if err != nil {
			return fail("describe group", err)
		}
		members := []map[string]any{}
		for _, m := range desc[0].Members {
			members = append(members, map[string]any{"member_id": m.MemberId, "instance_id": m.GroupInstanceId})
		}
		res[fmt.Sprintf("members_after_run_%d", i+1)] = members
	}
	if res["committed"], err = saramaCommitted(admin, o.group, o.topic, 2); err != nil {
		return fail("committed offsets", err)
	}
	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}

// saramaCodecs: an idempotent AsyncProducer sends o.n records in small batches with each
// compression codec in turn; a partition consumer reads every partition back.
func saramaCodecs(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("connect", err)
	}
	defer admin.Close()
	if err := saramaCreate(admin, o.topic, 3, nil); err != nil {
		return fail("create", err)
	}
	codecs := []sarama.CompressionCodec{sarama.CompressionNone, sarama.CompressionGZIP, sarama.CompressionSnappy,
		sarama.CompressionLZ4, sarama.CompressionZSTD}
	acked := map[string]int{}
	for _, codec := range codecs {
		cfg, err := saramaConfig(o)
		if err != nil {
			return fail("config", err)
		}
		cfg.Producer.Idempotent = true
		cfg.Producer.RequiredAcks = sarama.WaitForAll
		cfg.Producer.Return.Successes = true
		cfg.Producer.Compression = codec
		cfg.Producer.Flush.Messages = 50
		cfg.Producer.Flush.Frequency = 5 * time.Millisecond
		cfg.Net.MaxOpenRequests = 1
		producer, err := sarama.NewAsyncProducer([]string{o.bootstrap}, cfg)
		if err != nil {
			return fail("producer", err)
		}
		go func() {
			for i := 0; i < o.n; i++ {
				producer.Input() <- &sarama.ProducerMessage{Topic: o.topic, Key: sarama.StringEncoder(fmt.Sprint(i)),
					Value: sarama.StringEncoder(fmt.Sprintf("%s-%d", codec, i))}
			}
		}()
		for done := 0; done < o.n; done++ {
			select {
			case <-producer.Successes():
				acked[codec.String()]++
			case perr := <-producer.Errors():
				producer.AsyncClose()
				return fail("produce "+codec.String(), perr.Err)
			case <-ctx.Done():
				producer.AsyncClose()
				return fail("produce "+codec.String(), ctx.Err())
			}
		}
		if err := producer.Close(); err != nil {
			return fail("produce "+codec.String(), err)
		}
	}
	res["acked"] = acked

	cfg, err := saramaConfig(o)
	if err != nil {
		return fail("config", err)
	}
	client, err := sarama.NewClient([]string{o.bootstrap}, cfg)
	if err != nil {
		return fail("client", err)
	}
	defer client.Close()
	consumer, err := sarama.NewConsumerFromClient(client)
	if err != nil {
		return fail("consumer", err)
	}
	defer consumer.Close()
	values := map[string]int{}
	gaps := 0
	ends := map[string]int64{}
	for p := int32(0); p < 3; p++ {
		end, err := client.GetOffset(o.topic, p, sarama.OffsetNewest)
		if err != nil {
			return fail("list offsets", err)
		}
		ends[fmt.Sprint(p)] = end
		if end == 0 {
			continue
		}
		pc, err := consumer.ConsumePartition(o.topic, p, sarama.OffsetOldest)
		if err != nil {
			return fail("consume", err)
		}
		next := int64(0)
		for next < end {
			select {
			case m := <-pc.Messages():
				if m.Offset != next {
					gaps++
				}
				next = m.Offset + 1
				values[string(m.Value)]++
			case cerr := <-pc.Errors():
				pc.Close()
				return fail("consume", cerr)
			case <-ctx.Done():
				pc.Close()
				return fail("consume", fmt.Errorf("partition %d at %d of %d: %w", p, next, end, ctx.Err()))
			}
		}
		pc.Close()
	}
	res["end_offsets"] = ends
	res["offset_gaps"] = gaps
	perCodec := map[string]int{}
	duplicates := 0
	for v, count := range values {
		perCodec[strings.SplitN(v, "-", 2)[0]]++
		duplicates += count - 1
	}
	res["distinct_read"] = perCodec
	res["duplicates_read"] = duplicates
	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}
