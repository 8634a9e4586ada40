// Command goclients drives Strom with the Go clients github.com/IBM/sarama and
// github.com/segmentio/kafka-go for the compatibility suite (tests/compat/test_go_clients.py).
//
//	goclients <scenario> -bootstrap host:port -topic T [-group G] [-n N] [-kafka-version V]
//
// Scenarios:
//
//	sarama-admin, kafkago-admin   create a topic with partitions and a config, describe it,
//	                              create it again, delete it
//	sarama-group, kafkago-group   produce keyed records, consume them in a group and commit,
//	                              read the committed offsets, produce more, a second run of the
//	                              group reads only those, delete the topic
//	sarama-ops, kafkago-ops       add partitions, alter configs incrementally and wholesale, list
//	                              (and with sarama delete) records, commit a group's offsets
//	                              outside a generation, delete one of them, delete the group
//	sarama-txn                    a transactional producer commits, aborts, commits with a group's
//	                              offset; read_committed and read_uncommitted readers
//	sarama-static                 a static member consumes, closes without leaving the group and
//	                              comes back with its instance id to what was produced meanwhile
//	sarama-codecs                 an idempotent AsyncProducer sends -n records with each codec
//	                              (none, gzip, snappy, lz4, zstd); everything is read back
//	kafkago-conn                  kafka-go's Conn on the partition leader: uncompressed, gzip and
//	                              snappy writes, offsets listed, everything read back in batches
//	cross                         sarama produces records with headers, a kafka-go group reads
//	                              them; kafka-go produces, a sarama group reads them
//	mixed-group                   a sarama and a kafka-go member share one group until it is
//	                              stable, split, done and committed
//
// Each scenario prints one JSON object on stdout. A failing step adds "error" and "step" to it
// and the exit status is 1.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/IBM/sarama"
	"github.com/segmentio/kafka-go"
)

type options struct {
	bootstrap    string
	topic        string
	group        string
	n            int
	more         int
	kafkaVersion string
	timeout      time.Duration
}

// Rec is a record as produced or consumed.
type Rec struct {
	Partition int               `json:"partition"`
	Offset    int64             `json:"offset"`
	Key       *string           `json:"key"`
	Value     *string           `json:"value"`
	Headers   map[string]string `json:"headers"`
}

// result accumulates a scenario's output; fail records the step that went wrong.
type result map[string]any

type stepError struct {
	step string
	err  error
}

func (e stepError) Error() string { return e.step + ": " + e.err.Error() }

func fail(step string, err error) error { return stepError{step, err} }

func strp(s string) *string { return &s }

func bytesp(b []byte) *string {
	if b == nil {
		return nil
	}
	s := string(b)
	return &s
}

// records makes n keyed records named by prefix, each with two headers.
func records(prefix string, n int) []Rec {
	out := make([]Rec, n)
	for i := range out {
		out[i] = Rec{
			Key:     strp(fmt.Sprintf("%s-key-%d", prefix, i)),
			Value:   strp(fmt.Sprintf("%s-value-%d", prefix, i)),
			Headers: map[string]string{"index": fmt.Sprint(i), "source": prefix},
		}
	}
	return out
}

var scenarios = map[string]func(context.Context, options, result) error{
	"sarama-admin":  saramaAdmin,
	"sarama-group":  saramaGroup,
	"sarama-ops":    saramaOps,
	"sarama-txn":    saramaTxn,
	"sarama-static": saramaStatic,
	"sarama-codecs": saramaCodecs,
	"kafkago-admin": kafkagoAdmin,
	"kafkago-group": kafkagoGroup,
	"kafkago-ops":   kafkagoOps,
	"kafkago-conn":  kafkagoConn,
	"cross":         cross,
	"mixed-group":   mixedGroup,
}

func main() {
	if len(os.Args) < 2 || scenarios[os.Args[1]] == nil {
		names := []string{}
		for name := range scenarios {
			names = append(names, name)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: goclients %s [flags]\n", strings.Join(names, "|"))
		os.Exit(2)
	}
	var o options
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	fs.StringVar(&o.bootstrap, "bootstrap", "127.0.0.1:9092", "bootstrap address")
	fs.StringVar(&o.topic, "topic", "", "topic to create, use and delete")
	fs.StringVar(&o.group, "group", "", "consumer group")
	fs.IntVar(&o.n, "n", 30, "records to produce in the first round")
	fs.IntVar(&o.more, "more", 3, "records to produce before the group's second run")
	fs.StringVar(&o.kafkaVersion, "kafka-version", "", "sarama's Config.Version (empty: sarama's default)")
	fs.DurationVar(&o.timeout, "timeout", 60*time.Second, "deadline for the whole scenario")
	_ = fs.Parse(os.Args[2:])
	if o.topic == "" {
		fmt.Fprintln(os.Stderr, "-topic is required")
		os.Exit(2)
	}
	if o.group == "" {
		o.group = o.topic + "-group"
	}

	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	res := result{}
	err := scenarios[os.Args[1]](ctx, o, res)
	status := 0
	if err != nil {
		res["error"] = err.Error()
		if se, ok := err.(stepError); ok {
			res["step"] = se.step
		}
		status = 1
	}
	if err := json.NewEncoder(os.Stdout).Encode(res); err != nil {
		fmt.Fprintln(os.Stderr, err)
		status = 1
	}
	os.Exit(status)
}

// waitFor polls check every 100 ms until it returns true, an error, or ctx ends.
func waitFor(ctx context.Context, what string, check func() (bool, error)) error {
	for {
		ok, err := check()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// eventually calls check every 100 ms for up to 5 s until it returns true, and returns its last
// error. Kafka's brokers answer Metadata and DescribeConfigs from a cache that follows the
// controller, so a topic just created or altered may show the change a moment later; the caller
// records what check saw last, for the test to judge.
func eventually(ctx context.Context, check func() (bool, error)) error {
	wait, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for {
		ok, err := check()
		if ok {
			return nil
		}
		select {
		case <-wait.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func cross(ctx context.Context, o options, res result) error {
	admin, err := newSaramaAdmin(o)
	if err != nil {
		return fail("admin", err)
	}
	defer admin.Close()
	if err := saramaCreate(admin, o.topic, 3, map[string]string{}); err != nil {
		return fail("create", err)
	}

	sent := records("sarama", o.n)
	if err := saramaProduce(o, sent, sarama.CompressionZSTD); err != nil {
		return fail("sarama produce", err)
	}
	res["sarama_produced"] = sent
	got, err := kafkagoConsume(ctx, o, o.group+"-kafkago", len(sent))
	res["kafkago_consumed"] = got
	if err != nil {
		return fail("kafka-go consume", err)
	}

	sent2 := records("kafkago", o.n)
	if err := kafkagoProduce(ctx, o, sent2, kafka.Lz4); err != nil {
		return fail("kafka-go produce", err)
	}
	res["kafkago_produced"] = sent2
	got2, err := saramaConsume(ctx, o, o.group+"-sarama", len(sent)+len(sent2))
	res["sarama_consumed"] = got2
	if err != nil {
		return fail("sarama consume", err)
	}

	if err := admin.DeleteTopic(o.topic); err != nil {
		return fail("delete", err)
	}
	return nil
}
