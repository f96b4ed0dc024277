package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"

	"curecserve.local/client/curecv1"
)

// ---------------------------------------------------------------- generation

// ChatRole says who wrote a turn of a conversation.
type ChatRole int32

const (
	RoleUnspecified ChatRole = ChatRole(curecv1.ChatRole_CHAT_ROLE_UNSPECIFIED)
	RoleSystem      ChatRole = ChatRole(curecv1.ChatRole_CHAT_ROLE_SYSTEM)
	RoleUser        ChatRole = ChatRole(curecv1.ChatRole_CHAT_ROLE_USER)
	RoleAssistant   ChatRole = ChatRole(curecv1.ChatRole_CHAT_ROLE_ASSISTANT)
)

// String returns "system", "user" or "assistant" (as dataset files spell roles), or
// "unspecified".
func (r ChatRole) String() string {
	switch r {
	case RoleSystem:
		return "system"
	case RoleUser:
		return "user"
	case RoleAssistant:
		return "assistant"
	}
	return "unspecified"
}

// ParseChatRole accepts "user", "USER" or "CHAT_ROLE_USER" (likewise system and assistant).
func ParseChatRole(text string) (ChatRole, bool) {
	name := strings.ToUpper(strings.TrimSpace(text))
	if !strings.HasPrefix(name, "CHAT_ROLE_") {
		name = "CHAT_ROLE_" + name
	}
	value, ok := curecv1.ChatRole_value[name]
	if !ok || ChatRole(value) == RoleUnspecified {
		return RoleUnspecified, false
	}
	return ChatRole(value), true
}

// MarshalJSON writes the role as dataset files do: "system", "user" or "assistant".
func (r ChatRole) MarshalJSON() ([]byte, error) {
	if r != RoleSystem && r != RoleUser && r != RoleAssistant {
		return nil, fmt.Errorf("chat role %d is not system, user or assistant", int32(r))
	}
	return json.Marshal(r.String())
}

// UnmarshalJSON reads "system", "user" or "assistant".
func (r *ChatRole) UnmarshalJSON(data []byte) error {
	var text string
	if err := json.Unmarshal(data, &text); err != nil {
		return err
	}
	role, ok := ParseChatRole(text)
	if !ok {
		return fmt.Errorf("chat role %q is not system, user or assistant", text)
	}
	*r = role
	return nil
}

// ChatMessage is one turn of a conversation. As JSON it is {"role": "user", "content": "..."},
// the form of a dataset line's messages.
type ChatMessage struct {
	Role    ChatRole `json:"role"`
	Content string   `json:"content"`
}

// System, User and Assistant build a turn by that role.
func System(content string) ChatMessage { return ChatMessage{Role: RoleSystem, Content: content} }

// User builds a user turn.
func User(content string) ChatMessage { return ChatMessage{Role: RoleUser, Content: content} }

// Assistant builds an assistant turn.
func Assistant(content string) ChatMessage { return ChatMessage{Role: RoleAssistant, Content: content} }

// Input is what the model continues: a conversation (Chat) or a raw prompt (Prompt).
type Input struct {
	messages []ChatMessage
	prompt   string
	isPrompt bool
}

// Chat is a conversation; the model writes the next assistant turn (the conversation is
// rendered with the model's chat template). An empty conversation is InvalidArgument.
func Chat(messages ...ChatMessage) Input {
	return Input{messages: append([]ChatMessage(nil), messages...)}
}

// Prompt is raw prompt text, tokenized as given (special tokens such as <|im_start|> are
// recognised).
func Prompt(text string) Input { return Input{prompt: text, isPrompt: true} }

// FinishReason says why generation ended.
type FinishReason int32

const (
	FinishUnspecified FinishReason = FinishReason(curecv1.FinishReason_FINISH_REASON_UNSPECIFIED)
	// FinishStop: the model ended its turn, or the text reached a stop string.
	FinishStop FinishReason = FinishReason(curecv1.FinishReason_FINISH_REASON_STOP)
	// FinishLength: the maximum number of tokens was generated.
	FinishLength FinishReason = FinishReason(curecv1.FinishReason_FINISH_REASON_LENGTH)
	// FinishContext: the model's context is full.
	FinishContext FinishReason = FinishReason(curecv1.FinishReason_FINISH_REASON_CONTEXT)
)

// String returns "stop", "length", "context" or "unspecified".
func (f FinishReason) String() string {
	switch f {
	case FinishStop:
		return "stop"
	case FinishLength:
		return "length"
	case FinishContext:
		return "context"
	}
	return "unspecified"
}

// Generation is the result of Generate.
type Generation struct {
	// Text is the whole generated text (stop text excluded).
	Text             string
	FinishReason     FinishReason
	PromptTokens     uint32
	CompletionTokens uint32
	// ModelVersion is the model that generated it, e.g. "smollm2" or "models/support-bot/v2".
	ModelVersion string
}

// GenerateOption adjusts a Generate or GenerateStream call.
type GenerateOption func(*generateSettings)

type generateSettings struct {
	model, version string
	stop           []string
	sampling       curecv1.SamplingOptions
}

// WithModel chooses the model: "" or "smollm2" is the pretrained base (SmolLM2-135M-Instruct);
// a finetune job publishes others under its output name.
func WithModel(name string) GenerateOption { return func(s *generateSettings) { s.model = name } }

// WithModelVersion chooses the model's version, e.g. "v2" (default: the newest).
func WithModelVersion(version string) GenerateOption {
	return func(s *generateSettings) { s.version = version }
}

// WithStop ends generation when the text ends with one of these strings (at most 4, each 1
// to 64 bytes); the stop text is not returned. Repeated options add up.
func WithStop(stop ...string) GenerateOption {
	return func(s *generateSettings) { s.stop = append(s.stop, stop...) }
}

// WithTemperature sets the sampling temperature; 0 means greedy decoding (default 0.8).
func WithTemperature(t float32) GenerateOption {
	return func(s *generateSettings) { s.sampling.Temperature = &t }
}

// WithTopK samples from the k most likely tokens; 0 disables (default 40).
func WithTopK(k int32) GenerateOption { return func(s *generateSettings) { s.sampling.TopK = &k } }

// WithTopP samples from the smallest set of tokens whose probabilities reach p; 1 disables
// (default 0.95).
func WithTopP(p float32) GenerateOption { return func(s *generateSettings) { s.sampling.TopP = &p } }

// WithMaxTokens bounds the generated tokens, 1 to 512 (default 192, or less when the model's
// context is small).
func WithMaxTokens(n int32) GenerateOption {
	return func(s *generateSettings) { s.sampling.MaxTokens = n }
}

// WithSeed sets the sampling seed: the same request with the same seed gives the same text.
func WithSeed(seed uint64) GenerateOption {
	return func(s *generateSettings) { s.sampling.Seed = seed }
}

// WithRepetitionPenalty penalises tokens already generated, 1 to 2; 1 (the default) disables.
func WithRepetitionPenalty(p float32) GenerateOption {
	return func(s *generateSettings) { s.sampling.RepetitionPenalty = &p }
}

const generateMethod = "/curec.v1.GenerationService/Generate"

// Generate generates text with a served language model and returns it whole:
//
//	answer, err := c.Generate(ctx, client.Chat(client.System("You recommend films."),
//		client.User("Something like Heat?")), client.WithMaxTokens(64), client.WithSeed(1))
//	fmt.Println(answer.Text, answer.FinishReason, answer.CompletionTokens)
//
// The call has no deadline of its own (generation can take a while): bound it with ctx.
// Errors: NotFound for an unknown model or version; InvalidArgument for bad sampling
// options, an empty conversation or prompt, or a prompt longer than the model's context.
func (c *Client) Generate(ctx context.Context, input Input, opts ...GenerateOption) (*Generation, error) {
	return c.GenerateStream(ctx, input, nil, opts...)
}

// GenerateStream is Generate that also calls onText with each piece of text as it arrives
// (pieces that are empty, e.g. half of a multi-byte character, are left out); the pieces
// join to the returned Generation's Text. If onText returns an error, generation is
// cancelled and GenerateStream returns that error. onText may be nil.
func (c *Client) GenerateStream(ctx context.Context, input Input, onText func(text string) error, opts ...GenerateOption) (*Generation, error) {
	var s generateSettings
	for _, opt := range opts {
		opt(&s)
	}
	request := &curecv1.GenerateRequest{Model: s.model, Version: s.version, Stop: s.stop, Sampling: &s.sampling}
	if input.isPrompt {
		request.Input = &curecv1.GenerateRequest_Prompt{Prompt: input.prompt}
	} else {
		chat := &curecv1.ChatConversation{Messages: make([]*curecv1.ChatMessage, len(input.messages))}
		for i, m := range input.messages {
			chat.Messages[i] = &curecv1.ChatMessage{Role: curecv1.ChatRole(m.Role), Content: m.Content}
		}
		request.Input = &curecv1.GenerateRequest_Chat{Chat: chat}
	}
	if ctx == nil {
		ctx = context.Background()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the stream on the server when returning early
	stream, err := c.generation.Generate(ctx, request)
	if err != nil {
		return nil, wrapError(err, generateMethod)
	}
	var result *Generation
	for {
		message, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, wrapError(err, generateMethod)
		}
		if message.Final {
			result = &Generation{
				Text: message.FullText, FinishReason: FinishReason(message.FinishReason),
				PromptTokens: message.PromptTokens, CompletionTokens: message.CompletionTokens,
				ModelVersion: message.ModelVersion,
			}
			continue
		}
		if message.Text != "" && result == nil && onText != nil {
			if err := onText(message.Text); err != nil {
				return nil, err
			}
		}
	}
	if result == nil {
		return nil, &Error{Code: codes.Internal, Message: "the generation stream ended without its final message", Method: generateMethod}
	}
	return result, nil
}

// ---------------------------------------------------------------- datasets

// DatasetChunkBytes is how many bytes each UploadDataset message carries (the daemon takes
// at most 1 MiB).
const DatasetChunkBytes = 256 * 1024

// Dataset is one immutable version of an uploaded chat dataset.
type Dataset struct {
	Name string
	// Version is e.g. "v2"; a finetune job takes dataset=NAME (the newest) or NAME@vN.
	Version string
	// Examples counts the examples (non-blank lines).
	Examples uint64
	// Bytes is the size of the uploaded JSON Lines file.
	Bytes   uint64
	Created time.Time
}

// Ref returns "name@version", as a finetune job's dataset parameter takes it.
func (d Dataset) Ref() string { return d.Name + "@" + d.Version }

func datasetFrom(d *curecv1.Dataset) Dataset {
	return Dataset{Name: d.Name, Version: d.Version, Examples: d.Examples, Bytes: d.Bytes, Created: unixMS(d.CreatedUnixMs)}
}

// UploadDataset uploads a chat dataset for fine-tuning as a new version of name, reading
// the JSON Lines file from r and streaming it in chunks of DatasetChunkBytes (r is read to
// its end, never held whole). Each line is {"messages": [{"role": "system"|"user"|"assistant",
// "content": "..."}, ...]} with 2 to 64 turns, at least one user turn and an assistant turn
// last; EncodeExamples writes such lines. The name is letters, digits, '-', '_' and '.', 1
// to 64 characters, starting with a letter or digit. The call's deadline is the client's
// timeout when ctx has none.
//
// Errors: InvalidArgument naming the first bad line ("line 3: ...") or a bad name;
// ResourceExhausted past the daemon's upload size limit. A read error of r is returned as
// it is (wrapped with context), and cancels the upload. Nothing is stored unless the whole
// upload is valid.
func (c *Client) UploadDataset(ctx context.Context, name string, r io.Reader) (*Dataset, error) {
	const method = "/curec.v1.DatasetService/Upload"
	ctx, cancelDeadline := c.unary(ctx)
	defer cancelDeadline()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := c.datasets.Upload(ctx)
	if err != nil {
		return nil, wrapError(err, method)
	}
	header := &curecv1.UploadDatasetRequest{Part: &curecv1.UploadDatasetRequest_Header{Header: &curecv1.UploadDatasetHeader{Name: name}}}
	// Send reports io.EOF when the server has already ended the call (e.g. a bad line);
	// CloseAndRecv then returns its status.
	if err := stream.Send(header); err != nil && err != io.EOF {
		return nil, wrapError(err, method)
	}
	buffer := make([]byte, DatasetChunkBytes)
	for sendOK := true; sendOK; {
		n, readErr := io.ReadFull(r, buffer)
		if n > 0 {
			chunk := &curecv1.UploadDatasetRequest{Part: &curecv1.UploadDatasetRequest_Chunk{Chunk: append([]byte(nil), buffer[:n]...)}}
			if err := stream.Send(chunk); err == io.EOF {
				sendOK = false
			} else if err != nil {
				return nil, wrapError(err, method)
			}
		}
		if readErr == io.EOF || readErr == io.ErrUnexpectedEOF {
			break
		}
		if readErr != nil {
			cancel()
			return nil, fmt.Errorf("upload of dataset %q cancelled: reading the data: %w", name, readErr)
		}
	}
	d, err := stream.CloseAndRecv()
	if err != nil {
		return nil, wrapError(err, method)
	}
	out := datasetFrom(d)
	return &out, nil
}

// Datasets lists the uploaded dataset versions, grouped by name, oldest first; a non-empty
// name lists only that dataset's (NotFound if nothing was uploaded under it).
func (c *Client) Datasets(ctx context.Context, name string) ([]Dataset, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.datasets.List(ctx, &curecv1.ListDatasetsRequest{Name: name})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.DatasetService/List")
	}
	out := make([]Dataset, len(response.Datasets))
	for i, d := range response.Datasets {
		out[i] = datasetFrom(d)
	}
	return out, nil
}

// EncodeExamples returns the examples as a dataset file, one {"messages": [...]} line
// each, for UploadDataset (wrap it with bytes.NewReader). It fails for a role other than
// system, user or assistant; the daemon checks the rest.
func EncodeExamples(examples ...[]ChatMessage) ([]byte, error) {
	var out bytes.Buffer
	encoder := json.NewEncoder(&out)
	encoder.SetEscapeHTML(false)
	for i, messages := range examples {
		line := struct {
			Messages []ChatMessage `json:"messages"`
		}{messages}
		if err := encoder.Encode(line); err != nil {
			return nil, fmt.Errorf("example %d: %w", i+1, err)
		}
	}
	return out.Bytes(), nil
}
