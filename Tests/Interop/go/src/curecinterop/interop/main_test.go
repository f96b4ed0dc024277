// Package interop runs the standard gRPC interop cases with grpc-go's client against the
// server under test.
//
// The server is found as in the Python suite: CURECD_ADDR=host:port uses a running one;
// otherwise one process is started for the whole run with
// `--listen 127.0.0.1:0 --enable-interop-testing --port-file FILE` (curecd from env CURECD,
// default .build/debug/curecd in the repository; with INTEROP_REFERENCE=1 the grpcio
// reference server Tests/Interop/python/reference_server.py) and is stopped with SIGTERM
// at the end, which must make it exit with status 0.
package interop

import (
	"context"
	"errors"
	"fmt"
	"io/ioutil"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
)

var serverAddr string

const (
	startupTimeout  = 30 * time.Second
	shutdownTimeout = 15 * time.Second
	callTimeout     = 15 * time.Second
)

// repoRoot finds the repository root (the directory holding Package.swift) above the
// package directory that `go test` runs in.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "Package.swift")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("Package.swift not found above the test directory")
		}
		dir = parent
	}
}

func serverCommand(root, portFile string) (*exec.Cmd, error) {
	args := []string{"--listen", "127.0.0.1:0", "--enable-interop-testing", "--port-file", portFile}
	if os.Getenv("INTEROP_REFERENCE") == "1" {
		python := os.Getenv("PYTHON")
		if python == "" {
			python = "python3"
		}
		script := filepath.Join(root, "Tests", "Interop", "python", "reference_server.py")
		return exec.Command(python, append([]string{script}, args...)...), nil
	}
	binary := os.Getenv("CURECD")
	if binary == "" {
		binary = ".build/debug/curecd"
	}
	if !filepath.IsAbs(binary) {
		binary = filepath.Join(root, binary)
	}
	if _, err := os.Stat(binary); err != nil {
		return nil, fmt.Errorf("curecd binary %s not found (run `swift build`, set CURECD, CURECD_ADDR or INTEROP_REFERENCE=1)", binary)
	}
	// The interop cases need only the RPC layer: no dataset, no plugin training.
	dataDir, err := os.MkdirTemp("", "curec-interop-data-")
	if err != nil {
		return nil, err
	}
	args = append(args, "--no-plugins", "--data-dir", dataDir)
	return exec.Command(binary, args...), nil
}

type daemon struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{}
	err     error
}

func (d *daemon) logTail() string {
	data, _ := ioutil.ReadFile(d.logPath)
	if len(data) > 4000 {
		data = data[len(data)-4000:]
	}
	return string(data)
}

func startDaemon() (*daemon, string, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, "", err
	}
	dir, err := ioutil.TempDir("", "curec-interop-go-")
	if err != nil {
		return nil, "", err
	}
	portFile := filepath.Join(dir, "port")
	cmd, err := serverCommand(root, portFile)
	if err != nil {
		return nil, "", err
	}
	d := &daemon{cmd: cmd, logPath: filepath.Join(dir, "server.log"), exited: make(chan struct{})}
	logFile, err := os.Create(d.logPath)
	if err != nil {
		return nil, "", err
	}
	cmd.Dir = root
	// If the test binary dies (a panic in a case), take the server with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		return nil, "", err
	}
	go func() {
		d.err = cmd.Wait()
		logFile.Close()
		close(d.exited)
	}()
	deadline := time.Now().Add(startupTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-d.exited:
			return nil, "", fmt.Errorf("server exited (%v) before listening:\n%s", d.err, d.logTail())
		default:
		}
		data, err := ioutil.ReadFile(portFile)
		text := string(data)
		if err == nil && strings.HasSuffix(text, "\n") {
			port, err := strconv.Atoi(strings.TrimSpace(text))
			if err == nil && port > 0 {
				return d, fmt.Sprintf("127.0.0.1:%d", port), nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Kill()
	<-d.exited
	return nil, "", fmt.Errorf("server wrote no port within %v:\n%s", startupTimeout, d.logTail())
}

// stop sends SIGTERM and reports an error unless the process exits 0 in time.
func (d *daemon) stop() error {
	select {
	case <-d.exited:
		return fmt.Errorf("server had already exited (%v):\n%s", d.err, d.logTail())
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(shutdownTimeout):
		d.cmd.Process.Kill()
		<-d.exited
		return fmt.Errorf("server did not exit within %v of SIGTERM:\n%s", shutdownTimeout, d.logTail())
	}
	if d.err != nil {
		return fmt.Errorf("server exit after SIGTERM: %v\n%s", d.err, d.logTail())
	}
	return nil
}

func TestMain(m *testing.M) {
	var d *daemon
	if addr := os.Getenv("CURECD_ADDR"); addr != "" {
		serverAddr = addr
		fmt.Printf("interop target: %s (CURECD_ADDR)\n", addr)
	} else {
		var err error
		d, serverAddr, err = startDaemon()
		if err != nil {
			fmt.Fprintln(os.Stderr, "cannot start the server:", err)
			os.Exit(1)
		}
		fmt.Printf("interop target: %s started at %s\n", d.cmd.Path, serverAddr)
	}
	code := m.Run()
	if d != nil {
		if err := d.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "FAIL: shutdown:", err)
			if code == 0 {
				code = 1
			}
		}
	}
	os.Exit(code)
}

// dial opens a new client connection to the server under test, bypassing any proxy.
func dial(t *testing.T) *grpc.ClientConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	dialer := func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr)
	}
	conn, err := grpc.DialContext(ctx, serverAddr, grpc.WithInsecure(), grpc.WithBlock(), grpc.WithContextDialer(dialer))
	if err != nil {
		t.Fatalf("dial %s: %v", serverAddr, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}
