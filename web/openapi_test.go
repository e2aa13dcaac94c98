package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// openAPI is docs/openapi.yaml, read as plain maps.
type openAPI struct{ doc map[string]any }

func loadOpenAPI(t *testing.T) openAPI {
	t.Helper()
	b, err := os.ReadFile("../docs/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	return openAPI{doc}
}

// deref follows a $ref within the document.
func (o openAPI) deref(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	ref, ok := v["$ref"].(string)
	if !ok {
		return v
	}
	var cur any = o.doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		m, ok := cur.(map[string]any)
		if !ok {
			t.Fatalf("$ref %s does not resolve", ref)
		}
		cur = m[part]
	}
	m, ok := cur.(map[string]any)
	if !ok {
		t.Fatalf("$ref %s does not resolve to an object", ref)
	}
	return o.deref(t, m)
}

// response is the documented answer of an operation with a status.
func (o openAPI) response(t *testing.T, path, status string) map[string]any {
	t.Helper()
	op, _ := o.doc["paths"].(map[string]any)[path].(map[string]any)["post"].(map[string]any)
	if op == nil {
		t.Fatalf("docs/openapi.yaml has no POST %s", path)
	}
	r, ok := op["responses"].(map[string]any)[status].(map[string]any)
	if !ok {
		t.Fatalf("docs/openapi.yaml does not document %s for POST %s", status, path)
	}
	return o.deref(t, r)
}

// check validates an answer of the server against the document: its
// status is documented, its body matches the schema, its documented
// required headers are there.
func (o openAPI) check(t *testing.T, path string, rec *httptest.ResponseRecorder) {
	t.Helper()
	status := fmt.Sprint(rec.Code)
	r := o.response(t, path, status)
	if hs, ok := r["headers"].(map[string]any); ok {
		for name, h := range hs {
			if req, _ := h.(map[string]any)["required"].(bool); req && rec.Header().Get(name) == "" {
				t.Errorf("POST %s %s: no %s header", path, status, name)
			}
		}
	}
	schema := o.deref(t, r["content"].(map[string]any)["application/json"].(map[string]any)["schema"].(map[string]any))
	var body any
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
		t.Errorf("POST %s %s: body is not JSON: %s", path, status, rec.Body)
		return
	}
	for _, problem := range o.validate(t, schema, body, "body") {
		t.Errorf("POST %s %s: %s\n%s", path, status, problem, rec.Body)
	}
}

// validate checks v against the subset of JSON Schema the document uses:
// type, required, properties, items, enum, allOf, minLength, maxLength,
// pattern.
func (o openAPI) validate(t *testing.T, schema map[string]any, v any, where string) []string {
	schema = o.deref(t, schema)
	var problems []string
	if all, ok := schema["allOf"].([]any); ok {
		for _, s := range all {
			problems = append(problems, o.validate(t, s.(map[string]any), v, where)...)
		}
	}
	if typ, ok := schema["type"]; ok {
		var types []string
		switch tt := typ.(type) {
		case string:
			types = []string{tt}
		case []any:
			for _, x := range tt {
				types = append(types, x.(string))
			}
		}
		if !slices.Contains(types, jsonType(v)) {
			return append(problems, fmt.Sprintf("%s is %s, want %v", where, jsonType(v), types))
		}
	}
	if enum, ok := schema["enum"].([]any); ok && !slices.Contains(enum, v) {
		problems = append(problems, fmt.Sprintf("%s is %v, want one of %v", where, v, enum))
	}
	if s, ok := v.(string); ok {
		if n, ok := schema["minLength"].(int); ok && len(s) < n {
			problems = append(problems, fmt.Sprintf("%s is shorter than %d", where, n))
		}
		if n, ok := schema["maxLength"].(int); ok && len(s) > n {
			problems = append(problems, fmt.Sprintf("%s is longer than %d", where, n))
		}
		if p, ok := schema["pattern"].(string); ok && !regexp.MustCompile(p).MatchString(s) {
			problems = append(problems, fmt.Sprintf("%s %q does not match %s", where, s, p))
		}
	}
	if obj, ok := v.(map[string]any); ok {
		if req, ok := schema["required"].([]any); ok {
			for _, k := range req {
				if _, ok := obj[k.(string)]; !ok {
					problems = append(problems, fmt.Sprintf("%s lacks %s", where, k))
				}
			}
		}
		if props, ok := schema["properties"].(map[string]any); ok {
			for k, ps := range props {
				if pv, ok := obj[k]; ok {
					problems = append(problems, o.validate(t, ps.(map[string]any), pv, where+"."+k)...)
				}
			}
		}
	}
	if arr, ok := v.([]any); ok {
		if items, ok := schema["items"].(map[string]any); ok {
			for i, x := range arr {
				problems = append(problems, o.validate(t, items, x, fmt.Sprintf("%s[%d]", where, i))...)
			}
		}
	}
	return problems
}

func jsonType(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return "string"
	case bool:
		return "boolean"
	case float64:
		if x == float64(int64(x)) {
			return "integer"
		}
		return "number"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	}
	return "unknown"
}

// The server answers the device API as docs/openapi.yaml says, for every
// status it documents.
func TestOpenAPIDescribesTheDeviceAPI(t *testing.T) {
	t.Parallel()
	api := loadOpenAPI(t)
	tw := mustWeb(t, webOptions{Members: []string{"alice"}})
	post := func(addr, path, body string) *httptest.ResponseRecorder {
		return tw.serveFrom(t, addr, "POST", path, "application/json", body, nil)
	}
	seen := map[string][]int{}
	check := func(path string, rec *httptest.ResponseRecorder) {
		t.Helper()
		seen[path] = append(seen[path], rec.Code)
		api.check(t, path, rec)
	}

	// Start: 200, 400, 413, 429.
	d := newTestDevice(t)
	rec := post("192.0.2.1", "/api/enroll/start", mustJSON(t, d.startBody(t, "laptop")))
	check("/api/enroll/start", rec)
	var st enrollStartResponse
	json.Unmarshal(rec.Body.Bytes(), &st)
	check("/api/enroll/start", post("192.0.2.2", "/api/enroll/start", `{"public_key":"nope"}`))
	check("/api/enroll/start", post("192.0.2.3", "/api/enroll/start", `{"name":"`+strings.Repeat("x", 8<<10)+`"}`))
	for i := 0; i < 50; i++ {
		if rec := post("192.0.2.4", "/api/enroll/start", `{`); rec.Code == 429 {
			check("/api/enroll/start", rec)
			break
		}
	}

	// Poll: 400 pending, 400 expired, 200 approved, 413.
	check("/api/enroll/poll", post("192.0.2.5", "/api/enroll/poll", mustJSON(t, map[string]string{"device_code": st.DeviceCode})))
	check("/api/enroll/poll", post("192.0.2.6", "/api/enroll/poll", `{"device_code":"unknown"}`))
	if _, err := tw.Service.ApproveEnrollment(context.Background(), st.UserCode, "alice"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Duration(st.Interval) * time.Second) // polled too fast otherwise
	check("/api/enroll/poll", post("192.0.2.5", "/api/enroll/poll", mustJSON(t, map[string]string{"device_code": st.DeviceCode})))
	check("/api/enroll/poll", post("192.0.2.7", "/api/enroll/poll", `{"device_code":"`+strings.Repeat("x", 8<<10)+`"}`))

	// Renew: 200, 400, 403 revoked, 413, 429.
	dev := tw.mustAuthorize(t, "alice", "phone", time.Hour)
	check("/api/devices/renew", post("192.0.2.8", "/api/devices/renew", mustJSON(t, dev.request(t))))
	check("/api/devices/renew", post("192.0.2.9", "/api/devices/renew", `{"jwt":"x","nonce":"short","signature":"x"}`))
	if _, err := tw.Service.RevokeDevice(context.Background(), "alice", dev.pub); err != nil {
		t.Fatal(err)
	}
	check("/api/devices/renew", post("192.0.2.10", "/api/devices/renew", mustJSON(t, dev.request(t))))
	check("/api/devices/renew", post("192.0.2.11", "/api/devices/renew", `{"jwt":"`+strings.Repeat("x", 16<<10)+`"}`))
	for i := 0; i < 50; i++ {
		if rec := post("192.0.2.12", "/api/devices/renew", `{}`); rec.Code == 429 {
			check("/api/devices/renew", rec)
			break
		}
	}

	for path, want := range map[string][]int{
		"/api/enroll/start":  {200, 400, 413, 429},
		"/api/enroll/poll":   {400, 200, 413},
		"/api/devices/renew": {200, 400, 403, 413, 429},
	} {
		for _, code := range want {
			if !slices.Contains(seen[path], code) {
				t.Errorf("POST %s: no answer with %d was checked (got %v)", path, code, seen[path])
			}
		}
	}
}
