package latency

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestRunsRoundTrip: any histogram comes back as it went in, trimmed after
// its last non-empty bucket; malformed encodings are refused.
func TestRunsRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 500 {
		b := make([]uint64, 1+rng.IntN(Buckets))
		for j := range b {
			if rng.IntN(3) == 0 {
				b[j] = rng.Uint64N(1 << uint(rng.IntN(40)))
			}
		}
		last := len(b) - 1
		for last >= 0 && b[last] == 0 {
			last--
		}
		got, err := ReadRuns(AppendRuns(nil, b), nil)
		if err != nil || !slices.Equal(got, b[:last+1]) {
			t.Fatalf("case %d: round trip gave %v, %v", i, got, err)
		}
	}
	for _, bad := range [][]byte{{}, {1}, {1, 0, 0}, {1, 0, 2, 5}, {0xff, 0xff, 0xff}} {
		if _, err := ReadRuns(bad, nil); err == nil {
			t.Errorf("ReadRuns(%v) succeeded", bad)
		}
	}
}
