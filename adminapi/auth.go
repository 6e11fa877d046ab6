package adminapi

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/pulsegate/pulsegate/config"
)

// principal is who made an admin request, as far as auth could tell.
type principal struct {
	actor    string // for the audit log: "token:3f2a9c", "session:…", "peer:127.0.0.1"
	name     string // the person: entered at sign-in, or the user delegated auth returned; "" = unknown
	via      string // token | session | delegated | loopback
	canRead  bool
	canWrite bool
}

// by names who did something for people (acknowledgements): the person's
// name when known, else the credential's fingerprint.
func (p principal) by() string {
	if p.name != "" {
		return p.name
	}
	return p.actor
}

// maxNameLen bounds a display name (runes).
const maxNameLen = 64

// cleanName validates a display name given at sign-in: trimmed, at most
// maxNameLen characters, no control characters. "" is allowed (no name).
func cleanName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if utf8.RuneCountInString(s) > maxNameLen {
		return "", fmt.Errorf("name: longer than %d characters", maxNameLen)
	}
	for _, c := range s {
		if unicode.IsControl(c) || c == unicode.ReplacementChar {
			return "", errors.New("name: control characters are not allowed")
		}
	}
	return s, nil
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
			return principal{actor: fingerprint("token", given), via: "token", canRead: true, canWrite: true}, 0, ""
		}
		return principal{}, http.StatusUnauthorized, "invalid bearer token"
	}
	if actor, name, ok := validSession(r, tok, a.d.Now()); ok {
		return principal{actor: actor, name: name, via: "session", canRead: true, canWrite: true}, 0, ""
	}
	if cfg.Admin.AuthURL != "" && (r.Header.Get("Cookie") != "" || r.Header.Get("Authorization") != "") {
		if actor, name, ok := a.delegate.check(r, cfg); ok {
			return principal{actor: actor, name: name, via: "delegated", canRead: true, canWrite: true}, 0, ""
		}
		return principal{}, http.StatusUnauthorized, "the app's admin session check refused this request"
	}
	if tok != "" {
		return principal{}, http.StatusUnauthorized, "missing bearer token: send Authorization: Bearer <RESPONSIVENESS_ADMIN_TOKEN>"
	}
	ip, _ := peerIP(r)
	if isLoopbackPeer(r) {
		return principal{actor: "peer:" + ip.String(), via: "loopback", canRead: true}, 0, ""
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
	name    string
	expires time.Time
}

// delegateUserHeaders are the response headers an auth endpoint names its
// user in (oauth2-proxy, Authelia/Authentik, nginx auth_request setups);
// the first one present wins.
var delegateUserHeaders = []string{"X-Auth-Request-User", "Remote-User", "X-Remote-User", "X-Auth-User", "X-Forwarded-User", "X-User"}

const maxDelegateCache = 1024

func newDelegate() *delegate {
	return &delegate{
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
		cache:  map[[32]byte]delegateAnswer{},
		now:    time.Now,
	}
}

func (d *delegate) check(r *http.Request, cfg *config.Config) (string, string, bool) {
	cred := r.Header.Get("Cookie") + "\x00" + r.Header.Get("Authorization")
	key := sha256.Sum256([]byte(cred))
	actor := fingerprint("session", cred)
	now := d.now()
	d.mu.Lock()
	if ans, ok := d.cache[key]; ok && now.Before(ans.expires) {
		d.mu.Unlock()
		return actor, ans.name, ans.ok
	}
	d.mu.Unlock()

	ctx, cancel := context.WithTimeout(r.Context(), cfg.Admin.AuthTimeout.Duration())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Admin.AuthURL, nil)
	if err != nil {
		return actor, "", false
	}
	for _, h := range []string{"Cookie", "Authorization"} {
		if v := r.Header.Values(h); len(v) > 0 {
			req.Header[h] = v
		}
	}
	req.Header.Set("X-Original-URI", r.URL.RequestURI())
	req.Header.Set("X-Original-Method", r.Method)
	ok, name := false, ""
	if resp, err := d.client.Do(req); err == nil {
		resp.Body.Close()
		ok = resp.StatusCode >= 200 && resp.StatusCode < 300
		for _, h := range delegateUserHeaders {
			if v, err := cleanName(resp.Header.Get(h)); err == nil && v != "" {
				name = v
				break
			}
		}
	}
	d.mu.Lock()
	if len(d.cache) >= maxDelegateCache {
		for k, v := range d.cache {
			if !now.Before(v.expires) || len(d.cache) >= maxDelegateCache {
				delete(d.cache, k)
			}
		}
	}
	d.cache[key] = delegateAnswer{ok: ok, name: name, expires: now.Add(cfg.Admin.AuthCacheTTL.Duration())}
	d.mu.Unlock()
	return actor, name, ok
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

// The cookie value is "<expiry>.<name, base64url>.<HMAC of both>"; the
// name is the display name given at sign-in (it may be empty).
func sessionMAC(token string, expires int64, name string) []byte {
	key := sha256.Sum256([]byte("pulsegate-session\x00" + token))
	m := hmac.New(sha256.New, key[:])
	m.Write([]byte(strconv.FormatInt(expires, 10) + "\x00" + name))
	return m.Sum(nil)
}

func newSession(token, name string, now time.Time) *http.Cookie {
	exp := now.Add(sessionTTL).Unix()
	v := strconv.FormatInt(exp, 10) + "." + base64.RawURLEncoding.EncodeToString([]byte(name)) + "." +
		base64.RawURLEncoding.EncodeToString(sessionMAC(token, exp, name))
	return &http.Cookie{Name: sessionCookie, Value: v, Path: "/admin/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Expires: time.Unix(exp, 0), Secure: false}
}

// validSession checks r's session cookie against token and returns its
// fingerprint and the name it carries.
func validSession(r *http.Request, token string, now time.Time) (string, string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil || token == "" {
		return "", "", false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return "", "", false
	}
	exp, err := strconv.ParseInt(parts[0], 10, 64)
	if err != nil || now.Unix() > exp {
		return "", "", false
	}
	nameB, err1 := base64.RawURLEncoding.DecodeString(parts[1])
	mac, err2 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || !hmac.Equal(mac, sessionMAC(token, exp, string(nameB))) {
		return "", "", false
	}
	return fingerprint("session", c.Value), string(nameB), true
}

// whoami tells a page what its viewer may do, so it offers only controls
// that work: GET /admin/responsiveness/api/whoami. It answers everyone
// (the login page asks it before sign-in) and reveals nothing a refused
// request does not: whether a token is configured and whether this
// request is signed in.
func (a *API) whoami(w http.ResponseWriter, r *http.Request) {
	cfg, _ := a.d.Config.Get()
	who, status, msg := a.authenticate(r, cfg)
	out := map[string]any{
		"signed_in":        status == 0 && who.via != "loopback",
		"can_read":         who.canRead,
		"can_write":        who.canWrite,
		"name":             who.name,
		"via":              who.via,
		"token_configured": cfg.Admin.Token.IsSet(),
		"delegated_auth":   cfg.Admin.AuthURL != "",
		// The dashboard offers its "whole fleet" scope only with a shared store.
		"shared_store": a.d.Fleet != nil,
	}
	if who.canRead {
		out["instance"] = cfg.InstanceName()
		if a.d.Fleet != nil {
			out["fleet"] = a.d.Fleet.Name()
		}
	}
	switch {
	case who.canWrite:
	case !cfg.Admin.Token.IsSet():
		out["why_read_only"] = "no admin token is configured, so nobody can acknowledge alerts or change settings here: " +
			"set RESPONSIVENESS_ADMIN_TOKEN and restart pulsegate, then sign in"
	default:
		out["why_read_only"] = "not signed in: " + msg
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, out)
}
