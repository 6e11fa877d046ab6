package alerts

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap/zapcore"

	"github.com/pulsegate/pulsegate/config"
)

// eventually polls cond until it holds or a generous deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run starts h.m.Run and stops it at the end of the test.
func (h *harness) run(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
}

func (h *harness) notifications(channel, outcome string) float64 {
	return testutil.ToFloat64(h.m.met.notifications.WithLabelValues(channel, outcome))
}

func TestLogChannel(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.run(t)
	h.m.Evaluate(t0, figs("memory_usage", 0.85, "connection_pool_utilization", 0.92))
	mem := mustActive(t, h.m, RuleMemoryUsage)
	if _, err := h.m.Acknowledge([]string{mem.ID}, "checking\r\n{\"level\":\"info\",\"msg\":\"forged\"}", "token:3f2a9c"); err != nil {
		t.Fatal(err)
	}
	h.m.Evaluate(t0.Add(time.Minute), figs("memory_usage", 0.1, "connection_pool_utilization", 0.92))
	eventually(t, "four log notifications", func() bool { return h.notifications(ChannelLog, outcomeSuccess) == 4 })

	firing := h.logs.FilterMessage("alert_firing").All()
	if len(firing) != 2 {
		t.Fatalf("%d alert_firing lines; want 2", len(firing))
	}
	for _, e := range firing {
		f := e.ContextMap()
		switch f["rule"] {
		case RuleMemoryUsage:
			if e.Level != zapcore.WarnLevel || f["message"] != "Memory usage at 85%" || f["threshold"] != 0.8 || f["value"] != 0.85 ||
				f["id"] != mem.ID || !strings.HasPrefix(f["recommendation"].(string), "Check session cleanup configuration") {
				t.Errorf("memory alert_firing line: level %v %v", e.Level, f)
			}
		case RuleConnectionPool:
			if e.Level != zapcore.ErrorLevel || f["message"] != "Database connection pool at 92% utilization" || f["severity"] != "critical" {
				t.Errorf("pool alert_firing line: level %v %v", e.Level, f)
			}
		default:
			t.Errorf("unexpected alert_firing %v", f)
		}
	}
	ack := h.logs.FilterMessage("alert_acknowledged").All()
	if len(ack) != 1 {
		t.Fatalf("%d alert_acknowledged lines; want 1", len(ack))
	}
	if note := ack[0].ContextMap()["note"].(string); strings.ContainsAny(note, "\r\n") || !strings.Contains(note, `\r\n`) {
		t.Errorf("note logged unescaped: %q", note)
	}
	res := h.logs.FilterMessage("alert_resolved").All()
	if len(res) != 1 || res[0].Level != zapcore.InfoLevel || res[0].ContextMap()["id"] != mem.ID {
		t.Errorf("alert_resolved lines = %v", res)
	}
}

func TestWebhookRetriesUntilSuccess(t *testing.T) {
	var calls atomic.Int32
	bodies := make(chan WebhookPayload, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("got %s with Content-Type %q", r.Method, r.Header.Get("Content-Type"))
		}
		var p WebhookPayload
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			t.Errorf("decoding webhook body: %v", err)
		}
		if n <= 2 {
			http.Error(w, "try later", http.StatusServiceUnavailable)
			return
		}
		bodies <- p
	}))
	defer srv.Close()
	cfg := config.Defaults()
	cfg.Alerts.WebhookURL = config.Secret(srv.URL + "/hooks/T000/SECRET")
	cfg.Alerts.Retries = 3
	h := newHarness(t, cfg, nil)
	h.run(t)
	h.m.Evaluate(t0, figs("app_error_rate", 0.12))
	var p WebhookPayload
	select {
	case p = <-bodies:
	case <-time.After(20 * time.Second):
		t.Fatal("webhook never delivered")
	}
	if calls.Load() != 3 {
		t.Errorf("%d calls; want 2 failures then 1 success", calls.Load())
	}
	if p.Type != EventFiring || p.Service != "pulsegate" || p.Alert.Rule != RuleErrorRate || p.Alert.Severity != "critical" ||
		p.Alert.Message != "App error rate at 12.0%" || p.Alert.Recommendation == "" || p.Alert.ID == "" {
		t.Errorf("payload = %+v", p)
	}
	eventually(t, "success counted", func() bool { return h.notifications(ChannelWebhook, outcomeSuccess) == 1 })
	if f := h.notifications(ChannelWebhook, outcomeFailure); f != 0 {
		t.Errorf("failures = %v; want 0 (retries succeeded)", f)
	}
}

func TestWebhookHangingReceiverTimesOut(t *testing.T) {
	var calls atomic.Int32
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	cfg := config.Defaults()
	cfg.Alerts.WebhookURL = config.Secret(srv.URL + "/hooks/T000/SECRET-TOKEN")
	cfg.Alerts.Timeout = 0.2
	cfg.Alerts.Retries = 1
	h := newHarness(t, cfg, nil)
	h.run(t)

	h.m.Evaluate(t0, figs("memory_usage", 0.95))
	eventually(t, "failure counted", func() bool { return h.notifications(ChannelWebhook, outcomeFailure) == 1 })
	if calls.Load() != 2 {
		t.Errorf("%d attempts; want 2 (1 + 1 retry)", calls.Load())
	}
	failed := h.logs.FilterMessage("alert_notification_failed").All()
	if len(failed) != 1 {
		t.Fatalf("%d alert_notification_failed lines; want 1", len(failed))
	}
	msg := failed[0].ContextMap()["error"].(string)
	if !strings.Contains(msg, "deadline exceeded") || strings.Contains(msg, "SECRET-TOKEN") {
		t.Errorf("failure error = %q; want a timeout without the URL's path", msg)
	}
}

func TestQueueFullDropsWithoutBlocking(t *testing.T) {
	cfg := config.Defaults()
	cfg.Alerts.WebhookURL = config.Secret("http://127.0.0.1:1/hook") // never delivered: Run is not started
	h := newHarness(t, cfg, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range QueueSize + 50 {
			v := 0.95
			if i%2 == 1 {
				v = 0.1
			}
			h.m.Evaluate(t0.Add(time.Duration(i)*time.Second), figs("memory_usage", v))
		}
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Evaluate blocked on a full channel queue")
	}
	if d := testutil.ToFloat64(h.m.met.dropped.WithLabelValues(ChannelWebhook)); d != 50 {
		t.Errorf("webhook drops = %v; want 50", d)
	}
}

func TestAlertmanagerChannel(t *testing.T) {
	var mu sync.Mutex
	var posts [][]AlertmanagerAlert
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v2/alerts" || r.Method != http.MethodPost {
			t.Errorf("got %s %s; want POST /api/v2/alerts", r.Method, r.URL.Path)
		}
		var body []AlertmanagerAlert
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
			t.Errorf("decoding: %v", err)
		}
		mu.Lock()
		posts = append(posts, body)
		mu.Unlock()
	}))
	defer srv.Close()
	nposts := func() int { mu.Lock(); defer mu.Unlock(); return len(posts) }
	post := func(i int) []AlertmanagerAlert { mu.Lock(); defer mu.Unlock(); return posts[i] }

	cfg := config.Defaults()
	cfg.Alerts.AlertmanagerURL = config.Secret(srv.URL + "/")
	h := newHarness(t, cfg, nil)
	h.m.resendInterval = time.Hour // resends tested below
	h.run(t)

	h.m.Evaluate(t0, figs("connection_pool_utilization", 0.85))
	eventually(t, "firing post", func() bool { return nposts() == 1 })
	a := post(0)
	if len(a) != 1 {
		t.Fatalf("firing post has %d alerts", len(a))
	}
	l := a[0].Labels
	if l["alertname"] != "PulsegateConnectionPoolUtilization" || l["severity"] != "warning" || l["service"] != "pulsegate" ||
		l["rule"] != RuleConnectionPool || l["instance"] != h.m.host {
		t.Errorf("labels = %v", l)
	}
	if a[0].Annotations["summary"] != "Database connection pool at 85% utilization" ||
		!strings.HasPrefix(a[0].Annotations["description"], "Verify connection pool configuration") {
		t.Errorf("annotations = %v", a[0].Annotations)
	}
	starts, _ := time.Parse(time.RFC3339Nano, a[0].StartsAt)
	ends, _ := time.Parse(time.RFC3339Nano, a[0].EndsAt)
	if !starts.Equal(t0) || !ends.After(h.clk.now()) {
		t.Errorf("startsAt %s endsAt %s; want t0 and a future endsAt", a[0].StartsAt, a[0].EndsAt)
	}
	if !strings.HasSuffix(a[0].GeneratorURL, "/admin/api/alerts/responsiveness") {
		t.Errorf("generatorURL = %q", a[0].GeneratorURL)
	}

	// Escalation ends the warning-labelled alert and starts the critical one.
	h.m.Evaluate(t0.Add(time.Minute), figs("connection_pool_utilization", 0.95))
	eventually(t, "escalation post", func() bool { return nposts() == 2 })
	a = post(1)
	if len(a) != 2 || a[0].Labels["severity"] != "warning" || a[1].Labels["severity"] != "critical" {
		t.Fatalf("escalation post = %+v", a)
	}
	if ends, _ := time.Parse(time.RFC3339Nano, a[0].EndsAt); !ends.Equal(t0.Add(time.Minute)) {
		t.Errorf("old severity endsAt = %s; want the escalation time", a[0].EndsAt)
	}

	// Resolution sends endsAt = resolved_at.
	h.m.Evaluate(t0.Add(2*time.Minute), figs("connection_pool_utilization", 0.1))
	eventually(t, "resolve post", func() bool { return nposts() == 3 })
	a = post(2)
	if ends, _ := time.Parse(time.RFC3339Nano, a[0].EndsAt); len(a) != 1 || !ends.Equal(t0.Add(2*time.Minute)) {
		t.Errorf("resolve post = %+v; want endsAt t0+2m", a)
	}
}

func TestAlertmanagerResendsActiveAlerts(t *testing.T) {
	var mu sync.Mutex
	seen := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body []AlertmanagerAlert
		_ = json.NewDecoder(r.Body).Decode(&body)
		mu.Lock()
		for _, a := range body {
			seen[a.Labels["alertname"]]++
		}
		mu.Unlock()
	}))
	defer srv.Close()
	cfg := config.Defaults()
	cfg.Alerts.AlertmanagerURL = config.Secret(srv.URL)
	h := newHarness(t, cfg, nil)
	h.m.resendInterval = 20 * time.Millisecond
	h.m.Evaluate(t0, figs("memory_usage", 0.95, "disk_usage", 0.9))
	h.run(t)
	eventually(t, "resends of both alerts", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return seen["PulsegateMemoryUsage"] >= 3 && seen["PulsegateDiskUsage"] >= 3
	})
}

func TestAlertmanagerName(t *testing.T) {
	for rule, want := range map[string]string{
		RuleMemoryUsage:       "PulsegateMemoryUsage",
		RuleDBIdleInTx:        "PulsegateDBIdleInTransactionOldest",
		RuleSessionWithoutTTL: "PulsegateSessionWithoutTTL",
		RuleProbeDown:         "PulsegateProbeDown",
	} {
		if got := AlertmanagerName(rule); got != want {
			t.Errorf("AlertmanagerName(%q) = %q; want %q", rule, got, want)
		}
	}
}

// smtpSink speaks enough SMTP on 127.0.0.1:0 to capture messages.
type smtpSink struct {
	ln       net.Listener
	tls      *tls.Config // offer STARTTLS when set
	authFail bool
	wg       sync.WaitGroup

	mu    sync.Mutex
	msgs  []string
	auths []string // decoded AUTH PLAIN responses
	tlsOK bool     // a message arrived over TLS
	rcpts []string
}

func newSMTPSink(t *testing.T, tlsCfg *tls.Config, authFail bool) *smtpSink {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpSink{ln: ln, tls: tlsCfg, authFail: authFail}
	s.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.handle(c) })
		}
	})
	t.Cleanup(func() { _ = ln.Close(); s.wg.Wait() })
	return s
}

func (s *smtpSink) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	tp := textproto.NewConn(c)
	secure := false
	_ = tp.PrintfLine("220 sink ESMTP")
	for {
		line, err := tp.ReadLine()
		if err != nil {
			return
		}
		verb := strings.ToUpper(strings.Fields(line + " x")[0])
		switch verb {
		case "EHLO", "HELO":
			ext := []string{"250-sink", "250-8BITMIME"}
			if s.tls != nil && !secure {
				ext = append(ext, "250-STARTTLS")
			}
			ext = append(ext, "250 AUTH PLAIN")
			_ = tp.PrintfLine("%s", strings.Join(ext, "\r\n"))
		case "STARTTLS":
			_ = tp.PrintfLine("220 go ahead")
			tc := tls.Server(c, s.tls)
			if err := tc.Handshake(); err != nil {
				return
			}
			c, secure = tc, true
			tp = textproto.NewConn(tc)
		case "AUTH":
			parts := strings.Fields(line)
			raw, _ := base64.StdEncoding.DecodeString(parts[len(parts)-1])
			s.mu.Lock()
			s.auths = append(s.auths, string(raw))
			s.mu.Unlock()
			if s.authFail {
				_ = tp.PrintfLine("535 5.7.8 Authentication credentials invalid")
			} else {
				_ = tp.PrintfLine("235 2.7.0 Authentication successful")
			}
		case "MAIL":
			_ = tp.PrintfLine("250 ok")
		case "RCPT":
			s.mu.Lock()
			s.rcpts = append(s.rcpts, line)
			s.mu.Unlock()
			_ = tp.PrintfLine("250 ok")
		case "DATA":
			_ = tp.PrintfLine("354 go ahead")
			b, err := io.ReadAll(tp.DotReader())
			if err != nil {
				return
			}
			s.mu.Lock()
			s.msgs = append(s.msgs, string(b))
			s.tlsOK = s.tlsOK || secure
			s.mu.Unlock()
			_ = tp.PrintfLine("250 queued")
		case "QUIT":
			_ = tp.PrintfLine("221 bye")
			return
		default:
			_ = tp.PrintfLine("502 not implemented")
		}
	}
}

func (s *smtpSink) messages() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.msgs...)
}

const canary = "c@n#ry%P4ss:zz"

func emailConfig(addr string) *config.Config {
	cfg := config.Defaults()
	cfg.Alerts.Email = config.Email{
		SMTPAddr: addr, From: "pulsegate@example.com", To: []string{"ops@example.com", "db@example.com"},
		Username: "alerts", Password: config.Secret(canary), MinSeverity: "critical",
	}
	return cfg
}

func TestEmailChannel(t *testing.T) {
	sink := newSMTPSink(t, nil, false)
	h := newHarness(t, emailConfig(sink.ln.Addr().String()), nil)
	h.run(t)

	// A warning is below min_severity critical: not mailed.
	h.m.Evaluate(t0, figs("memory_usage", 0.85))
	h.m.Evaluate(t0.Add(time.Second), figs("memory_usage", 0.92))
	eventually(t, "one mail", func() bool { return len(sink.messages()) == 1 })
	msg := sink.messages()[0]
	head, body, _ := strings.Cut(msg, "\n\n") // DotReader turns CRLF into LF
	for _, want := range []string{"Subject: [pulsegate ", "CRITICAL ESCALATED: Memory usage at 92%", "From: pulsegate@example.com", "To: ops@example.com, db@example.com"} {
		if !strings.Contains(head, want) {
			t.Errorf("headers lack %q:\n%s", want, head)
		}
	}
	for _, want := range []string{"Memory usage at 92%", "Recommendation: " + recHighMemory, "Runbook: " + config.DefaultRunbookBaseURL + "/memory_usage.md", "Rule:       memory_usage"} {
		if !strings.Contains(body, want) {
			t.Errorf("body lacks %q:\n%s", want, body)
		}
	}
	sink.mu.Lock()
	auth, rcpts := sink.auths, len(sink.rcpts)
	sink.mu.Unlock()
	if len(auth) != 1 || auth[0] != "\x00alerts\x00"+canary || rcpts != 2 {
		t.Errorf("auth = %q, %d recipients; want PLAIN for user alerts and 2 recipients", auth, rcpts)
	}
	// Resolution of an alert that reached critical is mailed too.
	h.m.Evaluate(t0.Add(2*time.Second), figs("memory_usage", 0.1))
	eventually(t, "resolution mail", func() bool { return len(sink.messages()) == 2 })
	if m := sink.messages()[1]; !strings.Contains(m, "RESOLVED") || !strings.Contains(m, "This alert has resolved.") {
		t.Errorf("resolution mail:\n%s", m)
	}
	if f := h.notifications(ChannelEmail, outcomeFailure); f != 0 {
		t.Errorf("email failures = %v", f)
	}
}

func TestEmailStartTLS(t *testing.T) {
	serverTLS, roots := selfSignedTLS(t)
	sink := newSMTPSink(t, serverTLS, false)
	cfg := emailConfig(sink.ln.Addr().String())
	cfg.Alerts.Email.MinSeverity = "warning"
	h := newHarness(t, cfg, nil)
	h.m.tlsConfig = &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12}
	h.run(t)
	h.m.Evaluate(t0, figs("disk_usage", 0.9))
	eventually(t, "mail over TLS", func() bool { return len(sink.messages()) == 1 })
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if !sink.tlsOK {
		t.Error("the message was not sent after STARTTLS")
	}
}

func TestEmailAuthFailureNeverLeaksPassword(t *testing.T) {
	sink := newSMTPSink(t, nil, true)
	cfg := emailConfig(sink.ln.Addr().String())
	cfg.Alerts.Retries = 1
	h := newHarness(t, cfg, nil)
	h.run(t)
	h.m.Evaluate(t0, figs("memory_usage", 0.95))
	eventually(t, "email failure", func() bool { return h.notifications(ChannelEmail, outcomeFailure) == 1 })
	if len(sink.messages()) != 0 {
		t.Error("a message was sent although AUTH failed")
	}
	b64 := base64.StdEncoding.EncodeToString([]byte("\x00alerts\x00" + canary))
	for _, e := range h.logs.All() {
		line := e.Message
		for k, v := range e.ContextMap() {
			line += " " + k + "=" + strings.TrimSpace(strings.ReplaceAll(toString(v), "\n", " "))
		}
		if strings.Contains(line, canary) || strings.Contains(line, "P4ss") || strings.Contains(line, b64) {
			t.Errorf("password in log line: %s", line)
		}
	}
	failed := h.logs.FilterMessage("alert_notification_failed").All()
	if len(failed) != 1 || !strings.Contains(failed[0].ContextMap()["error"].(string), "535") {
		t.Errorf("failure lines = %v; want one with the server's 535", failed)
	}
}

func toString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func selfSignedTLS(t *testing.T) (*tls.Config, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sink"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}, MinVersion: tls.VersionTLS12}, pool
}

func TestChannelsFollowApply(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { calls.Add(1) }))
	defer srv.Close()
	h := newHarness(t, nil, nil)
	h.run(t)
	h.m.Evaluate(t0, figs("cpu_usage", 0.85))
	eventually(t, "log delivery", func() bool { return h.notifications(ChannelLog, outcomeSuccess) == 1 })
	cfg := config.Defaults()
	cfg.Alerts.WebhookURL = config.Secret(srv.URL)
	if err := h.m.Apply(cfg); err != nil {
		t.Fatal(err)
	}
	h.m.Evaluate(t0.Add(time.Second), figs("cpu_usage", 0.1))
	eventually(t, "webhook after Apply", func() bool { return calls.Load() == 1 })
	if got := h.logs.FilterMessage("alerts_config_applied").All(); len(got) != 1 {
		t.Errorf("%d alerts_config_applied lines", len(got))
	}
}
