// The sarama peers of the cdc-relay benchmark: the same work per invocation as
// cdc-relay (parse the MSK event, base64-decode, parse the DMS JSON, apply
// bench/mapping.json, produce with acks=all, wait for every acknowledgement).
//
//	relaybench seed|async BROKERS ROUNDS MAPPING EVENT...
//
// seed:  a goroutine per message, each calling SyncProducer.SendMessage (as the seed built it)
// async: one AsyncProducer, every message to Input(), then wait for all Successes/Errors
// Both use WaitForAll without idempotence (sarama's idempotent producer allows only one
// request in flight; the seed did not use it).
package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type route struct {
	Table   string            `json:"table"`
	Topic   string            `json:"topic"`
	Key     []string          `json:"key"`
	Include []string          `json:"include"`
	Rename  map[string]string `json:"rename"`
}

type mapping struct {
	Routes []route `json:"routes"`
}

type mskRecord struct {
	Topic     string `json:"topic"`
	Partition int64  `json:"partition"`
	Offset    int64  `json:"offset"`
	Value     string `json:"value"`
}

type mskEvent struct {
	Records map[string][]mskRecord `json:"records"`
}

type dmsRecord struct {
	Data     map[string]interface{} `json:"data"`
	Before   map[string]interface{} `json:"before-image"`
	Metadata map[string]interface{} `json:"metadata"`
}

func project(row map[string]interface{}, r *route) map[string]interface{} {
	if row == nil {
		return nil
	}
	out := make(map[string]interface{}, len(r.Include))
	for _, c := range r.Include {
		if v, ok := row[c]; ok {
			name := c
			if n, ok := r.Rename[c]; ok {
				name = n
			}
			out[name] = v
		}
	}
	return out
}

func keyText(v interface{}) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func transform(rec mskRecord, routes map[string]*route) (*sarama.ProducerMessage, error) {
	raw, err := base64.StdEncoding.DecodeString(rec.Value)
	if err != nil {
		return nil, err
	}
	var doc dmsRecord
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	m := doc.Metadata
	table := fmt.Sprint(m["schema-name"], ".", m["table-name"])
	r, ok := routes[table]
	if !ok {
		return nil, fmt.Errorf("no route for %s", table)
	}
	key := map[string]interface{}{}
	parts := make([]string, 0, len(r.Key))
	for _, c := range r.Key {
		key[c] = doc.Data[c]
		parts = append(parts, keyText(doc.Data[c]))
	}
	envelope := map[string]interface{}{
		"op": m["operation"],
		"source": map[string]interface{}{
			"schema": m["schema-name"], "table": m["table-name"], "topic": rec.Topic, "partition": rec.Partition,
			"offset": rec.Offset, "transaction_id": m["transaction-id"], "commit_timestamp": m["commit-timestamp"],
			"timestamp": m["timestamp"],
		},
		"key":    key,
		"data":   project(doc.Data, r),
		"before": project(doc.Before, r),
	}
	value, err := json.Marshal(envelope)
	if err != nil {
		return nil, err
	}
	op := fmt.Sprint(m["operation"])
	return &sarama.ProducerMessage{
		Topic: r.Topic,
		Key:   sarama.StringEncoder(strings.Join(parts, "|")),
		Value: sarama.ByteEncoder(value),
		Headers: []sarama.RecordHeader{
			{Key: []byte("relay-source-topic"), Value: []byte(rec.Topic)},
			{Key: []byte("relay-source-partition"), Value: []byte(strconv.FormatInt(rec.Partition, 10))},
			{Key: []byte("relay-source-offset"), Value: []byte(strconv.FormatInt(rec.Offset, 10))},
			{Key: []byte("relay-op"), Value: []byte(op)},
			{Key: []byte("relay-table"), Value: []byte(table)},
		},
	}, nil
}

func config() *sarama.Config {
	c := sarama.NewConfig()
	c.Version = sarama.V2_1_0_0
	c.Producer.RequiredAcks = sarama.WaitForAll
	c.Producer.Return.Successes = true
	c.Producer.Return.Errors = true
	c.Producer.Partitioner = sarama.NewHashPartitioner
	c.Producer.Flush.Frequency = 2 * time.Millisecond
	c.ChannelBufferSize = 16384
	return c
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 6 {
		fail(fmt.Errorf("usage: relaybench seed|async BROKERS ROUNDS MAPPING EVENT..."))
	}
	mode, brokers, files := os.Args[1], strings.Split(os.Args[2], ","), os.Args[5:]
	rounds, err := strconv.Atoi(os.Args[3])
	if err != nil {
		fail(err)
	}
	var mp mapping
	text, err := os.ReadFile(os.Args[4])
	if err != nil {
		fail(err)
	}
	if err := json.Unmarshal(text, &mp); err != nil {
		fail(err)
	}
	routes := map[string]*route{}
	for i := range mp.Routes {
		routes[mp.Routes[i].Table] = &mp.Routes[i]
	}

	t0 := time.Now()
	var syncProducer sarama.SyncProducer
	var asyncProducer sarama.AsyncProducer
	if mode == "seed" {
		syncProducer, err = sarama.NewSyncProducer(brokers, config())
	} else {
		asyncProducer, err = sarama.NewAsyncProducer(brokers, config())
	}
	if err != nil {
		fail(err)
	}
	fmt.Printf("{\"init_ms\": %f}\n", float64(time.Since(t0).Microseconds())/1000)

	for round := 0; round < rounds; round++ {
		for _, file := range files {
			t := time.Now()
			body, err := os.ReadFile(file)
			if err != nil {
				fail(err)
			}
			var event mskEvent
			if err := json.Unmarshal(body, &event); err != nil {
				fail(err)
			}
			var messages []*sarama.ProducerMessage
			for _, list := range event.Records {
				for _, rec := range list {
					m, err := transform(rec, routes)
					if err != nil {
						fail(err)
					}
					messages = append(messages, m)
				}
			}
			failed := 0
			if mode == "seed" {
				var wg sync.WaitGroup
				var mu sync.Mutex
				for _, m := range messages {
					wg.Add(1)
					go func(m *sarama.ProducerMessage) {
						defer wg.Done()
						if _, _, err := syncProducer.SendMessage(m); err != nil {
							mu.Lock()
							failed++
							mu.Unlock()
						}
					}(m)
				}
				wg.Wait()
			} else {
				go func() {
					for _, m := range messages {
						asyncProducer.Input() <- m
					}
				}()
				for done := 0; done < len(messages); done++ {
					select {
					case <-asyncProducer.Successes():
					case <-asyncProducer.Errors():
						failed++
					}
				}
			}
			ms := float64(time.Since(t).Microseconds()) / 1000
			fmt.Printf("{\"round\": %d, \"event\": %q, \"ms\": %f, \"records\": %d, \"messages\": %d, \"ok\": %t}\n",
				round, file, ms, len(messages), len(messages), failed == 0)
		}
	}
}
