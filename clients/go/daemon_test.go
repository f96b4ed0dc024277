package client_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests run against one live curecd: TestMain starts .build/debug/curecd (or $CURECD)
// on 127.0.0.1 with a free port and a fresh data directory, where it trains its default
// plugins (about 5 s), and stops it with SIGTERM afterwards. CURECD_ADDR=host:port uses a
// daemon that is already running instead.

var daemonAddress string

func repoRoot() string {
	wd, _ := os.Getwd()
	return filepath.Clean(filepath.Join(wd, "..", ".."))
}

func TestMain(m *testing.M) {
	if address := os.Getenv("CURECD_ADDR"); address != "" {
		daemonAddress = address
		os.Exit(m.Run())
	}
	daemon, err := startDaemon()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cannot start curecd:", err)
		os.Exit(1)
	}
	daemonAddress = daemon.address
	code := m.Run()
	if exit := daemon.stop(); exit != 0 {
		fmt.Fprintf(os.Stderr, "curecd exited with %d:\n%s\n", exit, daemon.logTail())
		if code == 0 {
			code = 1
		}
	} else if code == 0 {
		os.RemoveAll(daemon.dataDir)
	}
	os.Exit(code)
}

type daemon struct {
	cmd     *exec.Cmd
	exited  chan struct{}
	dataDir string
	logPath string
	address string
}

// startDaemon starts curecd with the test settings and extra flags appended.
func startDaemon(extra ...string) (*daemon, error) {
	root := repoRoot()
	binary := os.Getenv("CURECD")
	if binary == "" {
		binary = ".build/debug/curecd"
	}
	if !filepath.IsAbs(binary) {
		binary = filepath.Join(root, binary)
	}
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("no curecd at %s (build it, or set CURECD or CURECD_ADDR): %w", binary, err)
	}
	dataset := filepath.Join(root, "var", "data", "ml-100k")
	if _, err := os.Stat(filepath.Join(dataset, "ml-100k.inter")); err != nil {
		fetch := exec.Command(filepath.Join(root, "scripts", "fetch-data"), dataset)
		fetch.Stdout, fetch.Stderr = os.Stderr, os.Stderr
		if err := fetch.Run(); err != nil {
			return nil, fmt.Errorf("scripts/fetch-data: %w", err)
		}
	}
	lm := filepath.Join(root, "var", "models", "SmolLM2-135M-Instruct", "SmolLM2-135M-Instruct.Q4_1.gguf")
	if _, err := os.Stat(lm); err != nil {
		fetch := exec.Command(filepath.Join(root, "scripts", "fetch-lm"))
		fetch.Stdout, fetch.Stderr = os.Stderr, os.Stderr
		if err := fetch.Run(); err != nil {
			return nil, fmt.Errorf("scripts/fetch-lm: %w", err)
		}
	}
	dataDir, err := os.MkdirTemp("", "curec-client-go-")
	if err != nil {
		return nil, err
	}
	d := &daemon{dataDir: dataDir, logPath: filepath.Join(dataDir, "curecd.log")}
	portFile := filepath.Join(dataDir, "port")
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	args := []string{"--listen", "127.0.0.1:0", "--port-file", portFile,
		"--data-dir", dataDir, "--dataset-dir", dataset, "--lm-path", lm, "--pipeline-on-start", "off"}
	args = append(args, extra...)
	// MiniLM, when fetched (scripts/fetch-minilm), for Embed and ScoreReasons.
	if miniLM := filepath.Join(root, "var", "models", "all-MiniLM-L6-v2"); fileExists(filepath.Join(miniLM, "model.safetensors")) {
		args = append(args, "--minilm-dir", miniLM)
	}
	d.cmd = exec.Command(binary, args...)
	d.cmd.Dir = root
	d.cmd.Stdout, d.cmd.Stderr = logFile, logFile
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	d.exited = make(chan struct{})
	go func() { d.cmd.Wait(); close(d.exited) }()
	deadline := time.Now().Add(300 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return nil, fmt.Errorf("curecd exited early:\n%s", d.logTail())
		default:
		}
		if text, err := os.ReadFile(portFile); err == nil && bytes.HasSuffix(text, []byte("\n")) {
			port, err := strconv.Atoi(strings.TrimSpace(string(text)))
			if err != nil {
				d.stop()
				return nil, fmt.Errorf("bad port file %q", text)
			}
			d.address = fmt.Sprintf("127.0.0.1:%d", port)
			return d, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop()
	return nil, fmt.Errorf("curecd did not start within 300 s:\n%s", d.logTail())
}

// stop sends SIGTERM (the daemon drains and exits 0), kills it after 60 s, and returns the
// exit code.
func (d *daemon) stop() int {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.exited:
		case <-time.After(60 * time.Second):
			d.cmd.Process.Kill()
			<-d.exited
		}
	}
	return d.cmd.ProcessState.ExitCode()
}

func (d *daemon) logTail() string {
	text, _ := os.ReadFile(d.logPath)
	if len(text) > 4000 {
		text = text[len(text)-4000:]
	}
	return string(text)
}

// failIfUnimplemented fails the test when the daemon answers UNIMPLEMENTED for a service:
// every curecd serves every service of the protos, so that answer means it is broken (a
// renamed method, a service left out of the router), not that a feature is optional.
func failIfUnimplemented(t *testing.T, err error, service string) {
	t.Helper()
	if err != nil && strings.Contains(err.Error(), "UNIMPLEMENTED") {
		t.Fatalf("the daemon answers UNIMPLEMENTED for %s, which every curecd serves: %v", service, err)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
