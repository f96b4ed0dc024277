package client_test

import (
	"context"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	client "curecserve.local/client"
)

func TestEmbed(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	out, err := c.Embed(ctx, []string{"A warm comedy about a wedding.", "A cold space thriller."})
	if err != nil {
		t.Fatal(err)
	}
	if out.Dimension != 384 || len(out.Vectors) != 2 || out.Model != "all-MiniLM-L6-v2" {
		t.Fatalf("got %d vectors of dimension %d from %q", len(out.Vectors), out.Dimension, out.Model)
	}
	for i, v := range out.Vectors {
		var norm float64
		for _, x := range v {
			norm += float64(x) * float64(x)
		}
		if len(v) != 384 || math.Abs(math.Sqrt(norm)-1) > 1e-3 {
			t.Fatalf("vector %d: %d values, norm %g", i, len(v), math.Sqrt(norm))
		}
	}
	_, err = c.Embed(ctx, []string{"fine", ""})
	if e := wantCode(t, err, codes.InvalidArgument); !strings.Contains(e.Message, "texts[1]") {
		t.Fatalf("message %q does not name texts[1]", e.Message)
	}
	_, err = c.Embed(ctx, make([]string, 257))
	wantCode(t, err, codes.InvalidArgument)
}

func TestScoreReasons(t *testing.T) {
	c, err := client.Dial(daemonAddress, client.WithTimeout(600*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	rewards, err := c.ScoreReasons(ctx, []client.ReasonText{
		{UserID: "196", ItemID: "242", Text: "A gentle comedy for viewers who like quiet dramas."},
		{UserID: "196", ItemID: "242", Text: "You loved \"No Such Film At All\" (1931)."},
		{UserID: "196", ItemID: "242", Text: ""},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rewards) != 3 {
		t.Fatalf("got %d rewards, want 3", len(rewards))
	}
	for i, r := range rewards[:2] {
		if math.Abs(r.Reward-(r.Collaborative-r.Penalty)) > 1e-9 || r.Collaborative < 0 || r.Collaborative > 1 {
			t.Fatalf("reward %d is not its parts: %+v", i, r)
		}
		if math.Abs(r.Collaborative-(r.UserAgreement+r.AudienceAgreement)/2) > 1e-9 {
			t.Fatalf("collaborative %d is not the mean of its parts: %+v", i, r)
		}
	}
	unknown := false
	for _, f := range rewards[1].Failures {
		unknown = unknown || (f.Check == "title-exists" && f.Penalty > 0)
	}
	if rewards[1].ChecksPassed || !unknown {
		t.Fatalf("an unknown title did not fail title-exists: %+v", rewards[1])
	}
	if rewards[2].Reward != -1 || rewards[2].ChecksPassed {
		t.Fatalf("an empty reason is a missing one: %+v", rewards[2])
	}
	_, err = c.ScoreReasons(ctx, []client.ReasonText{{UserID: "no-such-user", ItemID: "242", Text: "x"}})
	wantCode(t, err, codes.NotFound)
}

func TestReasonSourcePairString(t *testing.T) {
	if client.ReasonPair.String() != "pair" {
		t.Fatalf("got %q", client.ReasonPair.String())
	}
}

func TestRecommendWithPairReasons(t *testing.T) {
	c, err := client.Dial(daemonAddress, client.WithTimeout(1800*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs, err := c.Recommend(context.Background(), "1", 2, client.WithReasonSource(client.ReasonPair))
	if err != nil {
		t.Fatal(err)
	}
	if len(recs.Items) != 2 || recs.ReasonModelVersion != "smollm2" {
		t.Fatalf("got %d items from %q", len(recs.Items), recs.ReasonModelVersion)
	}
	for _, item := range recs.Items {
		if (item.Reason != "") != (item.ReasonSource == "pair") {
			t.Fatalf("item %s: reason %q with source %q", item.ItemID, item.Reason, item.ReasonSource)
		}
	}
	_, err = c.Recommend(context.Background(), "1", 2, client.WithReasonSource(client.ReasonPair), client.WithReasonModel("lm"))
	wantCode(t, err, codes.FailedPrecondition)
}
