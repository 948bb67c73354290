//go:build js

package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall/js"
)

// host wraps the callbacks the JavaScript side provides. All of them are synchronous and must
// not call back into Go; the ones that wait (fetch) return a Promise.
//
//	ready()                                  the API is installed on bridge.go
//	log(line: string)                        one line of the node's own log
//	notify(event: string)                    a JSON event: state, loginUrl, self, peers, health, error
//	stateGet(key: string): Uint8Array|null   read one key of the persisted state
//	stateSet(key: string, value: Uint8Array) write one key, durably, before returning
//	fetch(req: object): Promise<object>      an HTTP request to the control server
//	accepted(port, id, remote, local)        a new inbound connection on a listened port
//	data(id, bytes: Uint8Array): boolean     bytes read from a connection; false = pause reading
//	closed(id, err: string)                  the connection's read side ended ("" = clean EOF)
type host struct {
	v js.Value
}

func (h *host) call(name string, args ...any) js.Value {
	return h.v.Call(name, args...)
}

// notify sends one JSON event to the host.
func (h *host) notify(event any) {
	b, err := json.Marshal(event)
	if err != nil {
		h.call("log", fmt.Sprintf("tailnet-wasm: cannot encode event %T: %v", event, err))
		return
	}
	h.call("notify", string(b))
}

// logWriter returns a writer that sends each complete line to host.log.
func (h *host) logWriter() io.Writer {
	return &lineWriter{emit: func(line string) { h.call("log", line) }}
}

type lineWriter struct {
	buf  strings.Builder
	emit func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	s := w.buf.String()
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			break
		}
		w.emit(s[:i])
		s = s[i+1:]
	}
	w.buf.Reset()
	w.buf.WriteString(s)
	return len(p), nil
}

// bytesToJS copies b into a new Uint8Array.
func bytesToJS(b []byte) js.Value {
	a := js.Global().Get("Uint8Array").New(len(b))
	js.CopyBytesToJS(a, b)
	return a
}

// bytesFromJS copies a Uint8Array into a new slice.
func bytesFromJS(v js.Value) []byte {
	b := make([]byte, v.Get("length").Int())
	js.CopyBytesToGo(b, v)
	return b
}

// await blocks the calling goroutine (never the JS thread's own stack) until p settles.
func await(p js.Value) (js.Value, error) {
	type result struct {
		v   js.Value
		err error
	}
	ch := make(chan result, 1)
	var onOK, onErr js.Func
	onOK = js.FuncOf(func(this js.Value, args []js.Value) any {
		ch <- result{v: args[0]}
		return nil
	})
	onErr = js.FuncOf(func(this js.Value, args []js.Value) any {
		msg := "rejected"
		if len(args) > 0 {
			msg = jsErrorString(args[0])
		}
		ch <- result{err: errors.New(msg)}
		return nil
	})
	p.Call("then", onOK, onErr)
	r := <-ch
	onOK.Release()
	onErr.Release()
	return r.v, r.err
}

func jsErrorString(v js.Value) string {
	if v.Type() == js.TypeObject && v.Get("message").Type() == js.TypeString {
		return v.Get("message").String()
	}
	return v.String()
}

// promise runs f on a new goroutine and returns a Promise settled with its result. An error
// rejects with an Error whose code property is the error's code (see codedError).
func promise(f func() (any, error)) js.Value {
	var handler js.Func
	handler = js.FuncOf(func(this js.Value, args []js.Value) any {
		resolve, reject := args[0], args[1]
		go func() {
			defer handler.Release()
			v, err := f()
			if err != nil {
				reject.Invoke(jsError(err))
				return
			}
			resolve.Invoke(v)
		}()
		return nil
	})
	return js.Global().Get("Promise").New(handler)
}

// codedError is an error with a stable code the TypeScript side maps to its own error classes.
type codedError struct {
	code string
	msg  string
}

func (e *codedError) Error() string { return e.msg }

func errorf(code, format string, args ...any) error {
	return &codedError{code: code, msg: fmt.Sprintf(format, args...)}
}

func jsError(err error) js.Value {
	e := js.Global().Get("Error").New(err.Error())
	code := "ENGINE"
	var ce *codedError
	if errors.As(err, &ce) {
		code = ce.code
	}
	e.Set("code", code)
	return e
}

// jsonValue marshals v for the host, which parses it with JSON.parse.
func jsonValue(v any) (any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return string(b), nil
}
