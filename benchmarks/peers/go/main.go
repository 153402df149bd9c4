// The Go side of `sluice-lab bench peers`: franz-go (github.com/twmb/franz-go), the fastest Go
// Kafka client, in a poll loop reading every record of a topic with a fresh group, doing
// nothing with them, and committing (franz-go's auto commit while reading, a synchronous
// commit of everything polled at the end).
//
// Usage: franz-consume BROKERS TOPIC GROUP EXPECTED
// Prints one JSON object on stdout: records, seconds (first record to last), startup_seconds
// (client creation to first record), committed (records the final commit covers) and
// peak_rss_bytes (VmHWM of this process).
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

type report struct {
	Records        int64   `json:"records"`
	Seconds        float64 `json:"seconds"`
	StartupSeconds float64 `json:"startup_seconds"`
	Committed      int64   `json:"committed"`
	PeakRssBytes   int64   `json:"peak_rss_bytes"`
}

func main() {
	if len(os.Args) != 5 {
		fmt.Fprintln(os.Stderr, "usage: franz-consume BROKERS TOPIC GROUP EXPECTED")
		os.Exit(2)
	}
	brokers, topic, group := os.Args[1], os.Args[2], os.Args[3]
	expected, err := strconv.ParseInt(os.Args[4], 10, 64)
	if err != nil {
		fmt.Fprintln(os.Stderr, "EXPECTED is not a number:", err)
		os.Exit(2)
	}
	created := time.Now()
	client, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumerGroup(group),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.SessionTimeout(6*time.Second),
		// Tuned for throughput: fetches that fill.
		kgo.FetchMaxBytes(64<<20),
		kgo.FetchMaxPartitionBytes(4<<20),
	)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot create the client:", err)
		os.Exit(1)
	}
	ctx := context.Background()
	var records int64
	var sink int64
	var first, last time.Time
	idleSince := time.Now()
	for records < expected {
		pollCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		fetches := client.PollFetches(pollCtx)
		cancel()
		fetches.EachError(func(topic string, partition int32, err error) {
			if err != context.DeadlineExceeded {
				fmt.Fprintf(os.Stderr, "fetch error on %s/%d: %v\n", topic, partition, err)
			}
		})
		polled := int64(0)
		fetches.EachRecord(func(record *kgo.Record) {
			// No-op handling.
			sink += record.Offset
			polled++
		})
		if polled == 0 {
			if time.Since(idleSince) > 30*time.Second {
				fmt.Fprintf(os.Stderr, "no record for 30 s after %d records\n", records)
				os.Exit(1)
			}
			continue
		}
		idleSince = time.Now()
		if first.IsZero() {
			first = idleSince
		}
		records += polled
		last = time.Now()
	}
	if err := client.CommitUncommittedOffsets(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "final commit failed:", err)
		os.Exit(1)
	}
	var committed int64
	for _, partitions := range client.CommittedOffsets() {
		for _, offset := range partitions {
			committed += offset.Offset
		}
	}
	client.Close()
	out, _ := json.Marshal(report{
		Records:        records,
		Seconds:        last.Sub(first).Seconds(),
		StartupSeconds: first.Sub(created).Seconds(),
		Committed:      committed,
		PeakRssBytes:   peakRss(),
	})
	fmt.Println(string(out))
	if sink == -1 {
		fmt.Fprintln(os.Stderr, "unreachable")
	}
}

// peakRss is VmHWM of this process, in bytes.
func peakRss() int64 {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmHWM:") {
			fields := strings.Fields(line)
			if len(fields) >= 2 {
				kib, _ := strconv.ParseInt(fields[1], 10, 64)
				return kib * 1024
			}
		}
	}
	return 0
}
