package server

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/config"
	"github.com/warmproxy/warmproxy/internal/intercept"
)

// Issue 13: a proxy started with -intercept patterns its CA's Name
// Constraints do not cover refuses to start, saying to make the CA again
// with warmproxy ca init.
func TestRunRefusesUncoveredIntercept(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ps, _ := intercept.ParsePatterns("api.test")
	if err := intercept.Init(dir, ps, false, time.Now()); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.Intercept, cfg.InterceptCA = "api.test,other.test", dir
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := Run(ctx, config.MustParse(cfg), slog.New(slog.DiscardHandler), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "other.test") || !strings.Contains(err.Error(), "warmproxy ca init") {
		t.Errorf("Run with -intercept past the CA = %v, want an error naming other.test and warmproxy ca init", err)
	}
}
