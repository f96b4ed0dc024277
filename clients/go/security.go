package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// WithTLS connects with TLS using config (its RootCAs, Certificates for mutual TLS,
// ServerName). ALPN h2 is negotiated by grpc-go's credentials.NewTLS.
func WithTLS(config *tls.Config) DialOption {
	return func(s *dialSettings) { s.tls = config }
}

// TLSConfig builds a TLS configuration from PEM files: caFile is the CA the daemon's
// certificate must chain to ("" for the system's CAs); certFile and keyFile a client
// certificate for a daemon that requires mutual TLS ("" for none).
func TLSConfig(caFile, certFile, keyFile string) (*tls.Config, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		config.RootCAs = pool
	}
	if certFile != "" {
		pair, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{pair}
	}
	return config, nil
}

// WithToken sends token as "authorization: Bearer <token>" on every call (grpc-go
// per-RPC credentials). Over TLS as a rule; on a cleartext connection (loopback) too.
func WithToken(token string) DialOption {
	return func(s *dialSettings) { s.token = token }
}

// bearerToken is grpc-go per-RPC credentials carrying one bearer token.
type bearerToken struct {
	token      string
	secureOnly bool
}

func (b bearerToken) GetRequestMetadata(ctx context.Context, uri ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + b.token}, nil
}

func (b bearerToken) RequireTransportSecurity() bool { return b.secureOnly }

// transportOptions are the grpc dial options for the settings' transport and token.
func (s *dialSettings) transportOptions() []grpc.DialOption {
	var opts []grpc.DialOption
	if s.tls != nil {
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(s.tls)))
	} else {
		opts = append(opts, grpc.WithInsecure())
	}
	if s.token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken{token: s.token, secureOnly: s.tls != nil}))
	}
	return opts
}
