package client_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	client "curecserve.local/client"
)

// The generation tests run the daemon's pretrained base model "smollm2"; a daemon that
// answers UNIMPLEMENTED for GenerationService.Generate fails them.

const generateTimeout = 300 * time.Second // a short generation on a busy 2-core machine

func generateContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), generateTimeout)
	t.Cleanup(cancel)
	return ctx
}

var filmChat = client.Chat(
	client.System("You are a helpful assistant who recommends films."),
	client.User("Name one good science fiction film and say why in one sentence."),
)

func TestGenerateStreamsPiecesThatJoinToTheText(t *testing.T) {
	c := dial(t)
	var pieces []string
	result, err := c.GenerateStream(generateContext(t), filmChat, func(text string) error {
		pieces = append(pieces, text)
		return nil
	}, client.WithMaxTokens(24), client.WithSeed(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(pieces) == 0 || strings.Join(pieces, "") != result.Text {
		t.Fatalf("pieces %q do not join to the text %q", pieces, result.Text)
	}
	if result.FinishReason != client.FinishStop && result.FinishReason != client.FinishLength {
		t.Fatalf("finish reason %v", result.FinishReason)
	}
	if result.PromptTokens == 0 || result.CompletionTokens == 0 || result.CompletionTokens > 24 {
		t.Fatalf("token counts: %+v", result)
	}
	if !strings.Contains(result.ModelVersion, "smollm2") {
		t.Fatalf("model version %q, want the base model smollm2", result.ModelVersion)
	}
}

func TestGenerateRespectsMaxTokensAndSeed(t *testing.T) {
	c := dial(t)
	ctx := generateContext(t)
	short, err := c.Generate(ctx, client.Prompt("Once upon a time, in a small village by the sea,"),
		client.WithModel("smollm2"), client.WithMaxTokens(5), client.WithSeed(3))
	if err != nil {
		t.Fatal(err)
	}
	lengthOK := short.FinishReason == client.FinishLength && short.CompletionTokens == 5
	if short.CompletionTokens > 5 || short.PromptTokens == 0 || !(lengthOK || short.FinishReason == client.FinishStop) {
		t.Fatalf("max tokens 5: %+v", short)
	}
	options := []client.GenerateOption{client.WithMaxTokens(20), client.WithTemperature(1), client.WithTopK(50),
		client.WithTopP(0.9), client.WithRepetitionPenalty(1.1), client.WithSeed(42)}
	first, err := c.Generate(ctx, filmChat, options...)
	if err != nil {
		t.Fatal(err)
	}
	second, err := c.Generate(ctx, filmChat, options...)
	if err != nil {
		t.Fatal(err)
	}
	if *first != *second {
		t.Fatalf("the same seed gave different results:\n%+v\n%+v", first, second)
	}
}

func TestGenerateCallbackErrorCancels(t *testing.T) {
	c := dial(t)
	stop := errors.New("enough")
	calls := 0
	_, err := c.GenerateStream(generateContext(t), filmChat, func(string) error {
		calls++
		return stop
	}, client.WithMaxTokens(64))
	if !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("got %v after %d calls, want the callback's error after 1", err, calls)
	}
	if _, err := c.Generate(generateContext(t), client.Prompt("Hello"), client.WithMaxTokens(2)); err != nil {
		t.Fatalf("the daemon stopped serving after a cancelled generation: %v", err)
	}
}

func TestGenerateErrors(t *testing.T) {
	c := dial(t)
	cases := []struct {
		name  string
		input client.Input
		opts  []client.GenerateOption
		want  codes.Code
	}{
		{"unknown model", filmChat, []client.GenerateOption{client.WithModel("no-such-model")}, codes.NotFound},
		{"unknown version", filmChat, []client.GenerateOption{client.WithModelVersion("v999")}, codes.NotFound},
		{"empty conversation", client.Chat(), nil, codes.InvalidArgument},
		{"empty prompt", client.Prompt(""), nil, codes.InvalidArgument},
		{"max tokens", filmChat, []client.GenerateOption{client.WithMaxTokens(100000)}, codes.InvalidArgument},
		{"five stops", filmChat, []client.GenerateOption{client.WithStop("a", "b", "c"), client.WithStop("d", "e")}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := c.Generate(generateContext(t), tc.input, tc.opts...)
			e := wantCode(t, err, tc.want)
			if e.Method != "/curec.v1.GenerationService/Generate" {
				t.Fatalf("method %q", e.Method)
			}
		})
	}
}

func TestChatRoles(t *testing.T) {
	for text, want := range map[string]client.ChatRole{"user": client.RoleUser, "SYSTEM": client.RoleSystem,
		"CHAT_ROLE_ASSISTANT": client.RoleAssistant} {
		if got, ok := client.ParseChatRole(text); !ok || got != want || got.String() != strings.ToLower(strings.TrimPrefix(strings.ToUpper(text), "CHAT_ROLE_")) {
			t.Fatalf("ParseChatRole(%q) = %v, %v", text, got, ok)
		}
	}
	if _, ok := client.ParseChatRole("robot"); ok {
		t.Fatal("robot is a role")
	}
	if _, ok := client.ParseChatRole("unspecified"); ok {
		t.Fatal("unspecified is a role")
	}
	if _, err := client.EncodeExamples([]client.ChatMessage{{Role: client.ChatRole(9), Content: "x"}}); err == nil {
		t.Fatal("EncodeExamples took role 9")
	}
	if client.FinishLength.String() != "length" || client.FinishStop.String() != "stop" {
		t.Fatal("finish reason names")
	}
}

// ---------------------------------------------------------------- datasets

func datasetLine(i int) string {
	return fmt.Sprintf(`{"messages": [{"role": "user", "content": "Why watch film %d?"}, {"role": "assistant", "content": "Because it is number %d. 😀"}]}`, i, i)
}

// chunkReader hands out at most n bytes per Read, like a slow pipe.
type chunkReader struct {
	r     io.Reader
	n     int
	reads int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	c.reads++
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

func versionsOf(t *testing.T, c *client.Client, name string) []string {
	t.Helper()
	list, err := c.Datasets(context.Background(), name)
	if client.Code(err) == codes.NotFound {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var versions []string
	for _, d := range list {
		versions = append(versions, d.Version)
	}
	return versions
}

func TestUploadDatasetAndList(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	var file bytes.Buffer
	for i := 0; i < 6000; i++ { // about 700 KB: three upload messages
		file.WriteString(datasetLine(i) + "\n")
	}
	size := file.Len()
	reader := &chunkReader{r: &file, n: 10000}
	stored, err := c.UploadDataset(ctx, "go-films", reader)
	if err != nil {
		t.Fatal(err)
	}
	if stored.Name != "go-films" || stored.Examples != 6000 || stored.Bytes != uint64(size) ||
		!strings.HasPrefix(stored.Version, "v") || stored.Created.IsZero() || stored.Ref() != "go-films@"+stored.Version {
		t.Fatalf("stored %+v (file of %d bytes)", stored, size)
	}
	if reader.reads < size/10000 {
		t.Fatalf("the reader was read %d times", reader.reads)
	}

	data, err := client.EncodeExamples(
		[]client.ChatMessage{client.System("You recommend films."), client.User("Like Heat?"), client.Assistant("Try Thief <1981> & more.")},
		[]client.ChatMessage{client.User("Naïve question: is Alien scary?"), client.Assistant("Very.")},
	)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(data, []byte(`"role":"system"`)) || !bytes.Contains(data, []byte("<1981> &")) {
		t.Fatalf("encoded examples: %s", data)
	}
	again, err := c.UploadDataset(ctx, "go-films", bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if again.Examples != 2 || again.Bytes != uint64(len(data)) {
		t.Fatalf("second upload %+v", again)
	}
	if versions := versionsOf(t, c, "go-films"); len(versions) < 2 ||
		versions[len(versions)-2] != stored.Version || versions[len(versions)-1] != again.Version {
		t.Fatalf("versions %v, want ... %s %s", versions, stored.Version, again.Version)
	}
	all, err := c.Datasets(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range all {
		found = found || d.Name == "go-films"
	}
	if !found {
		t.Fatalf("go-films not in %+v", all)
	}
}

func TestUploadDatasetErrors(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	bad := datasetLine(1) + "\n" + `{"messages": [{"role": "user", "content": "hi"}]}` + "\n"
	e := wantCode(t, mustFail(c.UploadDataset(ctx, "go-bad", strings.NewReader(bad))), codes.InvalidArgument)
	if !strings.Contains(e.Message, "line 2:") || e.Method != "/curec.v1.DatasetService/Upload" {
		t.Fatalf("error %v", e)
	}
	e = wantCode(t, mustFail(c.UploadDataset(ctx, "../escape", strings.NewReader(datasetLine(1)))), codes.InvalidArgument)
	if !strings.Contains(e.Message, "dataset name") {
		t.Fatalf("error %v", e)
	}

	// A failing reader cancels the upload: its error comes back and nothing is stored.
	broken := errors.New("disk on fire")
	_, err := c.UploadDataset(ctx, "go-bad", io.MultiReader(strings.NewReader(datasetLine(1)+"\n"), &failingReader{broken}))
	if !errors.Is(err, broken) {
		t.Fatalf("got %v, want the reader's error", err)
	}
	if versions := versionsOf(t, c, "go-bad"); len(versions) != 0 {
		t.Fatalf("bad uploads stored versions %v", versions)
	}
	_, err = c.Datasets(ctx, "go-never-uploaded")
	wantCode(t, err, codes.NotFound)
}

type failingReader struct{ err error }

func (f *failingReader) Read([]byte) (int, error) { return 0, f.err }

func mustFail(_ *client.Dataset, err error) error { return err }
