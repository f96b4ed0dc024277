// Command inflightclient keeps a fixed number of RecommendService.Recommend calls in flight
// on one grpc-go connection for a while and prints the throughput and the latency
// percentiles: "calls_per_s R p50_us A p99_us B".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"sort"
	"strconv"
	"sync"
	"time"

	"curecserve/curecv1"

	"google.golang.org/grpc"

	_ "protocodec" // protobuf-go v2 codec for Debian's grpc-go 1.33
)

func main() {
	address := flag.String("address", "127.0.0.1:50051", "server address")
	plugin := flag.String("plugin", "", "plugin instance to ask (empty: the daemon's default)")
	inFlight := flag.Int("inflight", 1, "calls kept in flight")
	seconds := flag.Float64("seconds", 5, "measured seconds (after one second of warm-up)")
	users := flag.Int("users", 943, "user ids 1..users are asked in turn")
	k := flag.Int("k", 10, "items per recommendation")
	flag.Parse()
	connection, err := grpc.Dial(*address, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatalf("dial: %v", err)
	}
	defer connection.Close()
	client := curecv1.NewRecommendServiceClient(connection)

	var mutex sync.Mutex
	var samples []time.Duration
	measuring := false
	start := time.Now()
	warmEnd := start.Add(time.Second)
	end := warmEnd.Add(time.Duration(*seconds * float64(time.Second)))
	var group sync.WaitGroup
	for worker := 0; worker < *inFlight; worker++ {
		group.Add(1)
		go func(worker int) {
			defer group.Done()
			for n := worker; ; n += *inFlight {
				request := &curecv1.RecommendRequest{
					UserId: strconv.Itoa(1 + n%*users), K: int32(*k), ExcludeSeen: true, Plugin: *plugin}
				started := time.Now()
				if started.After(end) {
					return
				}
				if _, err := client.Recommend(context.Background(), request); err != nil {
					log.Fatalf("recommend: %v", err)
				}
				finished := time.Now()
				if started.After(warmEnd) && !finished.After(end) {
					mutex.Lock()
					samples = append(samples, finished.Sub(started))
					measuring = true
					mutex.Unlock()
				}
			}
		}(worker)
	}
	group.Wait()
	if !measuring || len(samples) == 0 {
		log.Fatalf("no call finished inside the measured window")
	}
	sort.Slice(samples, func(a, b int) bool { return samples[a] < samples[b] })
	at := func(q float64) float64 { return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) }
	fmt.Printf("calls_per_s %.1f p50_us %.0f p99_us %.0f\n", float64(len(samples)) / *seconds, at(0.5), at(0.99))
}
