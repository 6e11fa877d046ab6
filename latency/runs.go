package latency

import (
	"encoding/binary"
	"errors"
)

// The run encoding of a histogram, shared by the history archive's route
// rows and the shared store's bucket column: a uvarint count of runs,
// then per run the gap from the previous run's end to its first bucket,
// its length and its counts (uvarints). A run takes in up to
// maxZerosInRun empty buckets (a zero costs a byte, a new run two), so a
// distribution's body is one run of one-byte counts.

// maxZerosInRun is the longest stretch of empty buckets kept inside a run.
const maxZerosInRun = 2

// ErrBadRuns is the error of a malformed run encoding.
var ErrBadRuns = errors.New("malformed latency buckets")

// AppendRuns appends the run encoding of bs to b.
func AppendRuns(b []byte, bs []uint64) []byte {
	type run struct{ lo, hi int } // [lo, hi]
	var runs []run
	for i, v := range bs {
		if v == 0 {
			continue
		}
		if n := len(runs); n > 0 && i-runs[n-1].hi-1 <= maxZerosInRun {
			runs[n-1].hi = i
		} else {
			runs = append(runs, run{i, i})
		}
	}
	b = binary.AppendUvarint(b, uint64(len(runs)))
	prevEnd := 0
	for _, r := range runs {
		b = binary.AppendUvarint(b, uint64(r.lo-prevEnd))
		b = binary.AppendUvarint(b, uint64(r.hi-r.lo+1))
		for _, v := range bs[r.lo : r.hi+1] {
			b = binary.AppendUvarint(b, v)
		}
		prevEnd = r.hi + 1
	}
	return b
}

// ReadRuns decodes the run encoding at the start of b into buf[:0]
// (grown as needed), trimmed after the last stored bucket. It never
// yields more than Buckets buckets.
func ReadRuns(b []byte, buf []uint64) ([]uint64, error) {
	next := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	runs, ok := next()
	if !ok || runs > Buckets {
		return nil, ErrBadRuns
	}
	out := buf[:0]
	for range runs {
		gap, ok1 := next()
		n, ok2 := next()
		if !ok1 || !ok2 || n == 0 || gap > Buckets || n > Buckets || len(out)+int(gap)+int(n) > Buckets {
			return nil, ErrBadRuns
		}
		for range gap {
			out = append(out, 0)
		}
		for range n {
			v, ok := next()
			if !ok {
				return nil, ErrBadRuns
			}
			out = append(out, v)
		}
	}
	return out, nil
}
