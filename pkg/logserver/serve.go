package logserver

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/stepseal/stepseal/pkg/tlog"
)

// KeyInDir returns the log key kept in dir (log.key, with its public half
// in log.pub), generating one for origin the first time.
func KeyInDir(dir, origin string) (tlog.Key, error) {
	priv := filepath.Join(dir, "log.key")
	if _, err := os.Stat(priv); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return tlog.Key{}, err
		}
		return tlog.WriteKeyFiles(priv, filepath.Join(dir, "log.pub"), origin)
	}
	return tlog.ReadKey(priv)
}

// Serve serves s on l until ctx ends, then waits for requests in flight.
// Writers wait for a checkpoint (about 0.1 s) and readers get at most a
// page of MaxLimit entries, so the timeouts are generous but bounded.
func Serve(ctx context.Context, l net.Listener, s *Server) error {
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()
	if err := hs.Serve(l); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
