package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
)

// certStore holds the certificate the --https listeners present, and renews it from the
// same files on reload (SIGHUP, herd reload) without closing a connection: every handshake
// asks for the current pair through tls.Config.GetCertificate, and a reload swaps it in
// atomically. A new pair that does not load (missing file, key of another certificate,
// half-written PEM) keeps the old one serving.
type certStore struct {
	certFile, keyFile string
	log               zerolog.Logger
	current           atomic.Pointer[tls.Certificate]
}

// newCertStore loads --cert and --key once; an error here stops the master before it
// listens, so a bad pair is never served.
func newCertStore(certFile, keyFile string, log zerolog.Logger) (*certStore, error) {
	s := &certStore{certFile: certFile, keyFile: keyFile, log: log.With().Str("component", "tls").Logger()}
	cert, err := s.load()
	if err != nil {
		return nil, err
	}
	s.current.Store(cert)
	s.logLoaded("TLS certificate loaded", cert)
	return s, nil
}

// load reads and checks the pair: the key must match the certificate (LoadX509KeyPair
// checks that), and the leaf must parse.
func (s *certStore) load() (*tls.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: load --cert %s and --key %s: %w", s.certFile, s.keyFile, err)
	}
	if cert.Leaf == nil { // set by LoadX509KeyPair since Go 1.23, unless GODEBUG says otherwise
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tls: parse the certificate in %s: %w", s.certFile, err)
		}
	}
	return &cert, nil
}

// Reload reads the files again and serves the new pair from the next handshake on. On
// failure the old pair stays and the error is logged and returned.
func (s *certStore) Reload() error {
	if s == nil {
		return nil // no --https
	}
	cert, err := s.load()
	if err != nil {
		old := s.current.Load().Leaf
		s.log.Error().Err(err).Str("serial", old.SerialNumber.Text(16)).Time("not_after", old.NotAfter).
			Msg("TLS certificate reload failed: the old certificate stays in use")
		return fmt.Errorf("%w (the old certificate stays in use)", err)
	}
	s.current.Store(cert)
	s.logLoaded("TLS certificate reloaded", cert)
	return nil
}

func (s *certStore) logLoaded(msg string, cert *tls.Certificate) {
	leaf := cert.Leaf
	ev := s.log.Info()
	if time.Now().After(leaf.NotAfter) {
		ev = s.log.Warn()
		msg += " (it has expired)"
	}
	ev.Str("cert", s.certFile).Str("subject", leaf.Subject.String()).Strs("dns_names", leaf.DNSNames).
		Str("serial", leaf.SerialNumber.Text(16)).Time("not_after", leaf.NotAfter).Msg(msg)
}

func (s *certStore) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	return s.current.Load(), nil
}

// tlsConfig is what the --https listeners offer: TLS 1.2 and newer (Go's default cipher
// suites, which leave out the weak ones), HTTP/2 and HTTP/1.1 by ALPN.
func (s *certStore) tlsConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: s.getCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	}
}

// errNoCert says a TLS listener was asked for without a certificate store.
var errNoCert = errors.New("tls: --https needs --cert and --key")
