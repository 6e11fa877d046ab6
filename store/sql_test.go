package store

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
)

// sqlCanary is a password holding every character a DSN must escape.
const sqlCanary = "c@n#ry%P4ss:zz/9"

func assertNoSecret(t *testing.T, what, text string) {
	t.Helper()
	for _, form := range []string{sqlCanary, url.QueryEscape(sqlCanary), url.PathEscape(sqlCanary), "P4ss"} {
		if strings.Contains(text, form) {
			t.Errorf("%s shows the password (%q): %s", what, form, text)
		}
	}
}

// TestConcurrentMigration: eight sidecars start at once on an empty
// database; all open, each table is created once, the schema version is
// recorded once, and a ninth start takes the fast path.
func TestConcurrentMigration(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		name := testDB + "_mig"
		if err := sv.createDB(name); err != nil {
			t.Fatal(err)
		}
		dsn := sv.storeDSN(sv.adminUser(), "", name)
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		stores := make([]*SQL, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				stores[i], errs[i] = OpenSQL(context.Background(), dsn, zap.NewNop(), WithInstance("mig", fmt.Sprintf("web-%d", i)))
			}()
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("sidecar %d: %v", i, err)
				continue
			}
			defer stores[i].Close()
		}
		if t.Failed() {
			return
		}
		var rows int
		if err := stores[0].db.QueryRow(`SELECT COUNT(*) FROM pulsegate_schema_version`).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != len(migrations) {
			t.Errorf("pulsegate_schema_version has %d rows after %d concurrent starts; want %d (one per migration)", rows, n, len(migrations))
		}
		// Every sidecar writes and sees the fleet's audit log.
		for i, s := range stores {
			if err := s.AppendAudit(AuditEntry{Action: ActionConfigUpdate, Outcome: OutcomeOK, Actor: fmt.Sprint(i)}); err != nil {
				t.Fatal(err)
			}
		}
		got, err := stores[3].Audit(100, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != n {
			t.Errorf("fleet audit log has %d entries; want %d", len(got), n)
		}
	})
}

// TestMissingPrivilegeNamesGrantAndTable: a user that may only read gets
// one error naming the privilege, the table and the GRANT to run; a user
// that may not create tables in an empty database gets the CREATE grant.
// Neither error shows the password.
func TestMissingPrivilegeNamesGrantAndTable(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		const user = "pulsegate_i11_ro"
		empty := testDB + "_empty"
		if err := sv.createDB(empty); err != nil {
			t.Fatal(err)
		}
		// The tables exist in testDB (made by the admin's store).
		openSQLTest(t, sv.storeDSN(sv.adminUser(), "", testDB), WithInstance(fleetName(t), "admin")).Close()
		pwSQL := strings.ReplaceAll(sqlCanary, "'", "''")
		if sv.driver == "mysql" {
			_ = sv.adminExec("DROP USER IF EXISTS '" + user + "'@'%'")
			if err := sv.adminExec("CREATE USER '"+user+"'@'%' IDENTIFIED BY '"+pwSQL+"'",
				"GRANT SELECT ON "+testDB+".* TO '"+user+"'@'%'",
				"GRANT SELECT ON "+empty+".* TO '"+user+"'@'%'"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = sv.adminExec("DROP USER IF EXISTS '" + user + "'@'%'") })
		} else {
			_ = sv.adminExecIn(testDB, "DROP OWNED BY "+user)
			_ = sv.adminExecIn(empty, "DROP OWNED BY "+user)
			_ = sv.adminExec("DROP ROLE IF EXISTS " + user)
			if err := sv.adminExec("CREATE ROLE " + user + " LOGIN PASSWORD '" + pwSQL + "'"); err != nil {
				t.Fatal(err)
			}
			if err := sv.adminExecIn(testDB, "GRANT SELECT ON ALL TABLES IN SCHEMA public TO "+user); err != nil {
				t.Fatal(err)
			}
			if err := sv.adminExecIn(empty, "REVOKE CREATE ON SCHEMA public FROM PUBLIC"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				_ = sv.adminExecIn(testDB, "DROP OWNED BY "+user)
				_ = sv.adminExecIn(empty, "DROP OWNED BY "+user)
				_ = sv.adminExec("DROP ROLE IF EXISTS " + user)
			})
		}
		pw := url.QueryEscape(sqlCanary)

		_, err := OpenSQL(context.Background(), sv.storeDSN(user, pw, testDB), zap.NewNop(), WithInstance("ro", "web-1"))
		if err == nil {
			t.Fatal("a read-only user opened the store")
		}
		msg := err.Error()
		assertNoSecret(t, "privilege error", msg)
		for _, want := range []string{"store.dsn", "INSERT privilege on table pulsegate_alerts", "GRANT SELECT, INSERT, UPDATE, DELETE", user} {
			if !strings.Contains(msg, want) {
				t.Errorf("read-only user's error %q does not say %q", msg, want)
			}
		}

		_, err = OpenSQL(context.Background(), sv.storeDSN(user, pw, empty), zap.NewNop(), WithInstance("ro", "web-1"))
		if err == nil {
			t.Fatal("a user without CREATE opened the store on an empty database")
		}
		msg = err.Error()
		assertNoSecret(t, "privilege error", msg)
		for _, want := range []string{"CREATE privilege on table pulsegate_schema_version", "GRANT CREATE"} {
			if !strings.Contains(msg, want) {
				t.Errorf("no-CREATE user's error %q does not say %q", msg, want)
			}
		}
	})
}

// TestConnectErrorsHideThePassword: a wrong password and an unreachable
// server give errors naming the setting and the masked DSN.
func TestConnectErrorsHideThePassword(t *testing.T) {
	mariadb.ready(t)
	pw := url.QueryEscape(sqlCanary)
	for _, dsn := range []string{
		"mysql://root:" + pw + "@" + mysqlHost + "/" + testDB,
		"mysql://root:" + pw + "@127.0.0.1:1/" + testDB,
		"postgres://postgres:" + pw + "@127.0.0.1:1/" + testDB,
		"sqlite://u:" + pw + "@h/x",
	} {
		_, err := OpenSQL(context.Background(), dsn, zap.NewNop(), WithOpTimeout(2*time.Second))
		if err == nil {
			t.Errorf("opened with a bad DSN")
			continue
		}
		assertNoSecret(t, "error", err.Error())
		if !strings.Contains(err.Error(), "store.dsn (RESPONSIVENESS_STORE_DSN)") {
			t.Errorf("error %q does not name the setting", err)
		}
	}
}

// TestInstancesKeepTheirOwnAlertsAndShareTheAuditLog: two sidecars of one
// fleet on one database load only their own alerts; the audit log is the
// fleet's, each entry naming its instance; another fleet sees neither.
func TestInstancesKeepTheirOwnAlertsAndShareTheAuditLog(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		fleet := fleetName(t)
		dsn := sv.storeDSN(sv.adminUser(), "", testDB)
		a := openSQLTest(t, dsn, WithInstance(fleet, "web-a"))
		b := openSQLTest(t, dsn, WithInstance(fleet, "web-b"))
		other := openSQLTest(t, dsn, WithInstance(fleet+"x", "web-a"))
		if err := a.SaveAlert(AlertRecord{ID: "same-id", Key: "cpu_usage", State: StateFiring, FirstSeen: t0}); err != nil {
			t.Fatal(err)
		}
		if err := b.SaveAlert(AlertRecord{ID: "same-id", Key: "memory_usage", State: StateFiring, FirstSeen: t0}); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			s   *SQL
			key string
		}{{a, "cpu_usage"}, {b, "memory_usage"}} {
			got, err := c.s.LoadAlerts()
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 1 || got[0].Key != c.key {
				t.Errorf("%s loads %+v; want only its own %s", c.s.instance, got, c.key)
			}
		}
		_ = a.AppendAudit(AuditEntry{Action: ActionConfigUpdate, Outcome: OutcomeOK, Time: t0})
		_ = b.AppendAudit(AuditEntry{Action: ActionAlertAcknowledge, Outcome: OutcomeOK, Time: t0.Add(time.Second)})
		log, err := a.Audit(10, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		if len(log) != 2 || log[0].Instance != "web-b" || log[1].Instance != "web-a" {
			t.Errorf("fleet audit log = %+v; want web-b's then web-a's entry", log)
		}
		if got, _ := other.Audit(10, time.Time{}); len(got) != 0 {
			t.Errorf("another fleet sees %d audit entries", len(got))
		}
		if got, _ := other.LoadAlerts(); len(got) != 0 {
			t.Errorf("another fleet sees %d alerts", len(got))
		}
	})
}

// TestNewerSchemaRefused: a database migrated by a newer pulsegate is
// refused with the versions named, not written to.
func TestNewerSchemaRefused(t *testing.T) {
	sqlServers(t, func(t *testing.T, sv *server) {
		name := testDB + "_newer"
		if err := sv.createDB(name); err != nil {
			t.Fatal(err)
		}
		dsn := sv.storeDSN(sv.adminUser(), "", name)
		s := openSQLTest(t, dsn)
		if _, err := s.db.Exec(s.rebind(`INSERT INTO pulsegate_schema_version (version, applied_us, instance) VALUES (?, 0, 'future')`), SchemaVersion()+1); err != nil {
			t.Fatal(err)
		}
		_, err := OpenSQL(context.Background(), dsn, zap.NewNop())
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("schema version %d", SchemaVersion()+1)) {
			t.Errorf("err = %v; want one naming the newer schema version", err)
		}
	})
}
