package history

import (
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/bbolt"
)

// Reading the archive back for the shared store's one-time backfill: the
// rows a sidecar wrote before store.dsn was set are copied whole, as a
// flush hands them over (Flushed), one time window at a time.

// ReadRange returns the tier's points and route rows (Tier1m or Tier1h)
// starting in [from, to), each row whole as stored, in the shape a flush
// hands to OnFlush; rows that do not decode are left out.
func (a *Archive) ReadRange(tier int, from, to time.Time) (Flushed, error) {
	var out Flushed
	if tier != Tier1m && tier != Tier1h {
		return out, fmt.Errorf("reading history: tier %d: want the 1 min or 1 h tier", tier)
	}
	lo, hi := key(from.Unix()), key(to.Unix())
	err := a.db.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, tier)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, v := c.Seek(lo); k != nil && string(k) < string(hi); k, v = c.Next() {
			if _, err := decodeRow(k, v); err != nil {
				continue
			}
			out.Points = append(out.Points, StoredPoint{Tier: tier, Start: time.Unix(int64(binary.BigEndian.Uint64(k)), 0).UTC(),
				Data: slices.Clone(v)})
		}
		top := tx.Bucket(routeBuckets[tier])
		if top == nil {
			return nil
		}
		return top.ForEachBucket(func(name []byte) error {
			route := string(name)
			c := top.Bucket(name).Cursor()
			for k, v := c.Seek(lo); k != nil && string(k[:min(8, len(k))]) < string(hi); k, v = c.Next() {
				if len(k) < 8 {
					continue
				}
				d, err := decodeRouteDelta(v, true)
				if err != nil {
					continue
				}
				out.Routes = append(out.Routes, RouteRollup{Route: route, Version: string(k[8:]),
					Start: time.Unix(int64(binary.BigEndian.Uint64(k)), 0).UTC(), Step: TierStep(tier),
					Requests: d.requests, Errors: d.errors, AppErrors: d.appErrors, Buckets: d.buckets,
					SumSeconds: float64(d.sumUS) / 1e6})
			}
			return nil
		})
	})
	if err != nil {
		return Flushed{}, fmt.Errorf("reading history %s: %w", a.path, err)
	}
	return out, nil
}

// CountRange counts the tier's points and route rows starting in [from, to).
func (a *Archive) CountRange(tier int, from, to time.Time) (points, routes int, err error) {
	if tier != Tier1m && tier != Tier1h {
		return 0, 0, fmt.Errorf("counting history: tier %d: want the 1 min or 1 h tier", tier)
	}
	lo, hi := key(from.Unix()), key(to.Unix())
	err = a.db.View(func(tx *bbolt.Tx) error {
		b, err := bucket(tx, tier)
		if err != nil {
			return err
		}
		c := b.Cursor()
		for k, _ := c.Seek(lo); k != nil && string(k) < string(hi); k, _ = c.Next() {
			points++
		}
		top := tx.Bucket(routeBuckets[tier])
		if top == nil {
			return nil
		}
		return top.ForEachBucket(func(name []byte) error {
			c := top.Bucket(name).Cursor()
			for k, _ := c.Seek(lo); k != nil && string(k[:min(8, len(k))]) < string(hi); k, _ = c.Next() {
				routes++
			}
			return nil
		})
	})
	if err != nil {
		return 0, 0, fmt.Errorf("counting history %s: %w", a.path, err)
	}
	return points, routes, nil
}
