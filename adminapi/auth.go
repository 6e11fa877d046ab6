package adminapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pulsegate/pulsegate/config"
)

// principal is who made an admin request, as far as auth could tell.
type principal struct {
	actor    string // for the audit log: "token:3f2a9c", "session:…", "peer:127.0.0.1"
	canRead  bool
	canWrite bool
}

// tokenHash is SHA-256 of a token: both sides are hashed before the
// constant-time compare, so the compare does not leak the length either
// (subtle.ConstantTimeCompare returns early on a length mismatch).
func tokenHash(tok string) [32]byte { return sha256.Sum256([]byte(tok)) }

// fingerprint names a credential in logs without revealing it.
func fingerprint(kind, secret string) string {
	h := sha256.Sum256([]byte(secret))
	return kind + ":" + hex.EncodeToString(h[:3])
}

// bearer returns the Bearer token of r, if any. Tokens in the query string
// are deliberately not accepted (they end up in access logs).
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:]), true
	}
	return "", false
}

// peerIP is the socket peer of r: never a client-sent header.
func peerIP(r *http.Request) (netip.Addr, bool) {
	ap, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

func isLoopbackPeer(r *http.Request) bool {
	ip, ok := peerIP(r)
	return ok && ip.IsLoopback()
}

// authenticate decides what r may do. With a token configured: a matching
// Bearer token (or, when admin.auth_url is set, the app's own admin
// session) may read and write; nothing else may do anything. Without a
// token: loopback peers may read, nobody may write.
func (a *API) authenticate(r *http.Request, cfg *config.Config) (principal, int, string) {
	tok := cfg.Admin.Token.Reveal()
	if given, ok := bearer(r); ok && tok != "" {
		want, got := tokenHash(tok), tokenHash(given)
		if subtle.ConstantTimeCompare(want[:], got[:]) == 1 {
			return principal{actor: fingerprint("token", given), canRead: true, canWrite: true}, 0, ""
		}
		return principal{}, http.StatusUnauthorized, "invalid bearer token"
	}
	if actor, ok := validSession(r, tok, a.d.Now()); ok {
		return principal{actor: actor, canRead: true, canWrite: true}, 0, ""
	}
	if cfg.Admin.AuthURL != "" && (r.Header.Get("Cookie") != "" || r.Header.Get("Authorization") != "") {
		if actor, ok := a.delegate.check(r, cfg); ok {
			return principal{actor: actor, canRead: true, canWrite: true}, 0, ""
		}
		return principal{}, http.StatusUnauthorized, "the app's admin session check refused this request"
	}
	if tok != "" {
		return principal{}, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <RESPONSIVENESS_ADMIN_TOKEN>"
	}
	ip, _ := peerIP(r)
	if isLoopbackPeer(r) {
		return principal{actor: "peer:" + ip.String(), canRead: true}, 0, ""
	}
	return principal{}, http.StatusForbidden, "admin routes answer only loopback clients while RESPONSIVENESS_ADMIN_TOKEN is unset"
}

// hostAllowed guards the admin listener against DNS rebinding when no
// token protects it: a browser page on evil.example that resolves to
// 127.0.0.1 still sends Host: evil.example.
func hostAllowed(r *http.Request, listenAddr string, extra []string) bool {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(strings.ToLower(host), "[]")
	switch host {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	if h, _, err := net.SplitHostPort(listenAddr); err == nil && h != "" && strings.EqualFold(h, host) {
		return true
	}
	for _, e := range extra {
		if strings.EqualFold(strings.TrimSpace(e), host) {
			return true
		}
	}
	return false
}

// delegate asks the app whether a request carries a valid admin session,
// the way nginx auth_request does: Cookie and Authorization are forwarded
// (never the body), 2xx allows, anything else — including a timeout —
// denies. Answers are cached briefly per credential.
type delegate struct {
	client *http.Client
	mu     sync.Mutex
	cache  map[[32]byte]delegateAnswer
	now    func() time.Time
}

type delegateAnswer struct {
	ok      bool
	expires time.Time
}

const maxDelegateCache = 1024

func newDelegate() *delegate {
	return &delegate{
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		cache:  map[[32]byte]delegateAnswer{},
		now:    time.Now,
	}
}

func (d *delegate) check(r *http.Request, cfg *config.Config) (string, bool) {
	cred := r.Header.Get("Cookie") + "\x00" + r.Header.Get("Authorization")
	key := sha256.Sum256([]byte(cred))
	actor := fingerprint("session", cred)
	now := d.now()
	d.mu.Lock()
	if ans, ok := d.cache[key]; ok && now.Before(ans.expires) {
		d.mu.Unlock()
		return actor, ans.ok
	}
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.Context(), cfg.Admin.AuthTimeout.Duration())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Admin.AuthURL, nil)
	if err != nil {
		return actor, false
	}
	for _, h := range []string{"Cookie", "Authorization"} {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	req.Header.Set("X-Original-URI", r.URL.RequestURI())
	req.Header.Set("X-Original-Method", r.Method)
	ok := false
	if resp, err := d.client.Do(req); err == nil {
		resp.Body.Close()
		ok = resp.StatusCode >= 200 && resp.StatusCode < 300
	}
	d.mu.Lock()
	if len(d.cache) >= maxDelegateCache {
		for k, v := range d.cache {
			if !now.Before(v.expires) || len(d.cache) >= maxDelegateCache {
				delete(d.cache, k)
			}
		}
	}
	d.cache[key] = delegateAnswer{ok: ok, expires: now.Add(cfg.Admin.AuthCacheTTL.Duration())}
	d.mu.Unlock()
	return actor, ok
}

// Browser sessions. Browsers do not send Bearer tokens when navigating, so
// the dashboard logs in once: POST /admin/responsiveness/login with the
// token sets an HttpOnly, SameSite=Strict cookie scoped to /admin/ holding
// an expiry and an HMAC keyed by the token. The token itself is never
// stored in the browser, and no script (the app's included: the dashboard
// may share the app's origin) can read the cookie. Rotating the token
// invalidates every session.
const (
	sessionCookie = "pulsegate_session"
	sessionTTL    = 12 * time.Hour
)

func sessionMAC(token string, expires int64) []byte {
	key := sha256.Sum256([]byte("pulsegate-session\x00" + token))
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(strconv.FormatInt(expires, 10)))
	return m.Sum(nil)
}

func newSession(token string, now time.Time) *http.Cookie {
	exp := now.Add(sessionTTL).Unix()
	v := strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString(sessionMAC(token, exp))
	return &http.Cookie{Name: sessionCookie, Value: v, Path: "/admin/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Expires: time.Unix(exp, 0), Secure: false}
}

// validSession checks r's session cookie against token.
func validSession(r *http.Request, token string, now time.Time) (string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || token == "" {
		return "", false
	}
	expStr, macStr, ok := strings.Cut(c.Value, ".")
	if !ok {
		return "", false
	}
	exp, err := strconv.ParseInt(expStr, 10, 64)
	if err != nil || now.Unix() > exp {
		return "", false
	}
	mac, err := base64.RawURLEncoding.DecodeString(macStr)
	if err != nil || !hmac.Equal(mac, sessionMAC(token, exp)) {
		return "", false
	}
	return fingerprint("session", c.Value), true
}
