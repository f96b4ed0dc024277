package client_test

import (
	"context"
	"errors"
	"io"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	client "curecserve.local/client"
)

const jobTimeout = 240 * time.Second // a small job on a busy 2-core machine

func dial(t *testing.T) *client.Client {
	t.Helper()
	c, err := client.Dial(daemonAddress, client.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func wantCode(t *testing.T, err error, want codes.Code) *client.Error {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", client.StatusName(want))
	}
	var e *client.Error
	if !errors.As(err, &e) {
		t.Fatalf("error %v (%T) is not a *client.Error", err, err)
	}
	if e.Code != want || status.Code(err) != want || client.Code(err) != want {
		t.Fatalf("got %v, want %s", err, client.StatusName(want))
	}
	if e.Message == "" || e.Method == "" {
		t.Fatalf("error without message or method: %#v", e)
	}
	return e
}

func TestRecommendReturnsKDistinctItemsBestFirst(t *testing.T) {
	c := dial(t)
	recs, err := c.Recommend(context.Background(), "196", 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs.Items) != 10 {
		t.Fatalf("got %d items, want 10", len(recs.Items))
	}
	seen := map[string]bool{}
	for i, item := range recs.Items {
		if seen[item.ItemID] || item.Title == "" {
			t.Fatalf("item %d: %+v (duplicate or untitled)", i, item)
		}
		seen[item.ItemID] = true
		if i > 0 && item.Score > recs.Items[i-1].Score {
			t.Fatalf("scores not descending at %d: %+v", i, recs.Items)
		}
	}
	if !strings.HasPrefix(recs.ServedBy, "bpr@") {
		t.Fatalf("served by %q, want bpr@...", recs.ServedBy)
	}
}

func TestRecommendOptions(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	unseen, err := c.Recommend(ctx, "196", 200)
	if err != nil {
		t.Fatal(err)
	}
	all, err := c.Recommend(ctx, "196", 200, client.IncludeSeen())
	if err != nil {
		t.Fatal(err)
	}
	a, b := append([]string(nil), unseen.ItemIDs()...), append([]string(nil), all.ItemIDs()...)
	sort.Strings(a)
	sort.Strings(b)
	if strings.Join(a, ",") == strings.Join(b, ",") {
		t.Fatal("IncludeSeen changed nothing for a user with training items")
	}
	pop, err := c.Recommend(ctx, "196", 5, client.WithPlugin("popularity"))
	if err != nil {
		t.Fatal(err)
	}
	if len(pop.Items) != 5 || !strings.HasPrefix(pop.ServedBy, "popularity@") {
		t.Fatalf("popularity: %+v", pop)
	}
}

func TestScoreAgreesWithRecommend(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	recs, err := c.Recommend(ctx, "1", 5)
	if err != nil {
		t.Fatal(err)
	}
	scores, err := c.Score(ctx, "1", recs.ItemIDs())
	if err != nil {
		t.Fatal(err)
	}
	if len(scores.Scores) != 5 {
		t.Fatalf("got %d scores", len(scores.Scores))
	}
	byItem := scores.ByItem()
	for _, item := range recs.Items {
		if d := byItem[item.ItemID] - item.Score; d > 1e-4 || d < -1e-4 {
			t.Fatalf("item %s: Score %v, Recommend %v", item.ItemID, byItem[item.ItemID], item.Score)
		}
	}
}

func TestErrorsCarryStatusAndMessage(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	_, err := c.Recommend(ctx, "no-such-user", 10)
	e := wantCode(t, err, codes.NotFound)
	if !strings.Contains(e.Message, "no-such-user") || !strings.HasPrefix(err.Error(), "NOT_FOUND: ") {
		t.Fatalf("message: %v", err)
	}
	if !errors.Is(err, &client.Error{Code: codes.NotFound}) {
		t.Fatal("errors.Is by code failed")
	}
	_, err = c.Score(ctx, "196", []string{"242", "no-such-item"})
	wantCode(t, err, codes.NotFound)
	_, err = c.Recommend(ctx, "196", 0)
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.Recommend(ctx, "196", 10, client.WithPlugin("no-such-plugin"))
	wantCode(t, err, codes.NotFound)
}

func TestUnreachableDaemonIsUnavailable(t *testing.T) {
	c, err := client.Dial("127.0.0.1:1", client.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, err = c.Recommend(context.Background(), "196", 1)
	wantCode(t, err, codes.Unavailable)
}

func TestReward(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	plugins, err := c.Plugins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reward := plugins.Get("reward")
	if reward == nil || reward.Kind != client.PluginKindRewardModel || reward.ReasonEmbeddingDim == 0 {
		t.Fatalf("reward plugin: %+v", reward)
	}
	embedding := make([]float32, reward.ReasonEmbeddingDim)
	for i := range embedding {
		embedding[i] = 0.05
	}
	rewards, err := c.Reward(ctx, []client.RewardTriple{
		{UserID: "196", ItemID: "242", ReasonEmbedding: embedding},
		{UserID: "1", ItemID: "1", ReasonEmbedding: embedding},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rewards.Rewards) != 2 || !strings.HasPrefix(rewards.ServedBy, "reward@") {
		t.Fatalf("rewards: %+v", rewards)
	}
	_, err = c.Reward(ctx, []client.RewardTriple{{UserID: "196", ItemID: "242", ReasonEmbedding: embedding[1:]}})
	wantCode(t, err, codes.InvalidArgument)
}

func TestPluginsLoadReloadUnload(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	list, err := c.Plugins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"bpr", "popularity", "reward"} {
		if list.Get(name) == nil {
			t.Fatalf("plugin %s missing from %+v", name, list.Plugins)
		}
	}
	if bpr := list.Get("bpr"); bpr.Kind != client.PluginKindRecommender || !bpr.Trained {
		t.Fatalf("bpr: %+v", bpr)
	}
	if len(list.AvailableLibraries) == 0 {
		t.Fatal("no available libraries")
	}

	const name = "bpr-go-client-test"
	status, err := c.LoadPlugin(ctx, name, "CURecBPR", []byte(`{"factors": 8, "epochs": 2}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if status.Name != name || !status.Trained || status.JobID == "" {
		t.Fatalf("loaded: %+v", status)
	}
	recs, err := c.Recommend(ctx, "196", 3, client.WithPlugin(name))
	if err != nil || !strings.HasPrefix(recs.ServedBy, name+"@") {
		t.Fatalf("recommend with the new plugin: %+v, %v", recs, err)
	}
	reloaded, err := c.ReloadPlugin(ctx, name, "", []byte(`{"factors": 8, "epochs": 3}`))
	if err != nil {
		t.Fatal(err)
	}
	if reloaded.Generation != status.Generation+1 {
		t.Fatalf("generation %d after reload, was %d", reloaded.Generation, status.Generation)
	}
	_, err = c.LoadPlugin(ctx, name, "CURecBPR", nil, false)
	wantCode(t, err, codes.AlreadyExists)
	// Libraries load only from the daemon's plugin directories, by file name.
	_, err = c.LoadPlugin(ctx, name+"-path", "/tmp/libCURecBPR.so", nil, false)
	wantCode(t, err, codes.InvalidArgument)
	if err := c.UnloadPlugin(ctx, name); err != nil {
		t.Fatal(err)
	}
	wantCode(t, c.UnloadPlugin(ctx, name), codes.NotFound)
	_, err = c.Recommend(ctx, "196", 3, client.WithPlugin(name))
	wantCode(t, err, codes.NotFound)
}

func TestTrainJobWatchAndServe(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	job, err := c.SubmitJob(ctx, "train", map[string]string{
		"library": "CURecBPR", "config": `{"factors":16,"epochs":5}`, "name": "bpr-go-job", "serve": "true",
	})
	failIfUnimplemented(t, err, "curec.v1.JobService")
	if err != nil {
		t.Fatal(err)
	}
	if job.ID == "" || job.Kind != "train" || (job.State != client.JobQueued && job.State != client.JobRunning) {
		t.Fatalf("submitted: %+v", job)
	}
	next := c.Watch(ctx, job.ID)
	var events []*client.JobEvent
	for {
		event, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("watch: %v", err)
		}
		events = append(events, event)
	}
	if _, err := next(); err != io.EOF {
		t.Fatalf("next after the end: %v, want io.EOF", err)
	}
	if len(events) == 0 {
		t.Fatal("no events")
	}
	last := events[len(events)-1]
	if !last.Final || last.State != client.JobSucceeded {
		t.Fatalf("last event: %+v", last)
	}
	maxStep := uint64(0)
	for _, e := range events[:len(events)-1] {
		if e.Final || e.JobID != job.ID {
			t.Fatalf("event: %+v", e)
		}
		if e.Stage == "train" && e.Step > maxStep {
			maxStep = e.Step
		}
	}
	if maxStep != 5 {
		t.Fatalf("train steps reached %d, want 5", maxStep)
	}
	done, err := c.GetJob(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	if done.State != client.JobSucceeded || !done.State.Finished() || !strings.HasPrefix(done.Artifact, "models/bpr-go-job/") ||
		done.Created.IsZero() || done.Finished.Before(done.Started) {
		t.Fatalf("done: %+v", done)
	}
	recs, err := c.Recommend(ctx, "196", 5, client.WithPlugin("bpr-go-job"))
	if err != nil || len(recs.Items) != 5 {
		t.Fatalf("recommend with the served model: %+v, %v", recs, err)
	}

	models, err := c.Models(ctx, "bpr-go-job")
	failIfUnimplemented(t, err, "curec.v1.ModelService")
	if err != nil {
		t.Fatal(err)
	}
	if len(models) != 1 || len(models[0].Versions) == 0 || models[0].Versions[0].Metadata["plugin"] != "bpr" {
		t.Fatalf("models: %+v", models)
	}
}

func TestEvaluateJobMetrics(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	job, err := c.SubmitJob(ctx, "evaluate", map[string]string{"plugin": "bpr", "split": "validation", "cutoffs": "10,20"})
	failIfUnimplemented(t, err, "curec.v1.JobService")
	if err != nil {
		t.Fatal(err)
	}
	events, result := c.WatchChannel(ctx, job.ID)
	count := 0
	var last *client.JobEvent
	for event := range events {
		count++
		last = event
	}
	if err := result(); err != nil {
		t.Fatal(err)
	}
	if count == 0 || !last.Final || last.State != client.JobSucceeded {
		t.Fatalf("%d events, last %+v", count, last)
	}
	done, err := c.GetJob(ctx, job.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, metric := range []string{"recall@10", "ndcg@10", "recall@20", "ndcg@20"} {
		if v := done.Metrics[metric]; v <= 0 || v > 1 {
			t.Fatalf("%s = %v in %v", metric, v, done.Metrics)
		}
	}

	jobs, err := c.ListJobs(ctx, client.JobFilter{Kind: "evaluate", State: client.JobSucceeded})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) == 0 || jobs[0].ID != job.ID {
		t.Fatalf("ListJobs newest first: %+v", jobs)
	}
	for _, j := range jobs {
		if j.Kind != "evaluate" || j.State != client.JobSucceeded {
			t.Fatalf("filter ignored: %+v", j)
		}
	}
	if one, err := c.ListJobs(ctx, client.JobFilter{Limit: 1}); err != nil || len(one) != 1 {
		t.Fatalf("limit 1: %d jobs, %v", len(one), err)
	}
}

func TestCancelJob(t *testing.T) {
	c := dial(t)
	ctx, cancel := context.WithTimeout(context.Background(), jobTimeout)
	defer cancel()
	job, err := c.SubmitJob(ctx, "train", map[string]string{
		"library": "CURecBPR", "config": `{"factors":32,"epochs":100000}`, "name": "bpr-go-cancelled",
	})
	failIfUnimplemented(t, err, "curec.v1.JobService")
	if err != nil {
		t.Fatal(err)
	}
	next := c.Watch(ctx, job.ID)
	for {
		event, err := next()
		if err != nil {
			t.Fatalf("watch before cancelling: %v", err)
		}
		if event.Final {
			t.Fatalf("job ended before it could be cancelled: %+v", event)
		}
		if event.State == client.JobRunning && event.Stage == "train" && event.Step >= 1 {
			break
		}
	}
	if _, err := c.CancelJob(ctx, job.ID); err != nil {
		t.Fatal(err)
	}
	var last *client.JobEvent
	for {
		event, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		last = event
	}
	if last == nil || last.State != client.JobCancelled {
		t.Fatalf("last event after cancel: %+v", last)
	}
	_, err = c.CancelJob(ctx, job.ID)
	wantCode(t, err, codes.FailedPrecondition)
}

func TestJobErrors(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	_, err := c.SubmitJob(ctx, "no-such-kind", nil)
	failIfUnimplemented(t, err, "curec.v1.JobService")
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.SubmitJob(ctx, "train", map[string]string{"serve": "maybe", "library": "CURecBPR"})
	wantCode(t, err, codes.InvalidArgument)
	_, err = c.GetJob(ctx, "job-none")
	wantCode(t, err, codes.NotFound)
	_, err = c.CancelJob(ctx, "job-none")
	wantCode(t, err, codes.NotFound)
	_, err = c.Watch(ctx, "job-none")()
	wantCode(t, err, codes.NotFound)
}

func TestJobStateNames(t *testing.T) {
	if s, ok := client.ParseJobState("running"); !ok || s != client.JobRunning || s.String() != "running" {
		t.Fatalf("ParseJobState(running) = %v, %v", s, ok)
	}
	if s, ok := client.ParseJobState("JOB_STATE_CANCELLED"); !ok || !s.Finished() {
		t.Fatalf("ParseJobState(JOB_STATE_CANCELLED) = %v, %v", s, ok)
	}
	if _, ok := client.ParseJobState("sleeping"); ok {
		t.Fatal("ParseJobState accepted sleeping")
	}
}

func TestModels(t *testing.T) {
	c := dial(t)
	models, err := c.Models(context.Background(), "")
	failIfUnimplemented(t, err, "curec.v1.ModelService")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]client.Model{}
	for _, m := range models {
		names[m.Name] = m
	}
	for _, name := range []string{"bpr", "popularity", "reward"} {
		if len(names[name].Versions) == 0 {
			t.Fatalf("model %s missing or without versions: %+v", name, models)
		}
	}
	_, err = c.Models(context.Background(), "no-such-model")
	wantCode(t, err, codes.NotFound)
}

func TestRecommendCommand(t *testing.T) {
	binary := filepath.Join(t.TempDir(), "curec-recommend")
	build := exec.Command("go", "build", "-o", binary, "./cmd/curec-recommend")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(binary, "--address", daemonAddress, "--user", "196", "--k", "3").Output()
	if err != nil {
		t.Fatalf("curec-recommend: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %q", out)
	}
	for _, line := range lines {
		if fields := strings.Split(line, "\t"); len(fields) != 3 || fields[0] == "" || fields[2] == "" {
			t.Fatalf("line %q: want item id, score, title", line)
		}
	}

	cmd := exec.Command(binary, "--address", daemonAddress, "--user", "no-such-user")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 {
		t.Fatalf("unknown user: %v, want exit status 1", err)
	}
	if !strings.Contains(stderr.String(), "NOT_FOUND") || !strings.Contains(stderr.String(), "no-such-user") {
		t.Fatalf("stderr %q: want the status and the server's message", stderr.String())
	}
}

func TestReport(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	report, err := c.Report(ctx, "", "")
	failIfUnimplemented(t, err, "curec.v1.ModelService/GetReport")
	if err == nil {
		// A daemon given with CURECD_ADDR may have run a pipeline already.
		if report.Name != "report" || report.Version == "" || report.Markdown == "" || string(report.Files["report.md"]) != report.Markdown {
			t.Fatalf("report %s/%s: want report.md among %d files", report.Name, report.Version, len(report.Files))
		}
	} else {
		e := wantCode(t, err, codes.NotFound)
		if !strings.Contains(e.Message, "pipeline") {
			t.Fatalf("message %q: want a hint at the pipeline job", e.Message)
		}
	}
	_, err = c.Report(ctx, "no-such-report", "")
	wantCode(t, err, codes.NotFound)
	_, err = c.Report(ctx, "", "v999999")
	wantCode(t, err, codes.NotFound)
	_, err = c.Report(ctx, "../bpr", "")
	wantCode(t, err, codes.InvalidArgument)
}

func TestRecommendReasonTableBeforeAnyPipeline(t *testing.T) {
	c := dial(t)
	ctx := context.Background()
	if _, err := c.Report(ctx, "", ""); err == nil {
		// Only a daemon given with CURECD_ADDR can have run a pipeline; the one these tests
		// start has not, so this case then has nothing to check.
		t.Skip("the daemon has run a pipeline: it has a reason table")
	}
	_, err := c.Recommend(ctx, "196", 3, client.WithReasonSource(client.ReasonTable))
	e := wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(e.Message, "reason table") {
		t.Fatalf("message %q: want it to name the missing reason table", e.Message)
	}
	for source, name := range map[client.ReasonSource]string{client.ReasonAuto: "auto", client.ReasonTable: "table", client.ReasonGenerate: "generate"} {
		if source.String() != name {
			t.Fatalf("%d.String() = %q, want %q", source, source.String(), name)
		}
	}
}
