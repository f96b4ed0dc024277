package client

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"sort"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// IdempotentMethods lists, by fully qualified service name, every method the retry policy
// retries: calls that change nothing on the daemon, or give the same answer when repeated.
// Calls that create or change something (Submit, Upload, Load, Reload, Unload, Cancel, the
// inference protocol's repository load and unload) are never retried.
var IdempotentMethods = map[string][]string{
	"curec.v1.RecommendService":  {"Score", "Recommend"},
	"curec.v1.RewardService":     {"Score", "ScoreReasons", "Embed"},
	"curec.v1.JobService":        {"Get", "List", "Watch"},
	"curec.v1.ModelService":      {"List", "GetReport"},
	"curec.v1.PluginService":     {"List"},
	"curec.v1.DatasetService":    {"List"},
	"curec.v1.GenerationService": {"Generate", "GenerateReason"},
	"grpc.health.v1.Health":      {"Check"},
	"inference.GRPCInferenceService": {"ServerLive", "ServerReady", "ModelReady", "ServerMetadata",
		"ModelMetadata", "ModelInfer", "ModelStatistics", "RepositoryIndex"},
}

// RetryPolicy says how often and how patiently an idempotent call that failed with
// Unavailable (a replica restarting or draining behind a load balancer, a refused or reset
// connection) is sent again. The n-th retry waits a random time between 0 and
// min(InitialBackoff * BackoffMultiplier^(n-1), MaxBackoff), and never past the call's
// deadline (gRPC's retry design, A6).
type RetryPolicy struct {
	// MaxAttempts counts the first attempt; 2 to 5 (gRPC's cap).
	MaxAttempts       int
	InitialBackoff    time.Duration
	MaxBackoff        time.Duration
	BackoffMultiplier float64
	// InitialReconnectBackoff and MaxReconnectBackoff bound the connection's own reconnect
	// backoff (grpc-go's defaults: 1 s and 120 s), so a retry soon finds a replica that is
	// back.
	InitialReconnectBackoff time.Duration
	MaxReconnectBackoff     time.Duration
}

// DefaultRetryPolicy is the policy Dial applies unless given WithoutRetries.
var DefaultRetryPolicy = RetryPolicy{
	MaxAttempts:             5,
	InitialBackoff:          250 * time.Millisecond,
	MaxBackoff:              4 * time.Second,
	BackoffMultiplier:       2,
	InitialReconnectBackoff: 100 * time.Millisecond,
	MaxReconnectBackoff:     2 * time.Second,
}

// WithRetryPolicy replaces DefaultRetryPolicy.
func WithRetryPolicy(policy RetryPolicy) DialOption {
	return func(s *dialSettings) { s.retry = &policy; s.retryOff = false }
}

// WithoutRetries turns the retry policy off: every Unavailable reaches the caller.
func WithoutRetries() DialOption {
	return func(s *dialSettings) { s.retryOff = true }
}

// Validate reports a policy gRPC would refuse.
func (p RetryPolicy) Validate() error {
	switch {
	case p.MaxAttempts < 2 || p.MaxAttempts > 5:
		return fmt.Errorf("retry policy: MaxAttempts must be between 2 and 5, not %d", p.MaxAttempts)
	case p.InitialBackoff <= 0 || p.MaxBackoff < p.InitialBackoff:
		return fmt.Errorf("retry policy: backoffs must be positive, with MaxBackoff >= InitialBackoff")
	case p.BackoffMultiplier < 1:
		return fmt.Errorf("retry policy: BackoffMultiplier must be at least 1")
	case p.InitialReconnectBackoff <= 0 || p.MaxReconnectBackoff < p.InitialReconnectBackoff:
		return fmt.Errorf("retry policy: reconnect backoffs must be positive, with MaxReconnectBackoff >= InitialReconnectBackoff")
	}
	return nil
}

// ServiceConfig is the policy as a gRPC service config (JSON), for a connection dialled
// with grpc.WithDefaultServiceConfig by code that does not use this package's Dial.
func (p RetryPolicy) ServiceConfig() string {
	type name struct {
		Service string `json:"service"`
		Method  string `json:"method"`
	}
	var names []name
	for _, service := range sortedServices() {
		for _, method := range IdempotentMethods[service] {
			names = append(names, name{service, method})
		}
	}
	seconds := func(d time.Duration) string { return fmt.Sprintf("%gs", d.Seconds()) }
	config := map[string]interface{}{
		"methodConfig": []interface{}{map[string]interface{}{
			"name": names,
			"retryPolicy": map[string]interface{}{
				"maxAttempts":          p.MaxAttempts,
				"initialBackoff":       seconds(p.InitialBackoff),
				"maxBackoff":           seconds(p.MaxBackoff),
				"backoffMultiplier":    p.BackoffMultiplier,
				"retryableStatusCodes": []string{"UNAVAILABLE"},
			},
		}},
	}
	text, _ := json.Marshal(config)
	return string(text)
}

func sortedServices() []string {
	services := make([]string, 0, len(IdempotentMethods))
	for service := range IdempotentMethods {
		services = append(services, service)
	}
	sort.Strings(services)
	return services
}

// dialOptions applies the policy to a connection. grpc-go applies service-config retries
// only from release to release differently (the Debian 1.33 this module builds against
// needs GRPC_GO_RETRY=on), so the policy runs in a unary interceptor and grpc-go's own
// retries are turned off: the same attempts on every grpc-go. Streaming calls (Watch,
// Generate) are not retried by the Go client.
func (p RetryPolicy) dialOptions() []grpc.DialOption {
	retried := map[string]bool{}
	for service, methods := range IdempotentMethods {
		for _, method := range methods {
			retried["/"+service+"/"+method] = true
		}
	}
	return []grpc.DialOption{
		grpc.WithDisableRetry(),
		grpc.WithChainUnaryInterceptor(p.unaryInterceptor(retried)),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{BaseDelay: p.InitialReconnectBackoff, Multiplier: 1.6, Jitter: 0.2,
				MaxDelay: p.MaxReconnectBackoff},
			MinConnectTimeout: 20 * time.Second,
		}),
	}
}

func (p RetryPolicy) unaryInterceptor(retried map[string]bool) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply interface{}, cc *grpc.ClientConn,
		invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if !retried[method] {
			return invoker(ctx, method, req, reply, cc, opts...)
		}
		ceiling := p.InitialBackoff
		for attempt := 1; ; attempt++ {
			err := invoker(ctx, method, req, reply, cc, opts...)
			if status.Code(err) != codes.Unavailable || attempt >= p.MaxAttempts {
				return err
			}
			wait := time.Duration(rand.Int63n(int64(ceiling) + 1))
			if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) <= wait {
				return err
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return err
			case <-timer.C:
			}
			ceiling = time.Duration(float64(ceiling) * p.BackoffMultiplier)
			if ceiling > p.MaxBackoff {
				ceiling = p.MaxBackoff
			}
		}
	}
}
