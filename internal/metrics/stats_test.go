package metrics

import (
	"testing"
	"time"

	"github.com/warmproxy/warmproxy/internal/upstream"
)

// Issue 15: ?refresh=N on the stats page takes whole seconds, 0 to 3600.
func TestStatsRefresh(t *testing.T) {
	tests := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"", DefaultStatsRefresh, false},
		{"0", 0, false},
		{"30", 30, false},
		{"3600", 3600, false},
		{"3601", 0, true},
		{"-1", 0, true},
		{"1.5", 0, true},
		{"soon", 0, true},
	}
	for _, tt := range tests {
		got, err := statsRefresh(tt.in)
		if got != tt.want || (err != nil) != tt.wantErr {
			t.Errorf("statsRefresh(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
	}
}

// Issue 15: the page's totals sum both schemes and take the reuse ratio
// over the sum, not the mean of the two ratios.
func TestAddStats(t *testing.T) {
	a := upstream.Stats{Requests: 10, Opened: 1, Reused: 9, RoundTripsSaved: 9, Open: 1, Idle: 1}
	b := upstream.Stats{Requests: 4, Failed: 2, Opened: 2, Open: 2, Active: 1, Idle: 1, TLSResumed: 1, TLSFull: 1}
	got := addStats(addStats(upstream.Stats{}, a), b)
	want := upstream.Stats{Requests: 14, Failed: 2, Opened: 3, Reused: 9, RoundTripsSaved: 9, Open: 3, Active: 1, Idle: 2,
		TLSResumed: 1, TLSFull: 1, ReuseRatio: 0.75}
	if got != want {
		t.Errorf("addStats = %+v\nwant %+v", got, want)
	}
}

func TestAgo(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, ""},
		{now.Add(-1500 * time.Millisecond), "2s ago"},
		{now.Add(-90 * time.Second), "1m30s ago"},
		{now.Add(time.Second), "0s ago"},
	}
	for _, tt := range tests {
		if got := ago(now, tt.t); got != tt.want {
			t.Errorf("ago(now, %v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}
