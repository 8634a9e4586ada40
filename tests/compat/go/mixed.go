package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
)

// seen collects what the members of a group consumed, by member.
type seen struct {
	mu      sync.Mutex
	records map[string]map[[2]int64]bool
}

func (s *seen) add(member string, partition int, offset int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.records[member] == nil {
		s.records[member] = map[[2]int64]bool{}
	}
	s.records[member][[2]int64{int64(partition), offset}] = true
}

// covers tells whether every record of recs was consumed by some member.
func (s *seen) covers(recs []Rec) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		found := false
		for _, got := range s.records {
			found = found || got[[2]int64{int64(r.Partition), r.Offset}]
		}
		if !found {
			return false
		}
	}
	return true
}

type markingHandler struct {
	seen   *seen
	member string
}

func (h markingHandler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h markingHandler) Cleanup(sarama.ConsumerGroupSession) error { return nil }
func (h markingHandler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for {
		select {
		case msg, ok := <-claim.Messages():
			if !ok {
				return nil
			}
			h.seen.add(h.member, int(msg.Partition), msg.Offset)
			sess.MarkMessage(msg, "")
		case <-sess.Context().Done():
			return nil
		}
	}
}

// groupMembers is each member's assigned partitions of topic by client id, if the group is
// Stable.
func groupMembers(admin sarama.ClusterAdmin, group, topic string) (string, map[string][]int32, error) {
	desc, err := admin.DescribeConsumerGroups([]string{group})
	if err != nil {
		return "", nil, err
	}
	members := map[string][]int32{}
	for _, m := range desc[0].Members {
		a, err := m.GetMemberAssignment()
		if err != nil {
			return "", nil, err
		}
		ps := []int32{}
		if a != nil {
			ps = append(ps, a.Topics[topic]...)
		}
		sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
		members[m.ClientId] = ps
	}
	return desc[0].State, members, nil
}

// mixedGroup: a sarama member (auto-commit) and a kafka-go member (commits each record) share
// one group over a 4-partition topic until the group is Stable with the partitions split
// between them, every record consumed and the committed offsets at the end of each partition.
func mixedGroup(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("connect", err)
	}
	defer admin.Close()
	if err := saramaCreate(admin, o.topic, 4, nil); err != nil {
		return fail("create", err)
	}
	sent := records("mixed", o.n)
	if err := saramaProduce(o, sent, sarama.CompressionNone); err != nil {
		return fail("produce", err)
	}
	ends := map[string]int64{"0": 0, "1": 0, "2": 0, "3": 0}
	for _, r := range sent {
		if r.Offset+1 > ends[fmt.Sprint(r.Partition)] {
			ends[fmt.Sprint(r.Partition)] = r.Offset + 1
		}
	}
	res["end_offsets"] = ends

	cfg, err := saramaConfig(o)
	if err != nil {
		return fail("config", err)
	}
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 200 * time.Millisecond
	cfg.Consumer.Group.Rebalance.GroupStrategies = []sarama.BalanceStrategy{sarama.NewBalanceStrategyRange()}
	cfg.Consumer.Group.Heartbeat.Interval = time.Second
	cfg.Consumer.Group.Rebalance.Timeout = 10 * time.Second
	cfg.Consumer.MaxWaitTime = 200 * time.Millisecond
	cg, err := sarama.NewConsumerGroup([]string{o.bootstrap}, o.group, cfg)
	if err != nil {
		return fail("sarama member", err)
	}
	s := &seen{records: map[string]map[[2]int64]bool{}}
	mctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	wg.Add(1)
	saramaStarted := time.Now()
	go func() {
		defer wg.Done()
		for mctx.Err() == nil {
			if err := cg.Consume(mctx, []string{o.topic}, markingHandler{s, "sarama"}); err != nil && !errors.Is(err, sarama.ErrClosedConsumerGroup) {
				errs <- fmt.Errorf("sarama member: %w", err)
				return
			}
		}
	}()

	// Kafka makes the first member to join the leader, and the sarama member joins first: it
	// reads the kafka-go member's subscription, which kafka-go could not do the other way round
	// (it reads no subscription fields past version 0). The kafka-go member joins during the
	// group's initial rebalance delay, so both are in its first generation.
	if err := waitFor(mctx, "the sarama member did not join", func() (bool, error) {
		select {
		case err := <-errs:
			return false, err
		default:
		}
		_, members, err := groupMembers(admin, o.group, o.topic)
		return len(members) > 0, err
	}); err != nil {
		stop()
		cg.Close()
		wg.Wait()
		return fail("join", err)
	}
	res["kafkago_joined_after_ms"] = time.Since(saramaStarted).Milliseconds()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers:           []string{o.bootstrap},
		Dialer:            &kafka.Dialer{ClientID: "strom-compat-kafka-go", Timeout: 10 * time.Second},
		GroupID:           o.group,
		Topic:             o.topic,
		StartOffset:       kafka.FirstOffset,
		MaxWait:           200 * time.Millisecond,
		HeartbeatInterval: time.Second,
		SessionTimeout:    10 * time.Second,
		RebalanceTimeout:  10 * time.Second,
		JoinGroupBackoff:  500 * time.Millisecond,
		ReadBackoffMin:    100 * time.Millisecond,
		ReadBackoffMax:    500 * time.Millisecond,
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			m, err := r.FetchMessage(mctx)
			if err != nil {
				if mctx.Err() == nil {
					errs <- fmt.Errorf("kafka-go member: %w", err)
				}
				return
			}
			s.add("kafka-go", m.Partition, m.Offset)
			if err := r.CommitMessages(mctx, m); err != nil && mctx.Err() == nil {
				fmt.Fprintln(os.Stderr, "kafka-go member commit:", err)
			}
		}
	}()

	converged := func() (bool, error) {
		select {
		case err := <-errs:
			return false, err
		default:
		}
		state, members, err := groupMembers(admin, o.group, o.topic)
		if err != nil {
			return false, err
		}
		res["group_state"], res["assignments"] = state, members
		if state != "Stable" || len(members) != 2 || !s.covers(sent) {
			return false, nil
		}
		committed, err := saramaCommitted(admin, o.group, o.topic, 4)
		if err != nil {
			return false, err
		}
		res["committed"] = committed
		for p, end := range ends {
			if committed[p] != end {
				return false, nil
			}
		}
		return true, nil
	}
	err = waitFor(mctx, "the group did not converge", converged)
	stop()
	closeErr := cg.Close()
	if cerr := r.Close(); closeErr == nil {
		closeErr = cerr
	}
	wg.Wait()
	counts := map[string]int{}
	for member, got := range s.records {
		counts[member] = len(got)
	}
	res["consumed_by_member"] = counts
	if err != nil {
		return fail("consume", err)
	}
	if closeErr != nil {
		return fail("close", closeErr)
	}
	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}
