package dashboard

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"time"
)

// asset is one embedded file, read and hashed once at startup.
type asset struct {
	body        []byte
	contentType string
	etag        string
}

// contentTypes are the types of the embedded files. A file with another
// extension fails New, so nothing is ever served untyped (and sniffed).
var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".svg":  "image/svg+xml",
	".png":  "image/png",
	".ico":  "image/x-icon",
	".json": "application/json",
	".txt":  "text/plain; charset=utf-8",
}

func loadAssets(root fs.FS) (map[string]asset, error) {
	out := map[string]asset{}
	err := fs.WalkDir(root, ".", func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		ct, ok := contentTypes[path.Ext(p)]
		if !ok {
			return fmt.Errorf("%s: no content type for %q files", p, path.Ext(p))
		}
		b, err := fs.ReadFile(root, p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[p] = asset{body: b, contentType: ct, etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	return out, err
}

// serveAsset serves an embedded file with its type and a content-hash
// ETag. Browsers keep the file and revalidate it on every use (a 304 when
// unchanged), so an upgraded binary is picked up at once.
func (d *Dashboard) serveAsset(w http.ResponseWriter, r *http.Request, name string) {
	a, ok := d.assets[name]
	if !ok || strings.Contains(name, "..") {
		writeError(w, http.StatusNotFound, "no such dashboard asset")
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("ETag", a.etag)
	h.Set("Cache-Control", "no-cache")
	http.ServeContent(w, r, name, time.Time{}, bytes.NewReader(a.body))
}

// AssetNames lists the embedded files (for tests and docs).
func (d *Dashboard) AssetNames() []string {
	names := make([]string, 0, len(d.assets))
	for n := range d.assets {
		names = append(names, n)
	}
	return names
}
