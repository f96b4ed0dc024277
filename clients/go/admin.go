package client

import (
	"context"
	"io"
	"strings"
	"time"

	"curecserve.local/client/curecv1"
)

// ---------------------------------------------------------------- plugins

// PluginKind says what a plugin instance does.
type PluginKind int32

const (
	PluginKindUnspecified PluginKind = PluginKind(curecv1.PluginKind_PLUGIN_KIND_UNSPECIFIED)
	PluginKindRecommender PluginKind = PluginKind(curecv1.PluginKind_PLUGIN_KIND_RECOMMENDER)
	PluginKindRewardModel PluginKind = PluginKind(curecv1.PluginKind_PLUGIN_KIND_REWARD_MODEL)
)

func (k PluginKind) String() string {
	switch k {
	case PluginKindRecommender:
		return "recommender"
	case PluginKindRewardModel:
		return "reward-model"
	}
	return "unspecified"
}

// PluginStatus is a loaded plugin instance.
type PluginStatus struct {
	// Name is the instance name, unique in the daemon (e.g. "bpr").
	Name          string
	PluginName    string
	PluginVersion string
	Kind          PluginKind
	// Library is the shared library it was loaded from.
	Library string
	Trained bool
	// Generation increases by one on every reload of this instance name.
	Generation         uint64
	ItemFeatureDim     uint32
	ReasonEmbeddingDim uint32
	// JobID is the train job that trained it when loading had to train (else empty).
	JobID string
}

func pluginStatusFrom(p *curecv1.PluginStatus) *PluginStatus {
	return &PluginStatus{
		Name: p.Name, PluginName: p.PluginName, PluginVersion: p.PluginVersion, Kind: PluginKind(p.Kind),
		Library: p.Library, Trained: p.Trained, Generation: p.Generation,
		ItemFeatureDim: p.ItemFeatureDim, ReasonEmbeddingDim: p.ReasonEmbeddingDim, JobID: p.JobId,
	}
}

// PluginList is the answer of Plugins.
type PluginList struct {
	Plugins []*PluginStatus
	// AvailableLibraries are the file names of the shared libraries in the plugin
	// directories that export the CURec ABI (LoadPlugin takes one of them).
	AvailableLibraries []string
}

// Get returns the instance called name, or nil.
func (l *PluginList) Get(name string) *PluginStatus {
	for _, p := range l.Plugins {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Plugins lists the loaded plugin instances and the libraries available to load.
func (c *Client) Plugins(ctx context.Context) (*PluginList, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.plugins.List(ctx, &curecv1.ListPluginsRequest{})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.PluginService/List")
	}
	out := &PluginList{AvailableLibraries: response.AvailableLibraries}
	for _, p := range response.Plugins {
		out.Plugins = append(out.Plugins, pluginStatusFrom(p))
	}
	return out, nil
}

// LoadPlugin loads a new instance name from library (a file name in the daemon's plugin
// directories such as "libCURecBPR.so", or a library name such as "CURecBPR"; never a
// path) with a plugin-defined config (JSON for the bundled Swift plugins; nil for the
// defaults). With train, unless a saved artifact can be loaded, it is trained on the
// daemon's dataset as a train job that the call waits for (and cancels if ctx ends).
func (c *Client) LoadPlugin(ctx context.Context, name, library string, config []byte, train bool) (*PluginStatus, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	p, err := c.plugins.Load(ctx, &curecv1.LoadPluginRequest{Name: name, Library: library, Config: config, Train: train})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.PluginService/Load")
	}
	return pluginStatusFrom(p), nil
}

// ReloadPlugin hot-reloads instance name: a new instance is built beside the serving one
// and swapped in atomically; on failure the old one keeps serving. An empty library re-reads
// the same file; a nil config keeps the current one.
func (c *Client) ReloadPlugin(ctx context.Context, name, library string, config []byte) (*PluginStatus, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	request := &curecv1.ReloadPluginRequest{Name: name, Library: library}
	if config != nil {
		request.Config = config
	}
	p, err := c.plugins.Reload(ctx, request)
	if err != nil {
		return nil, wrapError(err, "/curec.v1.PluginService/Reload")
	}
	return pluginStatusFrom(p), nil
}

// UnloadPlugin unloads instance name once its calls in flight finish.
func (c *Client) UnloadPlugin(ctx context.Context, name string) error {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	_, err := c.plugins.Unload(ctx, &curecv1.UnloadPluginRequest{Name: name})
	return wrapError(err, "/curec.v1.PluginService/Unload")
}

// ---------------------------------------------------------------- jobs

// JobState is the life cycle of a job.
type JobState int32

const (
	JobStateUnspecified JobState = JobState(curecv1.JobState_JOB_STATE_UNSPECIFIED)
	JobQueued           JobState = JobState(curecv1.JobState_JOB_STATE_QUEUED)
	JobRunning          JobState = JobState(curecv1.JobState_JOB_STATE_RUNNING)
	JobSucceeded        JobState = JobState(curecv1.JobState_JOB_STATE_SUCCEEDED)
	JobFailed           JobState = JobState(curecv1.JobState_JOB_STATE_FAILED)
	JobCancelled        JobState = JobState(curecv1.JobState_JOB_STATE_CANCELLED)
)

// String returns the state in lower case, e.g. "running".
func (s JobState) String() string {
	name, ok := curecv1.JobState_name[int32(s)]
	if !ok {
		return "unspecified"
	}
	return strings.ToLower(strings.TrimPrefix(name, "JOB_STATE_"))
}

// Finished reports whether the job has ended (succeeded, failed or cancelled).
func (s JobState) Finished() bool {
	return s == JobSucceeded || s == JobFailed || s == JobCancelled
}

// ParseJobState accepts "running", "RUNNING" or "JOB_STATE_RUNNING".
func ParseJobState(text string) (JobState, bool) {
	name := strings.ToUpper(strings.TrimSpace(text))
	if !strings.HasPrefix(name, "JOB_STATE_") {
		name = "JOB_STATE_" + name
	}
	value, ok := curecv1.JobState_value[name]
	return JobState(value), ok
}

func unixMS(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

// Job is a job as the daemon last reported it. Times are zero until reached.
type Job struct {
	ID         string
	Kind       string
	Parameters map[string]string
	State      JobState
	// Stage is the current stage (e.g. "train"); Step and Total are the progress within it.
	Stage   string
	Step    uint64
	Total   uint64
	Metrics map[string]float64
	// Error says why the job failed, if it did.
	Error    string
	Created  time.Time
	Started  time.Time
	Finished time.Time
	// Attempts counts starts (more than 1 after a restart resumed the job).
	Attempts uint32
	// Artifact is the model version the job produced, e.g. "models/bpr/v3".
	Artifact string
}

func jobFrom(j *curecv1.Job) *Job {
	return &Job{
		ID: j.Id, Kind: j.Kind, Parameters: j.Parameters, State: JobState(j.State),
		Stage: j.Stage, Step: j.Step, Total: j.Total, Metrics: j.Metrics, Error: j.Error,
		Created: unixMS(j.CreatedUnixMs), Started: unixMS(j.StartedUnixMs), Finished: unixMS(j.FinishedUnixMs),
		Attempts: j.Attempts, Artifact: j.Artifact,
	}
}

// JobEvent is one step of a job's progress, as streamed by Watch.
type JobEvent struct {
	JobID   string
	State   JobState
	Stage   string
	Step    uint64
	Total   uint64
	Metrics map[string]float64
	// LogLine is set when the event carries a log line.
	LogLine string
	Time    time.Time
	// Final is set on the last event of the stream: the job has ended.
	Final bool
	Error string
}

func jobEventFrom(e *curecv1.JobEvent) *JobEvent {
	return &JobEvent{
		JobID: e.JobId, State: JobState(e.State), Stage: e.Stage, Step: e.Step, Total: e.Total,
		Metrics: e.Metrics, LogLine: e.LogLine, Time: unixMS(e.TimeUnixMs), Final: e.Final, Error: e.Error,
	}
}

// SubmitJob queues a job of kind ("train" or "evaluate") and returns it. Parameters are
// strings, e.g. for train: library ("CURecBPR"), config (JSON), name, serve ("true"); for
// evaluate: plugin, split ("validation" or "test"), cutoffs ("10,20").
// Errors: InvalidArgument for an unknown kind or bad parameters, ResourceExhausted when
// the queue is full.
func (c *Client) SubmitJob(ctx context.Context, kind string, parameters map[string]string) (*Job, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	j, err := c.jobs.Submit(ctx, &curecv1.SubmitJobRequest{Kind: kind, Parameters: parameters})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.JobService/Submit")
	}
	return jobFrom(j), nil
}

// GetJob returns the job's current state (NotFound for an unknown id).
func (c *Client) GetJob(ctx context.Context, id string) (*Job, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	j, err := c.jobs.Get(ctx, &curecv1.GetJobRequest{Id: id})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.JobService/Get")
	}
	return jobFrom(j), nil
}

// JobFilter narrows ListJobs; the zero value lists up to 100 jobs of any state and kind.
type JobFilter struct {
	State JobState
	Kind  string
	Limit int
}

// ListJobs returns jobs, newest first.
func (c *Client) ListJobs(ctx context.Context, filter JobFilter) ([]*Job, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	limit := filter.Limit
	if limit <= 0 {
		limit = 100
	}
	// Pages of up to 1000 jobs (the daemon's largest page) until limit or the last page.
	var jobs []*Job
	token := ""
	for len(jobs) < limit {
		page := limit - len(jobs)
		if page > 1000 {
			page = 1000
		}
		response, err := c.jobs.List(ctx, &curecv1.ListJobsRequest{
			State: curecv1.JobState(filter.State), Kind: filter.Kind, PageSize: uint32(page), PageToken: token,
		})
		if err != nil {
			return nil, wrapError(err, "/curec.v1.JobService/List")
		}
		for _, j := range response.Jobs {
			jobs = append(jobs, jobFrom(j))
		}
		token = response.NextPageToken
		if token == "" {
			break
		}
	}
	return jobs, nil
}

// CancelJob stops a queued or running job at its next step and returns it.
// Errors: FailedPrecondition if it has already ended, NotFound for an unknown id.
func (c *Client) CancelJob(ctx context.Context, id string) (*Job, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	j, err := c.jobs.Cancel(ctx, &curecv1.CancelJobRequest{Id: id})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.JobService/Cancel")
	}
	return jobFrom(j), nil
}

// Watch streams the job's progress: its current state first, then every change, ending
// after the event with Final set. It returns an iterator: each call of next returns the
// following event, io.EOF once the stream has ended, or an *Error (e.g. NotFound for an
// unknown id). Cancel ctx to stop watching early; the stream has no deadline of its own.
//
//	next := c.Watch(ctx, job.ID)
//	for {
//		event, err := next()
//		if err == io.EOF { break }
//		if err != nil { return err }
//		fmt.Println(event.State, event.Stage, event.Step, event.Total)
//	}
func (c *Client) Watch(ctx context.Context, id string) (next func() (*JobEvent, error)) {
	const method = "/curec.v1.JobService/Watch"
	stream, err := c.jobs.Watch(ctx, &curecv1.WatchJobRequest{Id: id})
	done := false
	return func() (*JobEvent, error) {
		if err != nil {
			return nil, err
		}
		if done {
			return nil, io.EOF
		}
		message, recvErr := stream.Recv()
		if recvErr == io.EOF {
			done = true
			return nil, io.EOF
		}
		if recvErr != nil {
			err = wrapError(recvErr, method)
			return nil, err
		}
		event := jobEventFrom(message)
		if event.Final {
			done = true
		}
		return event, nil
	}
}

// WatchChannel is Watch as a channel: it delivers every event and is closed after the
// final one or on an error, which the returned function reports afterwards (nil after a
// normal end). Cancel ctx to stop early; the channel is then closed too.
func (c *Client) WatchChannel(ctx context.Context, id string) (<-chan *JobEvent, func() error) {
	events := make(chan *JobEvent)
	var result error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer close(events)
		next := c.Watch(ctx, id)
		for {
			event, err := next()
			if err == io.EOF {
				return
			}
			if err != nil {
				result = err
				return
			}
			select {
			case events <- event:
			case <-ctx.Done():
				result = wrapError(ctx.Err(), "/curec.v1.JobService/Watch")
				return
			}
		}
	}()
	return events, func() error { <-finished; return result }
}

// WaitJob watches the job until it ends and returns its final state. onEvent, if not nil,
// sees every event. Bound the wait with ctx.
func (c *Client) WaitJob(ctx context.Context, id string, onEvent func(*JobEvent)) (*Job, error) {
	next := c.Watch(ctx, id)
	for {
		event, err := next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		if onEvent != nil {
			onEvent(event)
		}
	}
	return c.GetJob(ctx, id)
}

// ---------------------------------------------------------------- models

// ModelVersion is one immutable trained version, e.g. "v3", and its metadata.json.
type ModelVersion struct {
	Version  string
	Metadata map[string]string
}

// Model is a model name in the artifact store and its versions.
type Model struct {
	Name     string
	Versions []ModelVersion
}

// Models lists the trained models and their versions; a non-empty name lists only that
// one (NotFound if there is none).
func (c *Client) Models(ctx context.Context, name string) ([]Model, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.models.List(ctx, &curecv1.ListModelsRequest{Name: name})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.ModelService/List")
	}
	models := make([]Model, len(response.Models))
	for i, m := range response.Models {
		models[i].Name = m.Name
		for _, v := range m.Versions {
			models[i].Versions = append(models[i].Versions, ModelVersion{Version: v.Version, Metadata: v.Metadata})
		}
	}
	return models, nil
}

// Report is a report artifact, e.g. the one the pipeline job writes.
type Report struct {
	Name    string
	Version string
	// Markdown is report.md.
	Markdown string
	// Files holds every file of the report by name (report.md, the SVG charts,
	// results.json, ...).
	Files map[string][]byte
	// MediaTypes holds each file's media type by name, e.g. "image/svg+xml".
	MediaTypes map[string]string
	// Metadata is the version's metadata.json.
	Metadata map[string]string
}

// Report returns a report artifact: name "" means "report" (the pipeline's), version ""
// the newest. Errors: NotFound when no such report exists yet (no pipeline job has
// finished) or the version is unknown.
func (c *Client) Report(ctx context.Context, name, version string) (*Report, error) {
	ctx, cancel := c.unary(ctx)
	defer cancel()
	response, err := c.models.GetReport(ctx, &curecv1.GetReportRequest{Name: name, Version: version})
	if err != nil {
		return nil, wrapError(err, "/curec.v1.ModelService/GetReport")
	}
	report := &Report{
		Name: response.Name, Version: response.Version, Markdown: response.Markdown,
		Files:      make(map[string][]byte, len(response.Files)),
		MediaTypes: make(map[string]string, len(response.Files)),
		Metadata:   response.Metadata,
	}
	for _, file := range response.Files {
		report.Files[file.Name] = file.Content
		report.MediaTypes[file.Name] = file.MediaType
	}
	return report, nil
}
