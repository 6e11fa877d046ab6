package demo

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// With nothing listening, every service is reported missing with its
// reason and the one line that enables it, and nothing is used.
func TestFindServicesNothingReachable(t *testing.T) {
	addr := closedAddr(t)
	s := FindServices(context.Background(), ServiceOptions{MySQLAddr: addr, PostgresAddr: addr, RedisAddr: addr, DB: "auto", Timeout: time.Second})
	defer s.Close(context.Background())
	if s.DB != nil || s.Redis != nil {
		t.Fatalf("services used although none is reachable: %+v", s)
	}
	if len(s.Findings) != 3 {
		t.Fatalf("%d findings, want MySQL/MariaDB, PostgreSQL, Redis: %+v", len(s.Findings), s.Findings)
	}
	for _, f := range s.Findings {
		if f.Found || f.Used || f.Addr != addr || !strings.Contains(f.Note, "not reachable") || f.Enable == "" {
			t.Errorf("finding %+v: want not found at %s, 'not reachable' and an enable line", f, addr)
		}
	}
}

// A DSN in RESPONSIVENESS_DB_DSN decides the engine and the server: the
// other engine is not looked for, and its password never shows.
func TestFindServicesHonoursDSN(t *testing.T) {
	addr := closedAddr(t)
	const secret = "s3cr%40t-canary"
	s := FindServices(context.Background(), ServiceOptions{
		DBDSN: "postgres://app:" + secret + "@" + addr + "/app", RedisURL: "redis://:" + secret + "@" + addr + "/3",
		MySQLAddr: "127.0.0.1:3306", PostgresAddr: "127.0.0.1:5432", DB: "auto", Timeout: time.Second,
	})
	defer s.Close(context.Background())
	if len(s.Findings) != 2 || s.Findings[0].Service != "PostgreSQL" || s.Findings[1].Service != "Redis" {
		t.Fatalf("findings %+v: want only PostgreSQL (from the DSN) and Redis", s.Findings)
	}
	for _, f := range s.Findings {
		if f.Found || f.Addr != addr {
			t.Errorf("finding %+v: want not found at %s", f, addr)
		}
		if strings.Contains(f.Note, "s3cr") {
			t.Errorf("the note shows the password: %q", f.Note)
		}
	}
}

func TestSQLPlaceholders(t *testing.T) {
	a := &App{engine: EnginePostgres}
	if got := a.sql("INSERT INTO orders (item, status) VALUES (?, ?)"); got != "INSERT INTO orders (item, status) VALUES ($1, $2)" {
		t.Errorf("postgres: %q", got)
	}
	a.engine = EngineMySQL
	if got := a.sql("SELECT ?"); got != "SELECT ?" {
		t.Errorf("mysql: %q", got)
	}
}

// Without services the app's service routes answer without touching
// anything, the scenario has nothing to do and returns with its context,
// and the pages are usable on a phone.
func TestAppWithoutServices(t *testing.T) {
	a := NewApp()
	a.UseServices(nil)
	if a.HasServices() {
		t.Fatal("HasServices with none")
	}
	srv := httptest.NewServer(a)
	defer srv.Close()
	for _, path := range []string{"/login", "/api/cart/1", "/api/orders/1", "/api/checkout/1"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d", path, resp.StatusCode)
		}
	}
	for _, path := range []string{"/", "/admin/users"} {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(b), `<meta name="viewport" content="width=device-width, initial-scale=1">`) {
			t.Errorf("%s has no viewport meta tag", path)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	(&Scenario{App: a, Speed: 100}).Run(ctx)
}
