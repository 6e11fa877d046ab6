// Package store keeps pulsegate's alert history, acknowledgements and
// audit log behind one interface, Backend, with two implementations: the
// embedded bbolt store (*Store, one file <data_dir>/pulsegate.db, the
// zero-setup default for one instance) and the shared SQL store (*SQL,
// MySQL/MariaDB or PostgreSQL, for the replicas of one app; it also holds
// the Fleet tables: heartbeats with rollups, fleet configuration versions
// and fleet alerts). OpenFromConfig picks one from the configuration;
// Writer queues writes to the shared store off the request path. The
// package holds the record types (AlertRecord, Acknowledgement,
// AuditEntry) so that alerts and adminapi share them without importing
// each other.
//
// The bbolt file is opened once per process (bbolt takes an exclusive
// lock); a second process on the same data directory fails fast with a
// clear error. A corrupt file or an unusable directory is an error from
// Open naming the path, never silent loss: the file is checked page by
// page on open.
//
// Retention is bounded: PruneAlerts keeps the newest resolved alerts
// (callers pass alerts.history_size), and the audit log keeps the newest
// AuditRetention entries (default 10 000), dropping the oldest on append.
package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
	"go.uber.org/zap"
)

// FileName is the store's file inside the data directory.
const FileName = "pulsegate.db"

// Defaults for Open's options.
const (
	DefaultAuditRetention = 10000
	DefaultLockTimeout    = time.Second
	// DefaultAuditLimit is how many entries Audit returns for limit <= 0.
	DefaultAuditLimit = 100
)

var (
	bucketAlerts = []byte("alerts")
	bucketAcks   = []byte("acknowledgements")
	bucketAudit  = []byte("audit")
	bucketMeta   = []byte("meta")

	keyAuditCount = []byte("audit_count")
	keySchema     = []byte("schema")
)

const schemaVersion = 1

// ErrLocked is returned (wrapped) by Open when another process holds the store.
var ErrLocked = errors.New("store is locked by another process")

// Store is the open bbolt file. Its methods are safe for concurrent use.
type Store struct {
	db             *bbolt.DB
	path           string
	log            *zap.Logger
	auditRetention int
	now            func() time.Time
}

// Option adjusts Open.
type Option func(*options)

type options struct {
	auditRetention int
	lockTimeout    time.Duration
	now            func() time.Time
	// SQL store only.
	fleet, instance string
	opTimeout       time.Duration
}

func defaultOptions() options {
	return options{auditRetention: DefaultAuditRetention, lockTimeout: DefaultLockTimeout, now: time.Now,
		fleet: "default", instance: "localhost", opTimeout: DefaultOpTimeout}
}

// WithAuditRetention keeps at most n audit entries (default 10 000); n <= 0 keeps the default.
func WithAuditRetention(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.auditRetention = n
		}
	}
}

// WithLockTimeout is how long Open waits for another process's lock (default 1 s).
func WithLockTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.lockTimeout = d
		}
	}
}

// WithClock sets the clock that stamps audit entries appended without a time.
func WithClock(now func() time.Time) Option {
	return func(o *options) {
		if now != nil {
			o.now = now
		}
	}
}

// Open opens (creating if needed) dir/pulsegate.db. dir is created with
// mode 0700. It fails with an error naming the path when the directory
// cannot be created or written, when another process holds the file
// (after the lock timeout; errors.Is(err, ErrLocked)), or when the file is
// not a valid store or fails its consistency check.
func Open(dir string, log *zap.Logger, opts ...Option) (*Store, error) {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if log == nil {
		log = zap.NewNop()
	}
	if dir == "" {
		return nil, errors.New("opening store: data_dir is empty")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("opening store: creating data_dir %s: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("opening store: data_dir %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("opening store: data_dir %s is not a directory", dir)
	}
	path := filepath.Join(dir, FileName)

	db, err := openBolt(path, o.lockTimeout)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, path: path, log: log, auditRetention: o.auditRetention, now: o.now}
	if err := s.check(); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.init(); err != nil {
		_ = db.Close()
		return nil, err
	}
	var nAlerts, nAudit int
	_ = db.View(func(tx *bbolt.Tx) error {
		nAlerts = tx.Bucket(bucketAlerts).Stats().KeyN
		nAudit = int(getUint(tx.Bucket(bucketMeta), keyAuditCount))
		return nil
	})
	log.Info("store_opened", zap.String("path", path), zap.Int("alerts", nAlerts), zap.Int("audit_entries", nAudit))
	return s, nil
}

func openBolt(path string, lockTimeout time.Duration) (db *bbolt.DB, err error) {
	defer func() {
		// bbolt panics on some malformed files instead of returning an error.
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("opening store %s: file is corrupt (%v); move it aside to start with an empty store", path, r)
		}
	}()
	db, err = bbolt.Open(path, 0o600, &bbolt.Options{Timeout: lockTimeout})
	switch {
	case err == nil:
		return db, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, fmt.Errorf("opening store %s: %w (waited %s): is another pulsegate running with the same data_dir?", path, ErrLocked, lockTimeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, fmt.Errorf("opening store %s: file is corrupt or not a pulsegate store: %w; move it aside to start with an empty store", path, err)
	default:
		return nil, fmt.Errorf("opening store %s: %w", path, err)
	}
}

// check runs bbolt's page-level consistency check.
func (s *Store) check() (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("checking store %s: file is corrupt (%v); move it aside to start with an empty store", s.path, r)
		}
	}()
	var problems []error
	if verr := s.db.View(func(tx *bbolt.Tx) error {
		for e := range tx.Check() {
			if len(problems) < 5 {
				problems = append(problems, e)
			}
		}
		return nil
	}); verr != nil {
		return fmt.Errorf("checking store %s: %w", s.path, verr)
	}
	if len(problems) > 0 {
		return fmt.Errorf("checking store %s: file is corrupt: %w; move it aside to start with an empty store", s.path, errors.Join(problems...))
	}
	return nil
}

func (s *Store) init() error {
	err := s.db.Update(func(tx *bbolt.Tx) error {
		for _, b := range [][]byte{bucketAlerts, bucketAcks, bucketAudit, bucketMeta} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("creating bucket %s: %w", b, err)
			}
		}
		meta := tx.Bucket(bucketMeta)
		if v := getUint(meta, keySchema); v > schemaVersion {
			return fmt.Errorf("schema version %d is newer than this pulsegate understands (%d)", v, schemaVersion)
		}
		return putUint(meta, keySchema, schemaVersion)
	})
	if err != nil {
		return fmt.Errorf("initialising store %s: %w", s.path, err)
	}
	return nil
}

// Path is the store file's path.
func (s *Store) Path() string { return s.path }

// Close releases the file and its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("closing store %s: %w", s.path, err)
	}
	return nil
}

// SaveAlert writes one alert record (and its acknowledgement, if any).
func (s *Store) SaveAlert(a AlertRecord) error { return s.SaveAlerts(a) }

// SaveAlerts writes alert records (and their acknowledgements) in one
// transaction: all or none.
func (s *Store) SaveAlerts(as ...AlertRecord) error {
	if len(as) == 0 {
		return nil
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		alerts, acks := tx.Bucket(bucketAlerts), tx.Bucket(bucketAcks)
		for _, a := range as {
			if a.ID == "" {
				return errors.New("alert record has no id")
			}
			a.AckNote = Truncate(a.AckNote, MaxTextLen)
			a.AcknowledgedBy = Truncate(a.AcknowledgedBy, MaxTextLen)
			v, err := json.Marshal(a)
			if err != nil {
				return fmt.Errorf("encoding alert %s: %w", a.ID, err)
			}
			if err := alerts.Put([]byte(a.ID), v); err != nil {
				return fmt.Errorf("writing alert %s: %w", a.ID, err)
			}
			if a.AcknowledgedAt == nil {
				continue
			}
			ack, err := json.Marshal(Acknowledgement{AlertID: a.ID, Time: *a.AcknowledgedAt, By: a.AcknowledgedBy, Note: a.AckNote})
			if err != nil {
				return fmt.Errorf("encoding acknowledgement of %s: %w", a.ID, err)
			}
			if err := acks.Put([]byte(a.ID), ack); err != nil {
				return fmt.Errorf("writing acknowledgement of %s: %w", a.ID, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("saving alerts to %s: %w", s.path, err)
	}
	return nil
}

// LoadAlerts returns every stored alert, newest first (by first_seen),
// with acknowledgement fields filled from the acknowledgements bucket.
func (s *Store) LoadAlerts() ([]AlertRecord, error) {
	var out []AlertRecord
	err := s.db.View(func(tx *bbolt.Tx) error {
		acks := tx.Bucket(bucketAcks)
		return tx.Bucket(bucketAlerts).ForEach(func(k, v []byte) error {
			var a AlertRecord
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decoding alert %q: %w", k, err)
			}
			if raw := acks.Get(k); raw != nil {
				var ack Acknowledgement
				if err := json.Unmarshal(raw, &ack); err != nil {
					return fmt.Errorf("decoding acknowledgement of %q: %w", k, err)
				}
				t := ack.Time
				a.AcknowledgedAt, a.AcknowledgedBy, a.AckNote = &t, ack.By, ack.Note
			}
			out = append(out, a)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("loading alerts from %s: %w", s.path, err)
	}
	SortNewestFirst(out)
	return out, nil
}

// Acknowledgements returns every stored acknowledgement, newest first.
func (s *Store) Acknowledgements() ([]Acknowledgement, error) {
	var out []Acknowledgement
	err := s.db.View(func(tx *bbolt.Tx) error {
		return tx.Bucket(bucketAcks).ForEach(func(k, v []byte) error {
			var ack Acknowledgement
			if err := json.Unmarshal(v, &ack); err != nil {
				return fmt.Errorf("decoding acknowledgement of %q: %w", k, err)
			}
			out = append(out, ack)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("loading acknowledgements from %s: %w", s.path, err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Time.After(out[j].Time) })
	return out, nil
}

// SortNewestFirst orders alerts by first_seen, newest first, ties by id.
func SortNewestFirst(as []AlertRecord) {
	sort.SliceStable(as, func(i, j int) bool {
		if !as[i].FirstSeen.Equal(as[j].FirstSeen) {
			return as[i].FirstSeen.After(as[j].FirstSeen)
		}
		return as[i].ID > as[j].ID
	})
}

// PruneAlerts keeps the newest keep resolved alerts (by resolved_at) and
// deletes older resolved ones with their acknowledgements. Active
// (firing or acknowledged) alerts are never pruned.
func (s *Store) PruneAlerts(keep int) error {
	if keep < 0 {
		return fmt.Errorf("pruning alerts: keep must be >= 0, got %d", keep)
	}
	err := s.db.Update(func(tx *bbolt.Tx) error {
		type rec struct {
			id       []byte
			resolved time.Time
		}
		var resolved []rec
		alerts := tx.Bucket(bucketAlerts)
		if err := alerts.ForEach(func(k, v []byte) error {
			var a struct {
				State      string     `json:"state"`
				ResolvedAt *time.Time `json:"resolved_at"`
			}
			if err := json.Unmarshal(v, &a); err != nil {
				return fmt.Errorf("decoding alert %q: %w", k, err)
			}
			if a.State != StateResolved {
				return nil
			}
			r := rec{id: bytes.Clone(k)}
			if a.ResolvedAt != nil {
				r.resolved = *a.ResolvedAt
			}
			resolved = append(resolved, r)
			return nil
		}); err != nil {
			return err
		}
		if len(resolved) <= keep {
			return nil
		}
		sort.SliceStable(resolved, func(i, j int) bool {
			if !resolved[i].resolved.Equal(resolved[j].resolved) {
				return resolved[i].resolved.After(resolved[j].resolved)
			}
			return bytes.Compare(resolved[i].id, resolved[j].id) > 0
		})
		acks := tx.Bucket(bucketAcks)
		for _, r := range resolved[keep:] {
			if err := alerts.Delete(r.id); err != nil {
				return err
			}
			if err := acks.Delete(r.id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pruning alerts in %s: %w", s.path, err)
	}
	return nil
}

// AppendAudit appends one entry to the audit log (time-ordered; a zero
// Time is stamped with the store's clock). Text fields longer than
// MaxTextLen are cut. When the log holds more than its retention, the
// oldest entries are dropped.
func (s *Store) AppendAudit(e AuditEntry) error {
	if e.Action == "" {
		return errors.New("appending audit entry: action is required")
	}
	if e.Time.IsZero() {
		e.Time = s.now()
	}
	e = e.bounded()
	v, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("appending audit entry: encoding: %w", err)
	}
	err = s.db.Update(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketAudit)
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		if err := b.Put(auditKey(e.Time, seq), v); err != nil {
			return err
		}
		meta := tx.Bucket(bucketMeta)
		n := getUint(meta, keyAuditCount) + 1
		c := b.Cursor()
		for k, _ := c.First(); k != nil && n > uint64(s.auditRetention); k, _ = c.First() {
			if err := c.Delete(); err != nil {
				return err
			}
			n--
		}
		return putUint(meta, keyAuditCount, n)
	})
	if err != nil {
		return fmt.Errorf("appending audit entry to %s: %w", s.path, err)
	}
	return nil
}

// Audit returns up to limit entries older than before (zero: no bound),
// newest first. limit <= 0 means DefaultAuditLimit.
func (s *Store) Audit(limit int, before time.Time) ([]AuditEntry, error) {
	if limit <= 0 {
		limit = DefaultAuditLimit
	}
	out := make([]AuditEntry, 0, min(limit, 256))
	err := s.db.View(func(tx *bbolt.Tx) error {
		c := tx.Bucket(bucketAudit).Cursor()
		var k, v []byte
		if before.IsZero() {
			k, v = c.Last()
		} else {
			// Seek lands on the first key >= before; step back from there.
			k, _ = c.Seek(auditKey(before, 0))
			if k == nil {
				k, v = c.Last()
			} else {
				k, v = c.Prev()
			}
		}
		for ; k != nil && len(out) < limit; k, v = c.Prev() {
			var e AuditEntry
			if err := json.Unmarshal(v, &e); err != nil {
				return fmt.Errorf("decoding audit entry %x: %w", k, err)
			}
			if !before.IsZero() && !e.Time.Before(before) {
				continue
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("reading audit log from %s: %w", s.path, err)
	}
	return out, nil
}

// auditKey orders entries by time, then by append sequence.
func auditKey(t time.Time, seq uint64) []byte {
	k := make([]byte, 16)
	ns := t.UnixNano()
	if ns < 0 {
		ns = 0
	}
	binary.BigEndian.PutUint64(k[:8], uint64(ns))
	binary.BigEndian.PutUint64(k[8:], seq)
	return k
}

func getUint(b *bbolt.Bucket, k []byte) uint64 {
	v := b.Get(k)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func putUint(b *bbolt.Bucket, k []byte, n uint64) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, n)
	return b.Put(k, v)
}
