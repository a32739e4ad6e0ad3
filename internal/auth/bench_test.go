package auth

import (
	"strings"
	"testing"
)

// BenchmarkCheckCached is the cost of a valid user's check once cached:
// what every proxied request with credentials pays.
func BenchmarkCheckCached(b *testing.B) {
	bs, err := Parse(strings.NewReader("alice:"+hashOf(b, "s3cret")+"\n"), "test")
	if err != nil {
		b.Fatal(err)
	}
	v := basic("alice", "s3cret")
	if _, ok := bs.Check(v); !ok {
		b.Fatal("check failed")
	}
	b.ReportAllocs()
	for b.Loop() {
		bs.Check(v)
	}
}
