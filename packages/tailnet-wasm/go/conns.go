//go:build js

package main

import (
	"io"
	"net"
	"strconv"
	"sync"
	"syscall/js"
)

// A connection reads into a small buffer until a read fills it, then into a large one: an idle
// connection (a peer that connects and sends nothing, perhaps thousands of times) holds 4 KiB, not
// 64 KiB, while a bulk transfer soon reads 64 KiB per data callback, enough that it is not dominated
// by per-call overhead and small enough to keep pauses responsive.
const (
	firstReadChunk = 4 << 10
	readChunk      = 64 << 10
)

// connTable holds the connections the host has open through the node, by a numeric id. Reading
// is host-driven: a connection reads only after resume, and stops again whenever host.data
// returns false (the host's buffer is full), so a slow consumer never makes Go buffer without
// bound.
type connTable struct {
	h    *host
	mu   sync.Mutex
	next int
	m    map[int]*conn

	crossings crossings
}

type conn struct {
	id   int
	c    net.Conn
	wake chan struct{} // resume signal, buffered 1
	done chan struct{} // closed by close
	once sync.Once
}

func newConnTable(h *host) *connTable {
	return &connTable{h: h, m: map[int]*conn{}}
}

func (t *connTable) add(c net.Conn) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.next++
	cn := &conn{id: t.next, c: c, wake: make(chan struct{}, 1), done: make(chan struct{})}
	t.m[cn.id] = cn
	go t.readLoop(cn)
	return cn
}

func (t *connTable) get(id int) *conn {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.m[id]
}

// accept hands an inbound connection to the host. It runs on netstack's goroutine for the flow.
func (t *connTable) accept(port uint16, c net.Conn) {
	cn := t.add(c)
	info := cn.info()
	t.h.call("accepted", int(port), info["id"], info["remote"], info["local"])
}

func (cn *conn) info() map[string]any {
	return map[string]any{
		"id":     cn.id,
		"remote": cn.c.RemoteAddr().String(),
		"local":  cn.c.LocalAddr().String(),
	}
}

func (t *connTable) readLoop(cn *conn) {
	if !cn.waitResume() {
		return
	}
	buf := make([]byte, firstReadChunk)
	for {
		nr, err := cn.c.Read(buf)
		if nr > 0 {
			t.crossings.dataCalls.Add(1)
			t.crossings.dataBytes.Add(int64(nr))
			more := t.h.call("data", cn.id, bytesToJS(buf[:nr])).Bool() // bytesToJS copies
			if nr == len(buf) && len(buf) < readChunk {
				buf = make([]byte, readChunk)
			}
			if !more && !cn.waitResume() {
				return
			}
		}
		if err != nil {
			msg := ""
			if err != io.EOF {
				msg = err.Error()
			}
			select {
			case <-cn.done: // the host closed it; it wants no more callbacks
			default:
				t.h.call("closed", cn.id, msg)
			}
			return
		}
	}
}

// waitResume reports false when the connection was closed while waiting.
func (cn *conn) waitResume() bool {
	select {
	case <-cn.wake:
		return true
	case <-cn.done:
		return false
	}
}

func (t *connTable) resume(id int) {
	if cn := t.get(id); cn != nil {
		select {
		case cn.wake <- struct{}{}:
		default:
		}
	}
}

func (t *connTable) write(id int, b []byte) js.Value {
	t.crossings.writeCalls.Add(1)
	t.crossings.writeBytes.Add(int64(len(b)))
	return promise(func() (any, error) {
		cn := t.get(id)
		if cn == nil {
			return nil, errorf("CONN_CLOSED", "write on closed connection %d", id)
		}
		if _, err := cn.c.Write(b); err != nil {
			return nil, errorf("CONN_WRITE", "write: %v", err)
		}
		return nil, nil
	})
}

func (t *connTable) closeWrite(id int) {
	cn := t.get(id)
	if cn == nil {
		return
	}
	if cw, ok := cn.c.(interface{ CloseWrite() error }); ok {
		go cw.CloseWrite()
	}
}

func (t *connTable) close(id int) {
	t.mu.Lock()
	cn := t.m[id]
	delete(t.m, id)
	t.mu.Unlock()
	if cn != nil {
		cn.once.Do(func() { close(cn.done) })
		go cn.c.Close()
	}
}

func (t *connTable) closeAll() {
	t.mu.Lock()
	ids := make([]int, 0, len(t.m))
	for id := range t.m {
		ids = append(ids, id)
	}
	t.mu.Unlock()
	for _, id := range ids {
		t.close(id)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
