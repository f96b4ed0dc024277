// Command latencyclient measures the latency of RecommendService.Recommend (or, with
// --score N, of Score with N items) with one call in flight, using grpc-go, and prints p50,
// p90 and p99 in microseconds.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"sort"
	"time"

	"curecserve/curecv1"

	"google.golang.org/grpc"

	_ "protocodec" // protobuf-go v2 codec for Debian's grpc-go 1.33
)

func main() {
	address := flag.String("address", "127.0.0.1:50051", "server address")
	calls := flag.Int("calls", 3000, "measured calls")
	k := flag.Int("k", 10, "items per recommendation")
	plugin := flag.String("plugin", "", "recommender plugin instance (empty: the default)")
	score := flag.Int("score", 0, "call Score with item ids 1..N instead of Recommend (0: Recommend)")
	flag.Parse()
	items := make([]string, *score)
	for n := range items {
		items[n] = fmt.Sprint(n + 1)
	}
	connection, err := grpc.Dial(*address, grpc.WithInsecure(), grpc.WithBlock())
	if err != nil {
		log.Fatalf("dial: %v", err)
	}
	defer connection.Close()
	client := curecv1.NewRecommendServiceClient(connection)
	users := []string{"1", "196", "405", "655", "13", "450", "276", "92"}
	call := func(n int) time.Duration {
		user := users[n%len(users)]
		started := time.Now()
		if *score > 0 {
			request := &curecv1.ScoreRequest{UserId: user, ItemIds: items, Plugin: *plugin}
			if _, err := client.Score(context.Background(), request); err != nil {
				log.Fatalf("score: %v", err)
			}
			return time.Since(started)
		}
		request := &curecv1.RecommendRequest{UserId: user, K: int32(*k), ExcludeSeen: true, Plugin: *plugin}
		if _, err := client.Recommend(context.Background(), request); err != nil {
			log.Fatalf("recommend: %v", err)
		}
		return time.Since(started)
	}
	for n := 0; n < 200; n++ {
		call(n)
	}
	samples := make([]time.Duration, *calls)
	for n := range samples {
		samples[n] = call(n)
	}
	sort.Slice(samples, func(a, b int) bool { return samples[a] < samples[b] })
	at := func(q float64) float64 { return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) }
	fmt.Printf("p50_us %.0f p90_us %.0f p99_us %.0f\n", at(0.5), at(0.9), at(0.99))
}
