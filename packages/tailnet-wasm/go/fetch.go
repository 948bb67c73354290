//go:build js

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"syscall/js"
)

// hostTransport sends HTTP requests through the host's fetch. Go's own js transport refuses to use
// fetch when process.argv0 starts with "node" and falls back to a fake in-memory network, so the
// control client's plain HTTP requests (GET /key) would never leave the process without it.
type hostTransport struct {
	h *host
}

func (t *hostTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var body js.Value = js.Null()
	if req.Body != nil {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		body = bytesToJS(b)
	}
	headers := []any{}
	for k, vs := range req.Header {
		for _, v := range vs {
			headers = append(headers, []any{k, v})
		}
	}
	p := t.h.call("fetch", map[string]any{
		"method":  req.Method,
		"url":     req.URL.String(),
		"headers": headers,
		"body":    body,
	})

	type result struct {
		v   js.Value
		err error
	}
	done := make(chan result, 1)
	go func() {
		v, err := await(p)
		done <- result{v, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-req.Context().Done():
		return nil, req.Context().Err()
	}
	if r.err != nil {
		return nil, r.err
	}

	res := &http.Response{
		// "404 Not Found", as Go's own transports set it: the control client quotes it in its errors.
		Status:     fmt.Sprintf("%d %s", r.v.Get("status").Int(), http.StatusText(r.v.Get("status").Int())),
		StatusCode: r.v.Get("status").Int(),
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Request:    req,
	}
	jsHeaders := r.v.Get("headers")
	for i := 0; i < jsHeaders.Length(); i++ {
		pair := jsHeaders.Index(i)
		res.Header.Add(pair.Index(0).String(), pair.Index(1).String())
	}
	b := bytesFromJS(r.v.Get("body"))
	res.Body = io.NopCloser(bytes.NewReader(b))
	res.ContentLength = int64(len(b))
	return res, nil
}
