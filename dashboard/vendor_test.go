package dashboard_test

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"
	"testing"

	"github.com/pulsegate/pulsegate/dashboard"
)

// The vendored uPlot is served as pinned in its VERSION.txt: every file
// listed there is embedded, served with its type, and has the recorded
// checksum (an edited or half-upgraded copy fails here).
func TestVendoredUPlotIsThePinnedRelease(t *testing.T) {
	d := newDashboard(t, dashboard.Options{})
	const dir = "/admin/responsiveness/static/vendor/uplot/"
	version := body(t, get(t, d, dir+"VERSION.txt"))
	if !strings.Contains(version, "uplot@1.6.32") || !strings.Contains(version, "integrity: sha512-") {
		t.Fatalf("VERSION.txt does not pin the release:\n%s", version)
	}
	sums := regexp.MustCompile(`(?m)^\s+([0-9a-f]{64})\s+(\S+)$`).FindAllStringSubmatch(version, -1)
	if len(sums) != 3 {
		t.Fatalf("VERSION.txt lists %d checksums; want uPlot.iife.min.js, uPlot.min.css and LICENSE.txt", len(sums))
	}
	types := map[string]string{".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
	for _, m := range sums {
		resp := get(t, d, dir+m[2])
		if resp.StatusCode != 200 {
			t.Fatalf("%s: status %d", m[2], resp.StatusCode)
		}
		for ext, ct := range types {
			if strings.HasSuffix(m[2], ext) && !strings.HasPrefix(resp.Header.Get("Content-Type"), ct) {
				t.Errorf("%s served as %q", m[2], resp.Header.Get("Content-Type"))
			}
		}
		sum := sha256.Sum256([]byte(body(t, resp)))
		if got := hex.EncodeToString(sum[:]); got != m[1] {
			t.Errorf("%s: sha256 %s, VERSION.txt says %s", m[2], got, m[1])
		}
	}
	if lic := body(t, get(t, d, dir+"LICENSE.txt")); !strings.Contains(lic, "MIT License") || !strings.Contains(lic, "Leon Sorokin") {
		t.Error("LICENSE.txt is not uPlot's MIT licence")
	}
}
