package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/codes"

	client "curecserve.local/client"
)

// A curecd with mutual TLS (a throwaway CA made with the openssl CLI) and three tokens,
// reached by grpc-go with credentials.NewTLS and per-RPC credentials.

const (
	jobsToken    = "go-jobs-token"
	scoreToken   = "go-score-token"
	expiredToken = "go-expired-token"
)

type pki struct{ dir string }

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

func openssl(t *testing.T, dir string, args ...string) {
	t.Helper()
	cmd := exec.Command("openssl", args...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("openssl %v: %v\n%s", args, err, out)
	}
}

func makePKI(t *testing.T) pki {
	dir := t.TempDir()
	key := []string{"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"}
	for _, ca := range []string{"ca", "other-ca"} {
		openssl(t, dir, append(append([]string{"req", "-x509"}, key...), "-keyout", ca+".key", "-out", ca+".pem",
			"-days", "2", "-subj", "/CN="+ca)...)
	}
	for name, ext := range map[string]string{
		"server": "subjectAltName=DNS:localhost,IP:127.0.0.1",
		"client": "extendedKeyUsage=clientAuth",
	} {
		if err := os.WriteFile(filepath.Join(dir, name+".ext"), []byte(ext+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		openssl(t, dir, append(append([]string{"req"}, key...), "-keyout", name+".key", "-out", name+".csr", "-subj", "/CN="+name)...)
		openssl(t, dir, "x509", "-req", "-in", name+".csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
			"-out", name+".pem", "-days", "2", "-extfile", name+".ext")
	}
	return pki{dir}
}

func hashed(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func TestTLSAndTokens(t *testing.T) {
	if os.Getenv("CURECD_ADDR") != "" {
		t.Skip("starts its own curecd with TLS")
	}
	p := makePKI(t)
	config := fmt.Sprintf(`tls_cert_file: %s
tls_key_file: %s
tls_client_ca_file: %s
tokens:
  - {name: reader, sha256: %s, scopes: [jobs]}
  - {name: ranker, sha256: %s, scopes: [score]}
  - {name: old, sha256: %s, scopes: [jobs], expires: "2001-01-01T00:00:00Z"}
`, p.path("server.pem"), p.path("server.key"), p.path("ca.pem"), hashed(jobsToken), hashed(scoreToken), hashed(expiredToken))
	configPath := filepath.Join(p.dir, "curecd.yaml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon("--config", configPath, "--no-plugins")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if code := d.stop(); code != 0 {
			t.Errorf("curecd exited with %d:\n%s", code, d.logTail())
		}
	}()

	withClientCert, err := client.TLSConfig(p.path("ca.pem"), p.path("client.pem"), p.path("client.key"))
	if err != nil {
		t.Fatal(err)
	}
	noClientCert, _ := client.TLSConfig(p.path("ca.pem"), "", "")
	wrongCA, _ := client.TLSConfig(p.path("other-ca.pem"), p.path("client.pem"), p.path("client.key"))

	cases := []struct {
		name string
		opts []client.DialOption
		want codes.Code
	}{
		{"token with the scope", []client.DialOption{client.WithTLS(withClientCert), client.WithToken(jobsToken)}, codes.OK},
		{"no token", []client.DialOption{client.WithTLS(withClientCert)}, codes.Unauthenticated},
		{"wrong scope", []client.DialOption{client.WithTLS(withClientCert), client.WithToken(scoreToken)}, codes.PermissionDenied},
		{"expired token", []client.DialOption{client.WithTLS(withClientCert), client.WithToken(expiredToken)}, codes.Unauthenticated},
		{"unknown token", []client.DialOption{client.WithTLS(withClientCert), client.WithToken("nope")}, codes.Unauthenticated},
		{"plain text to the TLS port", []client.DialOption{client.WithToken(jobsToken)}, codes.Unavailable},
		{"TLS with a wrong CA", []client.DialOption{client.WithTLS(wrongCA), client.WithToken(jobsToken)}, codes.Unavailable},
		{"mutual TLS without a client certificate", []client.DialOption{client.WithTLS(noClientCert), client.WithToken(jobsToken)}, codes.Unavailable},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := client.Dial(d.address, tc.opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			_, err = c.ListJobs(context.Background(), client.JobFilter{})
			if got := client.Code(err); got != tc.want {
				t.Fatalf("ListJobs: got %v (%v), want %v", got, err, tc.want)
			}
		})
	}
}
