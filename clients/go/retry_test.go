package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	client "curecserve.local/client"
)

// gate is a loopback port in front of the test daemon that resets the first `refuse`
// connections (a replica that is down, draining or restarting) and forwards the rest.
type gate struct {
	listener  net.Listener
	mu        sync.Mutex
	toRefuse  int
	refused   int
	forwarded int
}

func newGate(t *testing.T, refuse int) *gate {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &gate{listener: listener, toRefuse: refuse}
	t.Cleanup(func() { listener.Close() })
	go g.serve()
	return g
}

func (g *gate) address() string { return g.listener.Addr().String() }

func (g *gate) counts() (refused, forwarded int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused, g.forwarded
}

func (g *gate) serve() {
	for {
		conn, err := g.listener.Accept()
		if err != nil {
			return
		}
		g.mu.Lock()
		refuse := g.toRefuse > 0
		if refuse {
			g.toRefuse--
			g.refused++
		}
		g.mu.Unlock()
		if refuse {
			conn.(*net.TCPConn).SetLinger(0)
			conn.Close()
			continue
		}
		upstream, err := net.Dial("tcp", daemonAddress)
		if err != nil {
			conn.Close()
			continue
		}
		g.mu.Lock()
		g.forwarded++
		g.mu.Unlock()
		go func() { io.Copy(upstream, conn); upstream.Close() }()
		go func() { io.Copy(conn, upstream); conn.Close() }()
	}
}

func TestIdempotentCallIsRetriedPastARefusedConnection(t *testing.T) {
	g := newGate(t, 1)
	c, err := client.Dial(g.address(), client.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs, err := c.Recommend(context.Background(), "196", 5)
	if err != nil {
		t.Fatalf("Recommend through a port that refused first: %v", err)
	}
	if len(recs.Items) != 5 {
		t.Fatalf("got %d items", len(recs.Items))
	}
	if refused, forwarded := g.counts(); refused != 1 || forwarded < 1 {
		t.Fatalf("refused %d, forwarded %d", refused, forwarded)
	}
}

func TestWithoutRetriesTheRefusedCallIsUnavailable(t *testing.T) {
	g := newGate(t, 1)
	c, err := client.Dial(g.address(), client.WithTimeout(30*time.Second), client.WithoutRetries())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Recommend(context.Background(), "196", 5)
	wantCode(t, err, codes.Unavailable)
}

func TestSubmitIsNeverRetried(t *testing.T) {
	g := newGate(t, 1)
	c, err := client.Dial(g.address(), client.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.SubmitJob(context.Background(), "evaluate", nil)
	wantCode(t, err, codes.Unavailable)
}

func TestRetryPolicyServiceConfig(t *testing.T) {
	var config struct {
		MethodConfig []struct {
			Name []struct {
				Service string `json:"service"`
				Method  string `json:"method"`
			} `json:"name"`
			RetryPolicy struct {
				MaxAttempts          int      `json:"maxAttempts"`
				RetryableStatusCodes []string `json:"retryableStatusCodes"`
			} `json:"retryPolicy"`
		} `json:"methodConfig"`
	}
	if err := json.Unmarshal([]byte(client.DefaultRetryPolicy.ServiceConfig()), &config); err != nil {
		t.Fatal(err)
	}
	if len(config.MethodConfig) != 1 || strings.Join(config.MethodConfig[0].RetryPolicy.RetryableStatusCodes, ",") != "UNAVAILABLE" {
		t.Fatalf("unexpected service config %+v", config)
	}
	names := map[string]bool{}
	for _, n := range config.MethodConfig[0].Name {
		names[n.Service+"/"+n.Method] = true
	}
	for _, want := range []string{"curec.v1.RecommendService/Score", "curec.v1.RecommendService/Recommend", "inference.GRPCInferenceService/ModelInfer"} {
		if !names[want] {
			t.Errorf("%s is not retried", want)
		}
	}
	for _, never := range []string{"curec.v1.JobService/Submit", "curec.v1.PluginService/Load", "curec.v1.JobService/Cancel", "curec.v1.DatasetService/Upload"} {
		if names[never] {
			t.Errorf("%s must not be retried", never)
		}
	}
	bad := client.DefaultRetryPolicy
	bad.MaxAttempts = 9
	if _, err := client.Dial("127.0.0.1:1", client.WithRetryPolicy(bad)); err == nil {
		t.Fatal("a policy of 9 attempts was accepted")
	}
}
