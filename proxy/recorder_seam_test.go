package proxy

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// wrapped is a middleware's ResponseWriter wrapper following the Unwrap
// convention.
type wrapped struct{ http.ResponseWriter }

func (w wrapped) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// TestRecorderFoundThroughWrappers: the error handler finds Instrument's
// recorder under a wrapper, so the error class is not lost.
func TestRecorderFoundThroughWrappers(t *testing.T) {
	rec := &recorder{ResponseWriter: httptest.NewRecorder()}
	if got := recorderOf(wrapped{wrapped{rec}}); got != rec {
		t.Fatalf("recorderOf(two wrappers) = %p, want %p", got, rec)
	}
	if got := recorderOf(httptest.NewRecorder()); got != nil {
		t.Fatalf("recorderOf(no recorder) = %p, want nil", got)
	}
}
