// krkn: added to tailscale.com/ipn/ipnlocal by go build -overlay (packages/tailnet-wasm/build.sh).
// Go on js has no file system, so the netmap cache (netmapcache.FileStore upstream) lives in the
// node's own state store instead: one state key per profile, holding the cache's keys as a JSON
// object. The state store is the one place krkn persists a node (0600 file, atomic writes).

package ipnlocal

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"maps"
	"slices"
	"strings"

	"tailscale.com/ipn"
	"tailscale.com/ipn/ipnlocal/netmapcache"
)

// netmapCacheStateKey is where a profile's cached netmap lives in the state store.
func netmapCacheStateKey(id ipn.ProfileID) string { return "_krkn-netmap-cache/" + string(id) }

// stateCacheStore is a netmapcache.Store inside one key of an ipn.StateStore.
type stateCacheStore struct {
	store ipn.StateStore
	key   ipn.StateKey
}

func newStateCacheStore(store ipn.StateStore, key string) stateCacheStore {
	return stateCacheStore{store: store, key: ipn.StateKey(key)}
}

func (s stateCacheStore) read() (map[string][]byte, error) {
	bs, err := s.store.ReadState(s.key)
	if errors.Is(err, ipn.ErrStateNotExist) {
		return map[string][]byte{}, nil
	} else if err != nil {
		return nil, err
	}
	m := map[string][]byte{}
	if err := json.Unmarshal(bs, &m); err != nil {
		return nil, fmt.Errorf("netmap cache %s: %w", s.key, err)
	}
	return m, nil
}

func (s stateCacheStore) write(m map[string][]byte) error {
	if len(m) == 0 {
		return s.store.WriteState(s.key, nil) // our host deletes a key written as nil
	}
	bs, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.store.WriteState(s.key, bs)
}

func (s stateCacheStore) List(ctx context.Context, prefix string) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		m, err := s.read()
		if err != nil {
			yield("", err)
			return
		}
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if strings.HasPrefix(k, prefix) && !yield(k, nil) {
				return
			}
		}
	}
}

func (s stateCacheStore) Load(ctx context.Context, key string) ([]byte, error) {
	m, err := s.read()
	if err != nil {
		return nil, err
	}
	v, ok := m[key]
	if !ok {
		return nil, fmt.Errorf("key %q not found: %w", key, netmapcache.ErrKeyNotFound)
	}
	return v, nil
}

func (s stateCacheStore) Store(ctx context.Context, key string, value []byte) error {
	m, err := s.read()
	if err != nil {
		return err
	}
	m[key] = value
	return s.write(m)
}

func (s stateCacheStore) Remove(ctx context.Context, key string) error {
	m, err := s.read()
	if err != nil {
		return err
	}
	if _, ok := m[key]; !ok {
		return nil
	}
	delete(m, key)
	return s.write(m)
}
