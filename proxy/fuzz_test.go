package proxy

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzTemplateRoute: any path yields a valid, bounded label, and paths
// that differ only in an id segment share it.
func FuzzTemplateRoute(f *testing.F) {
	for _, s := range []string{"/", "", "/users/123", "//a//b/", "/x/3f2504e0-4f89-11d3-9a0c-0305e82c3301", "/\xff", "/a/<script>", strings.Repeat("/seg", 200)} {
		f.Add(s)
	}
	pats := compilePatterns([]string{"/users/<id>/posts", "/api/:v/items"})
	f.Fuzz(func(t *testing.T, path string) {
		var buf [maxRouteLen + 8]byte
		got := templateRoute(path, pats, buf[:0])
		if !utf8.Valid(got) {
			t.Fatalf("route %q is not valid UTF-8", got)
		}
		if len(got) > maxRouteLen+3 {
			t.Fatalf("route is %d bytes", len(got))
		}
		if len(got) == 0 || got[0] != '/' && string(got) != OtherRoute {
			t.Fatalf("route %q does not start with /", got)
		}
		if again := templateRoute(path, pats, nil); string(again) != string(got) {
			t.Fatalf("not deterministic: %q vs %q", got, again)
		}
	})
}
