// Package httpapi serves GraphQL over HTTP, following the GraphQL-over-HTTP
// specification: POST with application/json bodies and GET for queries,
// content negotiation between application/graphql-response+json and
// application/json, and the status codes that go with each.
package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/99designs/gqlgen/graphql"
	"github.com/vektah/gqlparser/v2/ast"
	"github.com/vektah/gqlparser/v2/gqlerror"

	"mutuo/internal/httpx"
	"mutuo/lending"
)

// Media types.
const (
	MediaGraphQLResponse = "application/graphql-response+json"
	MediaJSON            = "application/json"
)

// DefaultMaxBodyBytes is the largest request body accepted.
const DefaultMaxBodyBytes = 1 << 20

// Transport is the HTTP transport for gqlgen's executor. It never runs a
// mutation over GET, refuses batches, and refuses bodies over MaxBodyBytes
// with 413 without echoing them.
type Transport struct {
	MaxBodyBytes int64
}

var _ graphql.Transport = Transport{}

// Supports takes every GET and POST that is not a websocket upgrade, and
// every other method (to answer 405).
func (Transport) Supports(r *http.Request) bool {
	return !httpx.WebsocketUpgrade(r)
}

type params struct {
	Query         string         `json:"query"`
	OperationName string         `json:"operationName"`
	Variables     map[string]any `json:"variables"`
	Extensions    map[string]any `json:"extensions"`
}

// Do serves one request.
func (t Transport) Do(w http.ResponseWriter, r *http.Request, exec graphql.GraphExecutor) {
	media, ok := negotiate(r.Header.Get("Accept"))
	if !ok {
		w.Header().Set("Content-Type", MediaJSON)
		writeError(w, http.StatusNotAcceptable, "not acceptable: this endpoint answers "+MediaGraphQLResponse+" or "+MediaJSON, lending.CodeBadUserInput)
		return
	}
	w.Header().Set("Content-Type", media+"; charset=utf-8")
	w.Header().Set("Vary", "Accept")

	var p params
	switch r.Method {
	case http.MethodPost:
		if !isJSONContentType(r.Header.Get("Content-Type")) {
			writeError(w, http.StatusUnsupportedMediaType, "unsupported media type: send "+MediaJSON, lending.CodeBadUserInput)
			return
		}
		if status, msg := t.decodeBody(w, r, &p); status != 0 {
			writeError(w, status, msg, lending.CodeBadUserInput)
			return
		}
	case http.MethodGet, http.MethodHead:
		if status, msg := decodeQueryString(r, &p); status != 0 {
			writeError(w, status, msg, lending.CodeBadUserInput)
			return
		}
	default:
		w.Header().Set("Allow", "GET, POST")
		writeError(w, http.StatusMethodNotAllowed, "method not allowed: use POST (or GET for queries)", lending.CodeBadUserInput)
		return
	}

	raw := &graphql.RawParams{Query: p.Query, OperationName: p.OperationName, Variables: p.Variables, Extensions: p.Extensions,
		Headers: r.Header}
	ctx := r.Context()
	rc, errs := exec.CreateOperationContext(ctx, raw)
	if errs != nil {
		resp := exec.DispatchError(graphql.WithOperationContext(ctx, rc), errs)
		status := http.StatusOK
		if media == MediaGraphQLResponse {
			status = http.StatusBadRequest
		}
		writeRequestError(w, status, resp)
		return
	}
	switch rc.Operation.Operation {
	case ast.Mutation:
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", "POST")
			writeError(w, http.StatusMethodNotAllowed, "mutations must be sent with POST", lending.CodeBadUserInput)
			return
		}
	case ast.Subscription:
		writeError(w, http.StatusBadRequest, "subscriptions are served over websockets at this path (graphql-transport-ws)", lending.CodeBadUserInput)
		return
	}
	handler, ctx := exec.DispatchOperation(ctx, rc)
	resp := handler(ctx)
	if resp == nil {
		// never answer a bare null: the executor gave nothing (its context
		// ended before execution)
		writeRequestError(w, http.StatusServiceUnavailable, &graphql.Response{Errors: gqlerror.List{{
			Message: "the operation did not run", Extensions: map[string]any{"code": string(lending.CodeInternal)}}}})
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

// decodeBody reads a JSON request body, bounded; it returns a status and
// message on failure (never echoing the body).
func (t Transport) decodeBody(w http.ResponseWriter, r *http.Request, p *params) (int, string) {
	limit := t.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return http.StatusRequestEntityTooLarge, "request body too large: the limit is " + strconv.FormatInt(limit, 10) + " bytes"
		}
		return http.StatusBadRequest, "could not read the request body"
	}
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		return http.StatusBadRequest, "batched requests (a JSON array) are not supported: send one operation per request"
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(p); err != nil || dec.More() {
		return http.StatusBadRequest, "the request body must be a JSON object with a \"query\" string"
	}
	if p.Query == "" && len(p.Extensions) == 0 {
		return http.StatusBadRequest, "the request has no query"
	}
	return 0, ""
}

func decodeQueryString(r *http.Request, p *params) (int, string) {
	q := r.URL.Query()
	p.Query = q.Get("query")
	p.OperationName = q.Get("operationName")
	if p.Query == "" && q.Get("extensions") == "" {
		return http.StatusBadRequest, "the request has no query"
	}
	for name, dst := range map[string]*map[string]any{"variables": &p.Variables, "extensions": &p.Extensions} {
		if s := q.Get(name); s != "" {
			dec := json.NewDecoder(strings.NewReader(s))
			dec.UseNumber()
			if err := dec.Decode(dst); err != nil {
				return http.StatusBadRequest, "the " + name + " parameter must be a JSON object"
			}
		}
	}
	return 0, ""
}

func isJSONContentType(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != MediaJSON {
		return false
	}
	cs, ok := params["charset"]
	return !ok || strings.EqualFold(cs, "utf-8")
}

// negotiate picks the response media type from an Accept header: no header
// means application/json (legacy clients); otherwise the acceptable type
// with the highest q, application/graphql-response+json winning ties.
func negotiate(accept string) (string, bool) {
	if strings.TrimSpace(accept) == "" {
		return MediaJSON, true
	}
	bestQ, best := 0.0, ""
	for _, part := range strings.Split(accept, ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if s, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(s, 64); err == nil {
				q = f
			}
		}
		if q <= 0 {
			continue
		}
		var cand string
		switch mt {
		case MediaGraphQLResponse:
			cand = MediaGraphQLResponse
		case MediaJSON, "application/*", "*/*":
			cand = MediaJSON
		default:
			continue
		}
		if q > bestQ || (q == bestQ && cand == MediaGraphQLResponse) {
			bestQ, best = q, cand
		}
	}
	return best, best != ""
}

func writeJSON(w http.ResponseWriter, status int, resp *graphql.Response) {
	b, err := json.Marshal(resp)
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeRequestError writes a response to a request that never executed: it
// has errors and no "data" entry at all, as the specification requires.
func writeRequestError(w http.ResponseWriter, status int, resp *graphql.Response) {
	b, err := json.Marshal(struct {
		Errors     gqlerror.List  `json:"errors"`
		Extensions map[string]any `json:"extensions,omitempty"`
	}{resp.Errors, resp.Extensions})
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"errors":[{"message":"internal error","extensions":{"code":"INTERNAL"}}]}`)
	}
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeError(w http.ResponseWriter, status int, msg string, code lending.Code) {
	writeRequestError(w, status, &graphql.Response{Errors: gqlerror.List{{Message: msg, Extensions: map[string]any{"code": string(code)}}}})
}
