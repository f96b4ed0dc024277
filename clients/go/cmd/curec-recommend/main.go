// Command curec-recommend prints the top-k recommendations of a curecd for one user, one
// line per item: item id, score and title, separated by tabs.
//
//	curec-recommend --address 127.0.0.1:50051 --user 196 --k 10
//
// On failure it prints the server's status and message to stderr and exits 1.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	client "curecserve.local/client"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	flags := flag.NewFlagSet("curec-recommend", flag.ContinueOnError)
	address := flags.String("address", client.DefaultAddress, "daemon address, host:port")
	user := flags.String("user", "", "user id (e.g. 196 in MovieLens-100K); required")
	k := flags.Int("k", 10, "how many items, 1 to 1000")
	plugin := flags.String("plugin", "", "recommender plugin instance (default: the daemon's)")
	includeSeen := flags.Bool("include-seen", false, "also recommend items the user has already seen")
	timeout := flags.Duration("timeout", 10*time.Second, "deadline of the call")
	flags.Usage = func() {
		fmt.Fprintln(flags.Output(), "usage: curec-recommend --user ID [--address HOST:PORT] [--k N] [--plugin NAME] [--include-seen]")
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		return 2
	}
	if *user == "" || flags.NArg() > 0 {
		flags.Usage()
		return 2
	}

	c, err := client.Dial(*address, client.WithTimeout(*timeout))
	if err != nil {
		return fail(err)
	}
	defer c.Close()

	opts := []client.Option{client.WithPlugin(*plugin)}
	if *includeSeen {
		opts = append(opts, client.IncludeSeen())
	}
	recs, err := c.Recommend(context.Background(), *user, *k, opts...)
	if err != nil {
		return fail(err)
	}
	for _, item := range recs.Items {
		fmt.Printf("%s\t%.4f\t%s\n", item.ItemID, item.Score, item.Title)
	}
	return 0
}

func fail(err error) int {
	var e *client.Error
	if errors.As(err, &e) {
		fmt.Fprintf(os.Stderr, "curec-recommend: %s: %s\n", client.StatusName(e.Code), e.Message)
	} else {
		fmt.Fprintf(os.Stderr, "curec-recommend: %v\n", err)
	}
	return 1
}
