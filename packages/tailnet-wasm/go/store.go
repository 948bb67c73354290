//go:build js

package main

import (
	"fmt"
	"syscall/js"

	"tailscale.com/ipn"
)

// hostStore is an ipn.StateStore backed by the host's synchronous stateGet/stateSet callbacks.
// The host owns durability (atomic file writes); a write returns only once it is on disk.
type hostStore struct {
	h *host
}

func (s *hostStore) ReadState(id ipn.StateKey) ([]byte, error) {
	v, err := s.safeCall("stateGet", string(id))
	if err != nil {
		return nil, err
	}
	if v.IsNull() || v.IsUndefined() {
		return nil, ipn.ErrStateNotExist
	}
	return bytesFromJS(v), nil
}

func (s *hostStore) WriteState(id ipn.StateKey, bs []byte) error {
	var value js.Value = js.Null()
	if bs != nil {
		value = bytesToJS(bs)
	}
	_, err := s.safeCall("stateSet", string(id), value)
	return err
}

// safeCall turns a JavaScript exception (a full disk, a permissions error) into a Go error
// instead of a panic that would take the whole node down.
func (s *hostStore) safeCall(name string, args ...any) (v js.Value, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("state store %s: %v", name, r)
		}
	}()
	return s.h.call(name, args...), nil
}
