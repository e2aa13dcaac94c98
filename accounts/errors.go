package accounts

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Kinds of domain error. Callers test them with errors.Is; the admin
// service turns them into error codes and the CLI back into these.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrRevoked  = errors.New("revoked")
	ErrDisabled = errors.New("disabled")
	ErrInvalid  = errors.New("invalid")
	// ErrForbidden is a caller that may not do what it asks.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict is a change that lost a race with another.
	ErrConflict = errors.New("conflict")
	// ErrQuota is a write a person's quota has no room for.
	ErrQuota = errors.New("over quota")
)

// ValidationError lists what is wrong with an input, field by field.
type ValidationError struct {
	Problems map[string]string
}

func (e *ValidationError) Error() string {
	fields := make([]string, 0, len(e.Problems))
	for f := range e.Problems {
		fields = append(fields, f)
	}
	sort.Strings(fields)
	parts := make([]string, len(fields))
	for i, f := range fields {
		parts[i] = f + ": " + e.Problems[f]
	}
	return strings.Join(parts, "; ")
}

// Is makes a ValidationError match ErrInvalid.
func (e *ValidationError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ValidationError{Problems: map[string]string{field: fmt.Sprintf(format, args...)}}
}

// kindError carries a kind and a message written for a person.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string        { return e.msg }
func (e *kindError) Is(target error) bool { return target == e.kind }

// errorf returns an error of the given kind whose text is the message alone.
func errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// ErrorKind names a kind of error on the wire: in the admin service's
// replies, and what web answers.
type ErrorKind string

// The kinds of error, one per sentinel error, and KindInternal for the
// rest.
const (
	KindInvalid   ErrorKind = "invalid"
	KindNotFound  ErrorKind = "not_found"
	KindExists    ErrorKind = "exists"
	KindRevoked   ErrorKind = "revoked"
	KindDisabled  ErrorKind = "disabled"
	KindForbidden ErrorKind = "forbidden"
	KindConflict  ErrorKind = "conflict"
	KindQuota     ErrorKind = "quota"
	KindInternal  ErrorKind = "internal"
)

// errorKinds is the one table of the kinds: the sentinel error of each,
// the HTTP status web answers with and the code it names there, and the
// code of the micro protocol the admin service replies with.
var errorKinds = []struct {
	kind     ErrorKind
	err      error
	status   int
	httpCode string
}{
	{KindInvalid, ErrInvalid, http.StatusBadRequest, "invalid_request"},
	{KindNotFound, ErrNotFound, http.StatusNotFound, "not_found"},
	{KindExists, ErrExists, http.StatusConflict, "exists"},
	{KindRevoked, ErrRevoked, http.StatusGone, "revoked"},
	{KindDisabled, ErrDisabled, http.StatusForbidden, "disabled"},
	{KindForbidden, ErrForbidden, http.StatusForbidden, "forbidden"},
	{KindConflict, ErrConflict, http.StatusConflict, "conflict"},
	{KindQuota, ErrQuota, http.StatusInsufficientStorage, "over_quota"},
}

// Kind names an error's kind; KindInternal for an error of none.
func Kind(err error) ErrorKind {
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			return k.kind
		}
	}
	return KindInternal
}

// HTTPStatus is the status an error of this kind answers with, and the
// code the answer names.
func (k ErrorKind) HTTPStatus() (int, string) {
	for _, e := range errorKinds {
		if e.kind == k {
			return e.status, e.httpCode
		}
	}
	return http.StatusInternalServerError, "server_error"
}

// ServiceCode is the micro protocol's code of the kind: the HTTP status,
// as a number in a string.
func (k ErrorKind) ServiceCode() string {
	status, _ := k.HTTPStatus()
	return strconv.Itoa(status)
}

// ErrorOfKind rebuilds an error of a named kind, as Kind names it, with a
// message; it is how a client turns a remote error back into a kind.
func ErrorOfKind(kind ErrorKind, msg string) error {
	for _, e := range errorKinds {
		if e.kind == kind {
			return &kindError{kind: e.err, msg: msg}
		}
	}
	return errors.New(msg)
}
