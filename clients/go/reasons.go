package client

import (
	"context"

	"curecserve.local/client/curecv1"
)

// ReasonText is a reason about (user, item), given as text.
type ReasonText struct {
	UserID string
	ItemID string
	// Text is the reason; empty counts as a missing reason (reward -1).
	Text string
}

// VerifierFailure is a verifier check a reason failed and its penalty.
type VerifierFailure struct {
	// Check names the check, e.g. "title-exists" or "item-year".
	Check   string
	Detail  string
	Text    string
	Penalty float64
}

// ReasonReward is the pipeline's reward of a reason text with its parts:
// Reward = Collaborative - Penalty, Collaborative the mean of UserAgreement and
// AudienceAgreement (each in [0, 1], 0.5 is chance).
type ReasonReward struct {
	Reward            float64
	Collaborative     float64
	UserAgreement     float64
	AudienceAgreement float64
	Penalty           float64
	Failures          []VerifierFailure
	ChecksPassed      bool
}

// ScoreReasons returns the pipeline's reward of each reason (at most 64, texts of at most
// 4096 bytes). The daemon embeds the texts with MiniLM; its first call sets the reward model
// up, which can take a minute: give the call a long deadline.
// Errors: InvalidArgument for too many or too long texts, NotFound for an unknown user or
// item, FailedPrecondition when the daemon has no MiniLM.
func (c *Client) ScoreReasons(ctx context.Context, reasons []ReasonText) ([]ReasonReward, error) {
	request := &curecv1.ScoreReasonsRequest{Reasons: make([]*curecv1.ReasonText, len(reasons))}
	for i, r := range reasons {
		request.Reasons[i] = &curecv1.ReasonText{UserId: r.UserID, ItemId: r.ItemID, Text: r.Text}
	}
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.reward.ScoreReasons(ctx, request)
	if err != nil {
		return nil, wrapError(err, "/curec.v1.RewardService/ScoreReasons")
	}
	out := make([]ReasonReward, len(response.Rewards))
	for i, r := range response.Rewards {
		failures := make([]VerifierFailure, len(r.Failures))
		for j, f := range r.Failures {
			failures[j] = VerifierFailure{Check: f.Check, Detail: f.Detail, Text: f.Text, Penalty: f.Penalty}
		}
		out[i] = ReasonReward{Reward: r.Reward, Collaborative: r.Collaborative, UserAgreement: r.UserAgreement,
			AudienceAgreement: r.AudienceAgreement, Penalty: r.Penalty, Failures: failures, ChecksPassed: r.ChecksPassed}
	}
	return out, nil
}

// Embeddings is the answer of Embed: one unit-length vector per text, in request order.
type Embeddings struct {
	Vectors   [][]float32
	Dimension int
	Model     string
}

// Embed returns MiniLM (all-MiniLM-L6-v2) sentence embeddings of at most 256 non-empty
// texts of at most 4096 bytes each.
// Errors: InvalidArgument for an empty, too long or too large batch, FailedPrecondition when
// the daemon has no MiniLM.
func (c *Client) Embed(ctx context.Context, texts []string) (*Embeddings, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.reward.Embed(ctx, &curecv1.EmbedRequest{Texts: texts})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.RewardService/Embed")
	}
	out := &Embeddings{Vectors: make([][]float32, len(response.Embeddings)), Dimension: int(response.Dimension),
		Model: response.Model}
	for i, e := range response.Embeddings {
		out.Vectors[i] = e.Values
	}
	return out, nil
}
