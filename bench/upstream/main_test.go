package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestBodiesAndKeepAlive(t *testing.T) {
	srv := httptest.NewServer(newHandler())
	defer srv.Close()
	for _, tc := range []struct {
		path string
		size int
	}{{"/", 12}, {"/16k", 16 << 10}, {"/bench/abc", 12}} {
		resp, err := srv.Client().Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK || len(body) != tc.size || resp.ContentLength != int64(tc.size) || resp.Close {
			t.Fatalf("%s: status %d, %d bytes (Content-Length %d), close %v, err %v; want 200 with %d bytes, keep-alive",
				tc.path, resp.StatusCode, len(body), resp.ContentLength, resp.Close, err, tc.size)
		}
	}
}
