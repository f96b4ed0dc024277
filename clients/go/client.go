// Package client is a typed Go client for the CURec serve daemon (curecd).
//
// It wraps the gRPC stubs of Protos/curec/v1 (package curecv1): recommendations and
// scoring (with reasons), reward scoring, plugin administration, jobs, the model store,
// the pipeline's report, text generation with the served language models and chat
// datasets for fine-tuning. Answers are plain Go structs; every failed call returns an
// *Error carrying the gRPC status code and the server's message.
//
//	c, err := client.Dial("127.0.0.1:50051")
//	if err != nil { ... }
//	defer c.Close()
//	recs, err := c.Recommend(ctx, "196", 10)
//	for _, item := range recs.Items {
//		fmt.Println(item.ItemID, item.Score, item.Title)
//	}
package client

import (
	"context"
	"crypto/tls"
	"time"

	"google.golang.org/grpc"

	"curecserve.local/client/curecv1"
)

// DefaultAddress is where scripts/run serves by default.
const DefaultAddress = "127.0.0.1:50051"

// DefaultTimeout bounds each unary call whose context has no deadline.
const DefaultTimeout = 30 * time.Second

// Client is a connection to one curecd. It is safe for concurrent use.
type Client struct {
	conn    *grpc.ClientConn
	timeout time.Duration

	recommend  curecv1.RecommendServiceClient
	reward     curecv1.RewardServiceClient
	plugins    curecv1.PluginServiceClient
	jobs       curecv1.JobServiceClient
	models     curecv1.ModelServiceClient
	generation curecv1.GenerationServiceClient
	datasets   curecv1.DatasetServiceClient
}

// DialOption configures Dial.
type DialOption func(*dialSettings)

type dialSettings struct {
	timeout  time.Duration
	grpc     []grpc.DialOption
	tls      *tls.Config
	token    string
	retry    *RetryPolicy
	retryOff bool
}

// WithTimeout sets the deadline of each unary call whose context has none (default
// DefaultTimeout; 0 means no deadline). Watch streams are bounded only by their context.
func WithTimeout(d time.Duration) DialOption {
	return func(s *dialSettings) { s.timeout = d }
}

// WithGRPCOptions passes extra options to grpc.Dial (e.g. grpc.WithBlock()).
func WithGRPCOptions(opts ...grpc.DialOption) DialOption {
	return func(s *dialSettings) { s.grpc = append(s.grpc, opts...) }
}

// Dial connects to a daemon at address ("host:port"): plaintext HTTP/2, or TLS with
// WithTLS, and a bearer token with WithToken (see docs/security.md). Idempotent unary
// calls that fail with Unavailable are retried under DefaultRetryPolicy (WithRetryPolicy,
// WithoutRetries). Like grpc.Dial it
// does not wait for the connection: an unreachable daemon shows as Unavailable errors on
// the first calls (pass WithGRPCOptions(grpc.WithBlock()) with DialContext to wait).
func Dial(address string, opts ...DialOption) (*Client, error) {
	return DialContext(context.Background(), address, opts...)
}

// DialContext is Dial with a context that bounds a blocking dial.
func DialContext(ctx context.Context, address string, opts ...DialOption) (*Client, error) {
	settings := dialSettings{timeout: DefaultTimeout}
	for _, opt := range opts {
		opt(&settings)
	}
	grpcOpts := settings.transportOptions()
	if !settings.retryOff {
		policy := DefaultRetryPolicy
		if settings.retry != nil {
			policy = *settings.retry
		}
		if err := policy.Validate(); err != nil {
			return nil, err
		}
		grpcOpts = append(grpcOpts, policy.dialOptions()...)
	}
	grpcOpts = append(grpcOpts, settings.grpc...)
	conn, err := grpc.DialContext(ctx, address, grpcOpts...)
	if err != nil {
		return nil, wrapError(err, "dial "+address)
	}
	return NewFromConn(conn, settings.timeout), nil
}

// NewFromConn wraps an existing connection. Close closes it.
func NewFromConn(conn *grpc.ClientConn, timeout time.Duration) *Client {
	return &Client{
		conn:       conn,
		timeout:    timeout,
		recommend:  curecv1.NewRecommendServiceClient(conn),
		reward:     curecv1.NewRewardServiceClient(conn),
		plugins:    curecv1.NewPluginServiceClient(conn),
		jobs:       curecv1.NewJobServiceClient(conn),
		models:     curecv1.NewModelServiceClient(conn),
		generation: curecv1.NewGenerationServiceClient(conn),
		datasets:   curecv1.NewDatasetServiceClient(conn),
	}
}

// Conn returns the underlying connection, for calling the curecv1 stubs directly.
func (c *Client) Conn() *grpc.ClientConn { return c.conn }

// Close closes the connection; calls in flight are cancelled.
func (c *Client) Close() error { return c.conn.Close() }

// unary returns the context for one unary call: the caller's, with the client's default
// deadline added when it has none.
func (c *Client) unary(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx == nil {
		ctx = context.Background()
	}
	if _, ok := ctx.Deadline(); ok || c.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, c.timeout)
}

// ---------------------------------------------------------------- recommendation

// Option adjusts a Recommend, Score or Reward call.
type Option func(*callSettings)

type callSettings struct {
	plugin       string
	includeSeen  bool
	withReasons  bool
	reasonSource ReasonSource
	reasonModel  string
}

// WithPlugin chooses the plugin instance (default: the daemon's configured one).
func WithPlugin(name string) Option { return func(s *callSettings) { s.plugin = name } }

// IncludeSeen lets Recommend return items the user already interacted with in the
// training data (left out by default).
func IncludeSeen() Option { return func(s *callSettings) { s.includeSeen = true } }

// ReasonSource says where Recommend's reasons come from (see WithReasonSource).
type ReasonSource int32

const (
	// ReasonAuto takes the pipeline's corrected reason table when one exists, and has the
	// language model write the reasons otherwise.
	ReasonAuto ReasonSource = ReasonSource(curecv1.ReasonSource_REASON_SOURCE_AUTO)
	// ReasonTable takes only the reason table: FailedPrecondition before a pipeline job
	// has made one.
	ReasonTable ReasonSource = ReasonSource(curecv1.ReasonSource_REASON_SOURCE_TABLE)
	// ReasonGenerate always has the language model write the reasons.
	ReasonGenerate ReasonSource = ReasonSource(curecv1.ReasonSource_REASON_SOURCE_GENERATE)
	// ReasonPair explains why this user gets this item: the tuned chat model's reason (the
	// newest published tuned reason model, else smollm2), checked by the verifier,
	// regenerated when nothing survives, cached per user, item and model version.
	ReasonPair ReasonSource = ReasonSource(curecv1.ReasonSource_REASON_SOURCE_PAIR)
)

// String returns "auto", "table", "generate" or "pair".
func (r ReasonSource) String() string {
	switch r {
	case ReasonAuto:
		return "auto"
	case ReasonTable:
		return "table"
	case ReasonGenerate:
		return "generate"
	case ReasonPair:
		return "pair"
	}
	return "unspecified"
}

// WithReasons makes Recommend give a reason for each item (RecommendedItem.Reason). Reasons
// written by the language model take seconds: give the call a longer deadline.
func WithReasons() Option { return func(s *callSettings) { s.withReasons = true } }

// WithReasonSource makes Recommend give a reason for each item from the given source
// (implies WithReasons).
func WithReasonSource(source ReasonSource) Option {
	return func(s *callSettings) {
		s.withReasons = true
		s.reasonSource = source
	}
}

// WithReasonModel chooses the language model for generated reasons (default "lm" when one
// exists, else the newest "curec-reasons", else "smollm2"; implies WithReasons).
func WithReasonModel(name string) Option {
	return func(s *callSettings) {
		s.withReasons = true
		s.reasonModel = name
	}
}

func settingsOf(opts []Option) callSettings {
	var s callSettings
	for _, opt := range opts {
		opt(&s)
	}
	return s
}

// RecommendedItem is one recommended item.
type RecommendedItem struct {
	ItemID string
	Score  float32
	Title  string
	// Reason says why the user would like the item, when reasons were asked for.
	Reason string
	// ReasonSource is "table" (the corrected reason table), "generated" (written by the
	// language model) or "pair" (a pair reason); empty without a reason.
	ReasonSource string
	// ReasonReward is a table reason's reward (collaborative agreement minus verifier
	// penalties); 0 for generated reasons.
	ReasonReward float32
}

// Recommendations is the answer of Recommend: best items first.
type Recommendations struct {
	Items []RecommendedItem
	// ServedBy names the instance that answered, as "name@version#generation".
	ServedBy string
	// ReasonModelVersion names the model that wrote pair reasons ("smollm2" or
	// "models/<name>/vN"); empty otherwise.
	ReasonModelVersion string
}

// ItemIDs returns the recommended item ids, best first.
func (r *Recommendations) ItemIDs() []string {
	ids := make([]string, len(r.Items))
	for i, item := range r.Items {
		ids[i] = item.ItemID
	}
	return ids
}

// Recommend returns the k best items (1 to 1,000) for userID over the whole catalogue;
// WithReasons, WithReasonSource or WithReasonModel add a reason to each item.
// Errors: NotFound for an unknown user or plugin, InvalidArgument for a bad k,
// FailedPrecondition for ReasonTable before a pipeline job has made a reason table.
func (c *Client) Recommend(ctx context.Context, userID string, k int, opts ...Option) (*Recommendations, error) {
	s := settingsOf(opts)
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.recommend.Recommend(ctx, &curecv1.RecommendRequest{
		UserId: userID, K: int32(k), ExcludeSeen: !s.includeSeen, Plugin: s.plugin,
		WithReasons: s.withReasons, ReasonModel: s.reasonModel, ReasonSource: curecv1.ReasonSource(s.reasonSource),
	})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.RecommendService/Recommend")
	}
	out := &Recommendations{Items: make([]RecommendedItem, len(response.Items)), ServedBy: response.ServedBy,
		ReasonModelVersion: response.ReasonModelVersion}
	for i, item := range response.Items {
		out.Items[i] = RecommendedItem{
			ItemID: item.ItemId, Score: item.Score, Title: item.Title,
			Reason: item.Reason, ReasonSource: item.ReasonSource, ReasonReward: item.ReasonReward,
		}
	}
	return out, nil
}

// Scores is the answer of Score: one score per requested item, in request order.
type Scores struct {
	ItemIDs  []string
	Scores   []float32
	ServedBy string
}

// ByItem returns the scores keyed by item id.
func (s *Scores) ByItem() map[string]float32 {
	m := make(map[string]float32, len(s.Scores))
	for i, id := range s.ItemIDs {
		if i < len(s.Scores) {
			m[id] = s.Scores[i]
		}
	}
	return m
}

// Score scores candidate items (at most 10,000) for one user.
// Errors: NotFound for an unknown user, item or plugin.
func (c *Client) Score(ctx context.Context, userID string, itemIDs []string, opts ...Option) (*Scores, error) {
	s := settingsOf(opts)
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.recommend.Score(ctx, &curecv1.ScoreRequest{UserId: userID, ItemIds: itemIDs, Plugin: s.plugin})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.RecommendService/Score")
	}
	return &Scores{ItemIDs: append([]string(nil), itemIDs...), Scores: response.Scores, ServedBy: response.ServedBy}, nil
}

// RewardTriple is a recommendation reason about (user, item), as its sentence embedding,
// whose length must be the reward plugin's ReasonEmbeddingDim.
type RewardTriple struct {
	UserID          string
	ItemID          string
	ReasonEmbedding []float32
}

// Rewards is the answer of Reward: one reward per triple, in request order.
type Rewards struct {
	Rewards  []float32
	ServedBy string
}

// Reward scores recommendation reasons with a reward-model plugin (WithPlugin chooses it).
func (c *Client) Reward(ctx context.Context, triples []RewardTriple, opts ...Option) (*Rewards, error) {
	s := settingsOf(opts)
	request := &curecv1.RewardRequest{Plugin: s.plugin, Triples: make([]*curecv1.RewardTriple, len(triples))}
	for i, t := range triples {
		request.Triples[i] = &curecv1.RewardTriple{UserId: t.UserID, ItemId: t.ItemID, ReasonEmbedding: t.ReasonEmbedding}
	}
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.reward.Score(ctx, request)
	if err != nil {
		return nil, wrapError(err, "/curec.v1.RewardService/Score")
	}
	return &Rewards{Rewards: response.Rewards, ServedBy: response.ServedBy}, nil
}
